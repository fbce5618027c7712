"""The GPU rendering benchmark's CPU dry run: same code path as on the H100, tiny config."""

import json
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu" / "render.py"


def test_render_bench_dry_run_measures_baseline_and_batches(tmp_path, capsys):
    main = runpy.run_path(str(BENCH), run_name="bench_render")["main"]
    result = main(["--dry-run", "--out", str(tmp_path / "render.json")])
    assert json.loads((tmp_path / "render.json").read_text()) == json.loads(json.dumps(result))
    assert result["arch"] == "tiny" and result["size"] == 64 and result["steps"] == 2
    assert result["baseline"]["batch"] == 1 and result["baseline"]["images_per_s"] > 0
    assert [row["batch"] for row in result["osmf"]] == [1, 2]
    assert all(row["images_per_s"] > 0 and row["product_kept"] for row in result["osmf"])
    assert result["best_batch"] in (1, 2) and result["product_kept"] is True
    assert result["speedup"] == result["best_images_per_s"] / result["baseline"]["images_per_s"]
    out = capsys.readouterr().out
    assert "baseline diffusers fp32" in out and "best: batch" in out
