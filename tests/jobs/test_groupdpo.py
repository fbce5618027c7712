"""GroupDPORun job end to end on tiny configs: rounds run, the adapter loads, a kill resumes after the
last finished round, and bad input exits 65."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from osmf_jobs.groupdpo.config import GroupDPORunConfig
from osmf_jobs.groupdpo.loss import dpo_loss
from osmf_jobs.groupdpo.main import main, ranked_pairs
from osmf_jobs.runtime import build_context, load_config, run_job
from tests.jobs.test_gmodel_world import TrainedRuns, job_config, one_thread, trained_runs  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def dpo_spec(**dpo) -> dict:
    return {
        "policyRef": {"name": "pretrain"}, "rewardModelRef": {"name": "reward"}, "datasetRef": {"name": "gaip"},
        "dpo": {"rounds": 2, "epochs": 2, "learningRate": 1e-3, "samplesPerGroup": 4, "batchSize": 4,
                "maxNewTokens": 24, "precision": "fp32"} | dpo,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "rendering": {"backend": "procedural", "size": 64},
    }


def dpo_inputs(runs: TrainedRuns, policy: Path | None = None, reward: Path | None = None) -> dict:
    return {
        "policy": ("GMLLMTraining", policy or runs.pretrain), "reward": ("GMLLMTraining", reward or runs.reward),
        "dataset": ("GAIPDataset", runs.world.gaip), "grouping": ("AudienceGrouping", runs.world.grouping),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> TrainedRuns:
    return trained_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def dpo_run(runs: TrainedRuns, tmp_path_factory) -> Path:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("dpo") / "dpo"
    config = job_config(run.parent / "dpo.json", "GroupDPORun", dpo_spec(), run, dpo_inputs(runs))
    main(build_context(load_config(config.read_text(), GroupDPORunConfig)))
    torch.set_num_threads(before)
    return run


def test_dpo_loss_prefers_the_chosen_prompt() -> None:
    import torch

    zero = torch.zeros(3)
    up = torch.tensor([1.0, 2.0, 0.5])
    loss, stats = dpo_loss(up, zero, zero, zero, beta=0.5)
    flat, _ = dpo_loss(zero, zero, zero, zero, beta=0.5)
    assert float(flat) == pytest.approx(np.log(2))
    assert float(loss) < float(flat) and stats["implicit_accuracy"] == 1.0
    # Only the change from the reference counts: the same log-probs under the reference give log 2.
    same, _ = dpo_loss(up, zero, up, zero, beta=0.5)
    assert float(same) == pytest.approx(np.log(2))


def test_ranked_pairs_pair_best_with_worst_inward_over_distinct_prompts() -> None:
    texts = ["a", "b", "c", "d", "b", "e", "f"]
    scores = [0.1, 0.9, 0.5, -0.3, 0.9, 0.4, 0.4]
    # Distinct by score: b(1) 0.9, c(2) 0.5, e(5) 0.4, f(6) 0.4, a(0) 0.1, d(3) -0.3; the repeated "b" counts once.
    assert ranked_pairs(texts, scores, limit=8) == [(1, 3), (2, 0)]  # e vs f tie: no third pair
    assert ranked_pairs(texts, scores, limit=1) == [(1, 3)]  # CAIG: best vs worst only
    assert ranked_pairs(["x", "x", "x"], [1.0, 1.0, 1.0], limit=4) == []
    assert ranked_pairs(["x", "y"], [0.2, 0.2], limit=4) == []


def test_group_dpo_writes_an_adapter_that_loads_on_the_policy(dpo_run: Path, runs: TrainedRuns, one_thread) -> None:
    metrics = json.loads((dpo_run / "metrics.json").read_text())
    manifest = json.loads((dpo_run / "manifest.json").read_text())
    assert manifest["metrics"] == metrics
    files = {f["path"] for f in manifest["files"]}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "policy.json", "eval/rounds.json"} <= files
    reference = json.loads((dpo_run / "policy.json").read_text())
    policy_manifest = (runs.pretrain / "manifest.json").read_bytes()
    import hashlib

    assert reference["policy"]["digest"] == "sha256:" + hashlib.sha256(policy_manifest).hexdigest()
    rounds = json.loads((dpo_run / "eval" / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2] and all(r["pairs"] > 0 for r in rounds)
    assert len(metrics["reward_margin_per_round"]) == 2 and all(m > 0 for m in metrics["reward_margin_per_round"])
    assert metrics["heldout_comparisons"] > 0 and 0.0 <= metrics["win_rate_vs_initial"] <= 1.0
    # Default pairing: every sample once, so samplesPerGroup 4 gives up to 2 pairs per group.
    assert metrics["pairs_per_group"] == 2 and all(r["pairs"] <= 2 * metrics["train_groups"] for r in rounds)
    ties = metrics["heldout_comparisons"] - metrics["heldout_wins"] - metrics["heldout_losses"]
    assert ties >= 0 and metrics["win_rate_vs_initial"] == pytest.approx(
        (metrics["heldout_wins"] + ties / 2) / metrics["heldout_comparisons"], abs=1e-4)
    assert np.isfinite(metrics["kl_to_reference"])
    assert metrics["reward_model_pairwise_accuracy"] == json.loads((runs.reward / "metrics.json").read_text())["pairwise_accuracy"]
    # DPO fits its pairs: the implicit reward ranks the last round's pairs right most of the time.
    assert rounds[-1]["implicit_accuracy_last"] >= 0.75
    assert rounds[-1]["dpo_loss_last"] < np.log(2)

    from PIL import Image

    from osmf_jobs.gmodel import GroupPolicy, PromptRequest
    import pandas as pd

    groups = pd.read_parquet(runs.world.grouping / "groups.parquet")
    row = groups.iloc[0]
    reps = np.stack([np.asarray(v, dtype=np.float32) for v in row["representatives"]])
    request = PromptRequest(reps, "red mug", Image.open(runs.world.data / "products" / f"{row['product_id']}.png"))
    base = GroupPolicy.load(runs.pretrain)
    aligned = GroupPolicy.load(runs.pretrain.as_uri(), adapter=dpo_run.as_uri())
    prompt = ["warm palette , striped backdrop , bright lighting , calm mood"]
    assert base.logprobs([request], prompt) != pytest.approx(aligned.logprobs([request], prompt), abs=1e-6)
    assert len(aligned.generate_prompts(reps, "red mug", request.product_image, n=2, seed=3)) == 2


def _rounds_done(run: Path) -> int:
    steps = [json.loads(p.read_text()).get("step") or 0 for p in run.glob("checkpoints/*/done.json")]
    return max(steps, default=0)


def test_killed_dpo_run_resumes_after_its_last_round(runs: TrainedRuns, tmp_path: Path) -> None:
    run = tmp_path / "dpo"
    config = job_config(tmp_path / "job.json", "GroupDPORun", dpo_spec(rounds=3, epochs=1), run, dpo_inputs(runs))
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{REPO / 'jobs'}{os.pathsep}{REPO / 'operator'}"}
    command = [sys.executable, "-m", "osmf_jobs.groupdpo", "--config", str(config)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 100
    while _rounds_done(run) < 1 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = _rounds_done(run)
    assert done >= 1, "the first run never finished a round"
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=110)
    assert second.returncode == 0, second.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"resuming after round {metrics['resumed_after_round']} of 3" in second.stderr
    assert metrics["resumed_after_round"] >= done
    assert len(metrics["reward_margin_per_round"]) == 3
    assert (run / "manifest.json").exists()
    # Checkpoints are working files: gone after success and not in the manifest.
    manifest = json.loads((run / "manifest.json").read_text())
    assert not (run / "checkpoints").exists() and not any(f["path"].startswith("checkpoints/") for f in manifest["files"])


@pytest.mark.parametrize("case", ["policy-is-reward", "reward-is-policy", "lora-targets-nothing", "policy-unfinished"])
def test_bad_input_exits_65_with_one_line(case: str, runs: TrainedRuns, tmp_path: Path, capsys) -> None:
    spec, inputs = dpo_spec(), dpo_inputs(runs)
    if case == "policy-is-reward":
        inputs = dpo_inputs(runs, policy=runs.reward)
    elif case == "reward-is-policy":
        inputs = dpo_inputs(runs, reward=runs.pretrain)
    elif case == "lora-targets-nothing":
        spec["lora"]["targetModules"] = ["no_such_proj"]
    elif case == "policy-unfinished":
        (tmp_path / "policy").mkdir()
        inputs = dpo_inputs(runs, policy=tmp_path / "policy")
    config = job_config(tmp_path / "job.json", "GroupDPORun", spec, tmp_path / "run", inputs)
    with pytest.raises(SystemExit) as exited:
        run_job(main, GroupDPORunConfig, ["--config", str(config)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("osmf:")]
    assert exited.value.code == 65, err
    assert len(lines) == 1 and lines[0].startswith("osmf: invalid input: ")
    expected = {
        "policy-is-reward": "spec.policyRef", "reward-is-policy": "spec.rewardModelRef",
        "lora-targets-nothing": "lora.targetModules", "policy-unfinished": "has not succeeded",
    }[case]
    assert expected in lines[0]
