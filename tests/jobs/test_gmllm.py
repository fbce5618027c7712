"""GMLLMTraining job end to end on tiny configs: pretrain and reward learn, resume after a kill, and
reject bad input with exit code 65."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from osmf_jobs.gmllm.config import GMLLMTrainingConfig
from osmf_jobs.gmllm.main import main
from osmf_jobs.runtime import run_job
from tests.jobs.test_gmodel_world import (  # noqa: F401
    TrainedRuns, World, build_world, job_config, one_thread, pretrain_spec, reward_spec, trained_runs, world_inputs,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> TrainedRuns:
    return trained_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def world(runs: TrainedRuns) -> World:
    return runs.world


@pytest.fixture(scope="module")
def pretrain_run(runs: TrainedRuns) -> Path:
    return runs.pretrain


@pytest.fixture(scope="module")
def reward_run(runs: TrainedRuns) -> Path:
    return runs.reward


def test_pretrain_writes_prompts_in_the_groups_styles(pretrain_run: Path, world: World, one_thread) -> None:
    metrics = json.loads((pretrain_run / "metrics.json").read_text())
    manifest = json.loads((pretrain_run / "manifest.json").read_text())
    assert manifest["metrics"] == metrics
    assert {"model/gmodel.json", "model/group.safetensors", "metrics.json", "eval/prompts.json"} <= {f["path"] for f in manifest["files"]}
    assert metrics["steps"] == 10 * math.ceil(metrics["train_examples"] / 16) and metrics["heldout_groups"] > 0
    assert metrics["eval_loss_prompt"] < 1.0
    # Learning is real: held-out groups' prompts use their best image's style words well above
    # chance, and above what the same prompts score against the product's other groups.
    assert metrics["style_match"] > 1.5 * metrics["style_match_chance"], metrics
    assert metrics["style_match"] > metrics["style_match_other_group"] + 0.2, metrics

    from osmf_jobs.gmodel import GroupPolicy

    import pandas as pd

    policy = GroupPolicy.load(pretrain_run.as_uri())
    groups = pd.read_parquet(world.grouping / "groups.parquet")
    row = groups.iloc[-1]
    reps = np.stack([np.asarray(v, dtype=np.float32) for v in row["representatives"]])
    from PIL import Image

    image = Image.open(world.data / "products" / f"{row['product_id']}.png")
    first = policy.generate_prompts(reps, "blue lamp", image, n=3, temperature=1.0, seed=5)
    assert first == policy.generate_prompts(reps, "blue lamp", image, n=3, temperature=1.0, seed=5)
    assert len(first) == 3 and all(isinstance(p, str) and p for p in first)


def test_reward_model_ranks_held_out_pairs_and_uses_the_group(reward_run: Path, world: World, one_thread) -> None:
    metrics = json.loads((reward_run / "metrics.json").read_text())
    assert metrics["heldout_pairs"] > 20
    assert metrics["pairwise_accuracy"] > 0.75, metrics
    assert metrics["pairwise_accuracy"] > metrics["pairwise_accuracy_group_blind"] + 0.1, metrics
    per_group = json.loads((reward_run / "eval" / "per_group.json").read_text())
    assert per_group and all({"pairs", "accuracy", "accuracy_group_blind"} <= set(v) for v in per_group.values())

    import pandas as pd
    from PIL import Image

    from osmf_jobs.gmodel import RewardModel

    # The inference API reproduces the job's held-out figure.
    grm = RewardModel.load(reward_run)
    pairs = pd.read_parquet(world.gaip / "pairs.parquet").query("split == 'eval'")
    groups = pd.read_parquet(world.grouping / "groups.parquet").set_index(["product_id", "group_id"])
    titles = pd.read_parquet(world.data / "products.parquet").set_index("product_id")["title"]
    reps = [np.stack([np.asarray(v, dtype=np.float32) for v in groups.loc[(p.product_id, p.group_id), "representatives"]]) for p in pairs.itertuples()]
    names = [titles[p.product_id] for p in pairs.itertuples()]
    chosen = grm.score_batch(reps, names, [Image.open(world.data / "images" / f"{i}.png") for i in pairs["chosen_image_id"]])
    rejected = grm.score_batch(reps, names, [Image.open(world.data / "images" / f"{i}.png") for i in pairs["rejected_image_id"]])
    accuracy = np.mean([1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)])
    assert accuracy == pytest.approx(metrics["pairwise_accuracy"], abs=0.02)


def _latest_checkpoint_step(run: Path) -> int:
    steps = [json.loads(p.read_text()).get("step") or 0 for p in run.glob("checkpoints/*/done.json")]
    return max(steps, default=0)


def test_group_vectors_are_standardised_and_old_models_load_raw(one_thread) -> None:
    import torch

    from osmf_jobs.gmodel.model import GroupMLLM, build_tiny_llava

    mllm, _ = build_tiny_llava(["warm", "cool"])
    model = GroupMLLM(mllm, group_dim=8, n_vectors=3, n_tokens=3)
    vectors = torch.randn(20, 3, 8) * torch.linspace(0.03, 0.3, 8) + 2.0
    model.group_projector.standardize(vectors)
    expected = model.group_projector(vectors)
    state = model.group_state_dict()
    assert {"group_projector.center", "group_projector.scale"} <= set(state)
    other = GroupMLLM(mllm, group_dim=8, n_vectors=3, n_tokens=3)
    other.load_group_state_dict(state)
    assert torch.allclose(other.group_projector(vectors), expected, atol=1e-5)
    # A model saved before the buffers existed reads its vectors unchanged (center 0, scale 1).
    other.load_group_state_dict({k: v for k, v in state.items() if not k.endswith(("center", "scale"))})
    assert torch.equal(other.group_projector.center, torch.zeros(8)) and torch.equal(other.group_projector.scale, torch.ones(8))
    flat = vectors.reshape(-1, 8)
    assert torch.allclose(other.group_projector((vectors - flat.mean(0)) / flat.std(0)), expected, atol=1e-5)


def test_reward_pairs_are_grouped_over_distinct_images() -> None:
    from osmf_jobs.gmodel.data import PairExample
    from osmf_jobs.gmllm.reward import group_pairs

    pairs = [PairExample("p", 0, "a", "b", 0.3, 0.1), PairExample("p", 1, "a", "c", 0.2, 0.1),
             PairExample("p", 0, "c", "b", 0.2, 0.1), PairExample("p", 0, "a", "c", 0.3, 0.2)]
    groups = group_pairs(pairs)
    assert [g.key for g in groups] == [("p", 0), ("p", 1)]
    assert groups[0].images == ["a", "b", "c"] and groups[0].pairs == [(0, 1), (2, 1), (0, 2)]
    assert groups[0].ctrs == [0.3, 0.1, 0.2] and groups[1].pairs == [(0, 1)]


def test_killed_run_resumes_from_its_last_checkpoint(world: World, tmp_path: Path) -> None:
    run = tmp_path / "resumable"
    config = job_config(tmp_path / "job.json", "GMLLMTraining", pretrain_spec(epochs=2, checkpointEverySteps=4), run, world_inputs(world))
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{REPO / 'jobs'}{os.pathsep}{REPO / 'operator'}"}
    command = [sys.executable, "-m", "osmf_jobs.gmllm", "--config", str(config)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while _latest_checkpoint_step(run) < 8 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = _latest_checkpoint_step(run)
    assert killed_at >= 8, "the first run never wrote a checkpoint"
    assert not (run / "manifest.json").exists()

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=110)
    assert second.returncode == 0, second.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"resuming from checkpoint at step {metrics['resumed_from_step']}" in second.stderr
    assert metrics["resumed_from_step"] >= killed_at
    assert metrics["steps"] == 2 * math.ceil(metrics["train_examples"] / 16)
    progress = json.loads((run / "progress.json").read_text())
    assert progress["current"] == progress["total"] == metrics["steps"]
    assert (run / "manifest.json").exists() and (run / "model" / "gmodel.json").exists()
    assert not (run / "checkpoints").exists(), "checkpoints are removed once the manifest is written"


def _fake_run(path: Path, kind: str, role: str | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"kind": kind, "inputs": [], "files": []}))
    if role is not None:
        (path / "model").mkdir()
        (path / "model" / "gmodel.json").write_text(json.dumps({"role": role, "format": 1}))
    return path


def _exit_code(config: Path, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        run_job(main, GMLLMTrainingConfig, ["--config", str(config)])
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", ["init-missing", "init-is-reward", "model-uri-missing", "model-uri-garbage", "no-pairs", "dataset-unfinished"])
def test_bad_input_exits_65_with_one_line(case: str, world: World, tmp_path: Path, capsys) -> None:
    inputs = world_inputs(world)
    spec = pretrain_spec()
    if case == "init-missing":
        spec = reward_spec()
    elif case == "init-is-reward":
        spec, inputs = reward_spec(), inputs | {"init": ("GMLLMTraining", _fake_run(tmp_path / "grm", "GMLLMTraining", "reward"))}
    elif case == "model-uri-missing":
        spec = spec | {"baseModel": {"uri": str(tmp_path / "no-such-model")}}
    elif case == "model-uri-garbage":
        (tmp_path / "garbage").mkdir()
        (tmp_path / "garbage" / "config.json").write_text('{"model_type": "not-a-model"}')
        spec = spec | {"baseModel": {"uri": (tmp_path / "garbage").as_uri()}}
    elif case == "no-pairs":
        nopairs = build_world(tmp_path / "nopairs", n_products=3, n_eval=1, with_pairs=False)
        spec = reward_spec()
        inputs = world_inputs(nopairs) | {"init": ("GMLLMTraining", _fake_run(tmp_path / "policy", "GMLLMTraining", "policy"))}
    elif case == "dataset-unfinished":
        (tmp_path / "gaip").mkdir()
        inputs = inputs | {"dataset": ("GAIPDataset", tmp_path / "gaip")}
    code, err = _exit_code(job_config(tmp_path / "job.json", "GMLLMTraining", spec, tmp_path / "run", inputs), capsys)
    assert code == 65, err
    lines = [line for line in err.splitlines() if line.startswith("osmf:")]
    assert len(lines) == 1 and lines[0].startswith("osmf: invalid input: "), err
    expected = {
        "init-missing": "initFromRef", "init-is-reward": "not a pretrain run", "model-uri-missing": "spec.baseModel.uri",
        "model-uri-garbage": "spec.baseModel.uri", "no-pairs": "no training pairs", "dataset-unfinished": "has not succeeded",
    }[case]
    assert expected in lines[0]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_with_ddp(world: World, tmp_path: Path) -> None:
    """The same entry point under torchrun (gloo on CPU): rank 0 writes, both ranks train."""
    run = tmp_path / "ddp"
    config = job_config(tmp_path / "job.json", "GMLLMTraining", pretrain_spec(epochs=1, maxSteps=6, batchSize=4, checkpointEverySteps=3), run, world_inputs(world))
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{REPO / 'jobs'}{os.pathsep}{REPO / 'operator'}"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*torchrun, "-m", "osmf_jobs.gmllm", "--config", str(config)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 6 and metrics["frozen_unreached"] >= 1
    assert (run / "manifest.json").exists() and (run / "model" / "gmodel.json").exists()
