"""The GPU rendering benchmark's CPU dry run: same code path as on the H100, tiny config."""

import json
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu" / "render.py"


def test_render_bench_dry_run_measures_plain_diffusers_and_the_renderer_at_each_batch(tmp_path, capsys):
    main = runpy.run_path(str(BENCH), run_name="bench_render")["main"]
    result = main(["--dry-run", "--out", str(tmp_path / "render.json")])
    assert json.loads((tmp_path / "render.json").read_text()) == json.loads(json.dumps(result))
    assert result["arch"] == "tiny" and result["size"] == 64 and result["steps"] == 2
    assert result["baseline_dtype"] == "float32"  # fp16 on a GPU; the CPU runs fp32
    assert [row["batch"] for row in result["osmf"]] == [1, 2]
    for row in result["osmf"]:
        assert row["images_per_s"] > 0 and row["baseline_images_per_s"] > 0 and row["product_kept"]
        assert row["speedup"] == row["images_per_s"] / row["baseline_images_per_s"]
    assert result["best_batch"] in (1, 2) and result["product_kept"] is True
    out = capsys.readouterr().out
    assert "plain diffusers img/s" in out and "best: batch" in out
