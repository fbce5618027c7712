"""bench/gpu/train.py stays runnable: its CPU dry run measures every row and prints the JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_training_bench_dry_run_measures_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu" / "train.py"), "--dry-run", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    names = [row["name"] for row in result["rows"]]
    assert names == [
        "pretrain step, osmf (gmllm)", "pretrain step, plain PyTorch",
        "Group-DPO step, osmf (2 pairs)", "Group-DPO step, plain PyTorch (2 pairs)",
    ]
    assert all(row["seconds_per_step"] > 0 for row in result["rows"])
    assert result["rows"][0]["tokens_per_second"] > 0 and set(result["speed_ratio"]) == {"pretrain step", "Group-DPO step"}
    assert json.loads(done.stdout.strip().splitlines()[-1]) == result
