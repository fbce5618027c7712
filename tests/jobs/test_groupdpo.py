"""GroupDPORun job end to end on tiny configs: rounds run through trl's DPOTrainer with every term
conditioned on the group, the adapter loads, a kill resumes after the last finished round, and bad
input exits 65."""

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


def test_trls_step_reads_the_group_and_the_jobs_reference_log_probs(runs: TrainedRuns, one_thread) -> None:
    """trl's first step on pairs whose reference log-probs the job computed (adapter off, group tokens
    in) starts at log 2 (the policy equals the reference); the loss falls as trl trains the pairs;
    and the group tokens matter: the same pairs under another group's tokens score differently."""
    import torch

    from osmf_jobs.gmodel.batching import answer_logprobs, assemble, encode_prompts
    from osmf_jobs.gmodel.data import load_gaip
    from osmf_jobs.gmodel.location import gmodel_dir
    from osmf_jobs.gmodel.model import load_gmodel
    from osmf_jobs.gmodel.text import instruction
    from osmf_jobs.groupdpo.main import attach_lora
    from osmf_jobs.groupdpo.trainer import dpo_config, train_round
    from osmf_core.store import open_store
    from osmf_core.api.kinds import DPOSpec, LoraSpec
    from osmf_jobs.gmodel.training.device import setup_device
    from osmf_jobs.runtime import DistributedEnv

    model, processor, _ = load_gmodel(gmodel_dir(runs.pretrain), reward_head=False)
    peft_model = attach_lora(model, LoraSpec(r=8, alpha=16, dropout=0.0), seed=0)
    data = load_gaip(open_store(runs.world.gaip), open_store(runs.world.grouping), open_store(runs.world.data), need_pairs=False)
    keys = data.group_keys(train=True)[:4]
    tok = processor.tokenizer
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]  # noqa: E731
    chosen, rejected = ids("warm palette , striped backdrop , bright lighting , energetic mood"), ids("cool palette , dotted backdrop , dim lighting , calm mood")

    def batch(group_keys, answers, reps_of=None):
        reps_of = reps_of or {k: data.representatives[k] for k in group_keys}
        requests = [(reps_of[k], data.titles[k[0]], data.image(data.product_images[k[0]])) for k in group_keys]
        prompt_ids, vision = encode_prompts(processor, [r[2] for r in requests], [instruction("prompt", title=r[1]) for r in requests])
        return assemble(prompt_ids, [r[0] for r in requests], vision, tok.pad_token_id, model.n_tokens, answers)

    def logprobs(group_keys, answers, reference=False, reps_of=None):
        b = batch(group_keys, answers, reps_of)
        with torch.no_grad(), (peft_model.disable_adapter() if reference else torch.enable_grad()):
            return answer_logprobs(model(**b.model_inputs(), logits_to_keep=b.answer_len + 1), b)[0]

    ref_c, ref_r = logprobs(keys, [chosen] * 4, True), logprobs(keys, [rejected] * 4, True)
    shifted = {k: data.representatives[keys[(i + 1) % len(keys)]] for i, k in enumerate(keys)}  # another group's tokens
    assert not torch.allclose(ref_c, logprobs(keys, [chosen] * 4, True, shifted))
    rows = [{"pair": i, "chosen_ids": chosen, "rejected_ids": rejected, "ref_chosen_logps": float(c), "ref_rejected_logps": float(r)}
            for i, (c, r) in enumerate(zip(ref_c, ref_r))]
    spec = DPOSpec(epochs=3, learning_rate=5e-3, batch_size=2, precision="fp32")
    device = setup_device(DistributedEnv(), "fp32")
    log = train_round(model, tok, rows, lambda idx, answers: batch([keys[i] for i in idx], answers),
                      dpo_config(spec, 0, str(runs.world.data.parent / "trl"), device), lambda *a: None)
    assert log[0]["loss"] == pytest.approx(np.log(2), abs=1e-4)
    assert log[-1]["loss"] < log[0]["loss"] and log[-1]["implicit_accuracy"] == 1.0
    margin = logprobs(keys, [chosen] * 4) - logprobs(keys, [rejected] * 4)
    assert float((margin - (ref_c - ref_r)).mean()) > 0  # the adapter moved toward the chosen prompt


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
    reward_metrics = json.loads((runs.reward / "metrics.json").read_text())
    # dpo.reward auto: the better measured of the GRM and the grouping's preference model judged the samples.
    better = "rewardModel" if reward_metrics["pairwise_accuracy"] > reward_metrics["preference_model_pairwise_accuracy"] else "preferenceModel"
    assert metrics["reward"] == better
    assert metrics["reward_pairwise_accuracy"] == reward_metrics["pairwise_accuracy" if better == "rewardModel" else "preference_model_pairwise_accuracy"]
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
