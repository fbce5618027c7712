"""`gmodel.training` under FSDP2 with 2 CPU processes (torchrun, gloo) on a tiny stand-in transformer
(tests/jobs/fsdp_worker.py): the same steps as one process, through gradient accumulation and
clipping on sharded (DTensor) gradients; checkpoints resume across strategies and world sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fsdp_worker.py")
ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO / 'jobs'}{os.pathsep}{REPO / 'operator'}"}


def _train(out: Path, strategy: str, world: int, *args: str) -> Path:
    out.mkdir(parents=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world)] if world > 1 else [sys.executable]
    done = subprocess.run([*launcher, str(WORKER), "--strategy", strategy, "--steps", "6", "--out", str(out), *args],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    if world > 1 and strategy == "fsdp":
        assert "osmf: FSDP over 2 ranks: sharded 3 TinyDecoderLayer and the root" in done.stderr, done.stderr[-2000:]
    return out


def _assert_same(a: Path, b: Path) -> None:
    import torch

    left, right = torch.load(a / "final.pt"), torch.load(b / "final.pt")
    assert left.keys() == right.keys()
    for name in left:
        assert torch.allclose(left[name], right[name], atol=1e-5), (name, (left[name] - right[name]).abs().max())


def test_fsdp_trains_like_one_process_and_checkpoints_resume_across_strategies(tmp_path: Path) -> None:
    one = _train(tmp_path / "one", "fsdp", 1, "--save-at", "3")  # one process: the plain model
    fsdp = _train(tmp_path / "fsdp", "fsdp", 2, "--save-at", "3")
    _assert_same(one, fsdp)
    # DCP checkpoints: FSDP's per-rank shard files and one process's plain tensors resume each other.
    assert sorted(p.name for p in (fsdp / "checkpoints" / "a" / "shards").iterdir() if p.suffix == ".distcp") == ["__0_0.distcp", "__1_0.distcp"]
    _assert_same(one, _train(tmp_path / "fsdp-from-one", "fsdp", 2, "--resume", str(one)))
    _assert_same(one, _train(tmp_path / "one-from-fsdp", "ddp", 1, "--resume", str(fsdp)))


def test_wrap_model_rejects_an_unknown_strategy() -> None:
    import torch

    from osmf_jobs.gmodel.training.device import Device
    from osmf_jobs.gmodel.training.parallel import wrap_model

    with pytest.raises(ValueError, match="ddp, fsdp"):
        wrap_model(torch.nn.Linear(2, 2), Device(torch.device("cpu"), "fp32"), "zero3")
