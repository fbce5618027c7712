"""bench/gpu/acceptance.sh's Python stays runnable: its CPU dry run drives the real grouping, GAIP and
G-MLLM jobs (the G-MLLM job under the torchrun launcher, FSDP on one rank, gradient checkpointing,
the model loaded shard by shard) and measures every row beside its baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_acceptance_dry_run_measures_every_row_beside_its_baseline(tmp_path: Path) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "OSMF_MODEL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu" / "acceptance.py"), "--dry-run", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "acceptance.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == result
    training = result["training"]
    assert training["config"] == "tiny" and training["fsdp"] and training["gradient_checkpointing"] and training["sharded_loading"]
    assert training["job_tokens_per_second"] > 0 and training["plain_tokens_per_second"] > 0 and training["speed_ratio"] > 0
    assert result["dpo"]["osmf_seconds_per_step"] > 0 and result["dpo"]["plain_seconds_per_step"] > 0
    rendering = result["rendering"]
    assert rendering["product_kept"] and all(r["images_per_s"] > 0 and r["baseline_images_per_s"] > 0 for r in rendering["osmf"])
    assert "G-MLLM training tokens/s" in done.stdout and "Group-DPO step" in done.stdout and "SD1.5+ControlNet" in done.stdout
