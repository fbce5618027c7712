"""GMLLMTraining with `training.strategy: fsdp` under torchrun (2 CPU processes, gloo) on the tiny
world: it trains, writes its metrics and a model that loads in one process, and a run over an
existing FSDP checkpoint resumes from it and ends with the same weights as the uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.jobs.test_gmodel_world import World, build_world, job_config, pretrain_spec, reward_spec, world_inputs

REPO = Path(__file__).resolve().parents[2]
ENV = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{REPO / 'jobs'}{os.pathsep}{REPO / 'operator'}"}
SPEC = pretrain_spec(epochs=1, maxSteps=6, batchSize=4, gradientAccumulationSteps=2, checkpointEverySteps=3, strategy="fsdp",
                     keepCheckpoints=True)  # the resume test starts from this run's checkpoint


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("fsdp-world"), n_products=6, n_eval=2)


def _torchrun(config: Path) -> subprocess.CompletedProcess:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*torchrun, "-m", "osmf_jobs.gmllm", "--config", str(config)], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _weights(run: Path) -> dict:
    """Every tensor the run published: the group projector (+ head) and the LLaVA model."""
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "group.safetensors")) | load_file(str(run / "model" / "mllm" / "model.safetensors"))


@pytest.fixture(scope="module")
def fsdp_run(world: World, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("fsdp-run")
    run = root / "fsdp"
    return run, _torchrun(job_config(root / "job.json", "GMLLMTraining", SPEC, run, world_inputs(world)))


def test_fsdp_pretrain_trains_and_writes_a_model_that_loads_in_one_process(fsdp_run, world: World) -> None:
    run, done = fsdp_run
    assert "osmf: FSDP over 2 ranks: sharded 2 CLIPEncoderLayer, 1 CLIPVisionEmbeddings, 2 LlamaDecoderLayer and the root" in done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 6 and metrics["resumed_from_step"] == 0
    assert metrics["final_train_loss"] is not None and np.isfinite(metrics["eval_loss"])
    assert json.loads((run / "checkpoints" / "a" / "done.json").read_text()) == {"step": 3}
    assert (run / "manifest.json").exists() and (run / "model" / "gmodel.json").exists()

    import pandas as pd
    import torch
    from PIL import Image

    from osmf_jobs.gmodel import GroupPolicy

    torch.set_num_threads(1)
    policy = GroupPolicy.load(run.as_uri())
    row = pd.read_parquet(world.grouping / "groups.parquet").iloc[0]
    reps = np.stack([np.asarray(v, dtype=np.float32) for v in row["representatives"]])
    prompts = policy.generate_prompts(reps, "red mug", Image.open(world.data / "products" / f"{row['product_id']}.png"), n=2, seed=1)
    assert len(prompts) == 2 and all(isinstance(p, str) for p in prompts)
    # What was saved is what trained: the projector moved from its seeded initialisation.
    assert float(_weights(run)["group_projector.slot"].abs().max()) > 0


def test_fsdp_run_over_an_existing_checkpoint_resumes_to_the_same_weights(fsdp_run, world: World, tmp_path: Path) -> None:
    finished, _ = fsdp_run
    run = tmp_path / "resumed"
    run.mkdir()
    # The state a Job killed after its step-3 checkpoint leaves behind (slot b never completed).
    shutil.copytree(finished / "checkpoints" / "a", run / "checkpoints" / "a")
    done = _torchrun(job_config(tmp_path / "job.json", "GMLLMTraining", SPEC, run, world_inputs(world)))
    metrics = json.loads((run / "metrics.json").read_text())
    assert "resuming from checkpoint at step 3" in done.stderr and metrics["resumed_from_step"] == 3
    assert metrics["steps"] == 6 and (run / "model" / "gmodel.json").exists()
    import torch

    before, after = _weights(finished), _weights(run)
    assert before.keys() == after.keys() and len(before) > 50
    for name in before:
        assert torch.allclose(before[name], after[name], atol=1e-5), name


def test_fsdp_reward_trains_from_the_fsdp_pretrain_run(fsdp_run, world: World, tmp_path: Path) -> None:
    """task reward: the GRM (frozen LM head, score from the last hidden state) under FSDP."""
    pretrain, _ = fsdp_run
    run = tmp_path / "reward"
    spec = reward_spec(epochs=3, maxSteps=4, batchSize=2, checkpointEverySteps=2, strategy="fsdp")  # steps count groups
    inputs = world_inputs(world) | {"init": ("GMLLMTraining", pretrain)}
    done = _torchrun(job_config(tmp_path / "job.json", "GMLLMTraining", spec, run, inputs))
    assert "osmf: FSDP over 2 ranks" in done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4 and metrics["pairwise_accuracy"] is not None

    import torch
    from PIL import Image

    from osmf_jobs.gmodel import RewardModel

    torch.set_num_threads(1)
    grm = RewardModel.load(run)
    reps = np.zeros((10, 128), dtype=np.float32)
    image = Image.open(next((world.data / "images").glob("*.png")))
    assert np.isfinite(grm.score(reps, "red mug", image))
