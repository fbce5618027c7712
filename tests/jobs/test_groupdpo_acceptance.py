"""Issue 5's "learning is real" acceptance on a synth-like world (slow: `pytest -m slow`, ~5-8 min).

A 40-product random-style world (tests/jobs/test_gmodel_world.py, `planted=False`): pretrain, GRM and
Group-DPO through their entry points, then the three claims on held-out products, plus one check the
GRM cannot make — the world's true click model scoring the prompts before and after Group-DPO.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.jobs.test_gmodel_world import build_world, job_config, pretrain_spec, reward_spec, true_logit, world_inputs

pytestmark = pytest.mark.slow

DPO = {"rounds": 5, "epochs": 2, "learningRate": 3e-4, "samplesPerGroup": 8, "batchSize": 4, "maxNewTokens": 24, "precision": "fp32"}


def _run(job: str, kind: str, spec: dict, run: Path, inputs: dict) -> dict:
    import importlib

    from osmf_jobs.runtime import build_context, load_config
    from tests.factories import job_config_model

    main = importlib.import_module(f"osmf_jobs.{job}.main").main
    main(build_context(load_config(job_config(run.parent / f"{run.name}.json", kind, spec, run, inputs).read_text(), job_config_model(kind))))
    return json.loads((run / "metrics.json").read_text())


def test_learning_is_real_on_a_synth_like_world(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        world = build_world(tmp_path, n_products=40, n_eval=10, planted=False)
        inputs = world_inputs(world)
        pretrain = _run("gmllm", "GMLLMTraining", pretrain_spec(checkpointEverySteps=1000), tmp_path / "pretrain", inputs)
        reward = _run("gmllm", "GMLLMTraining", reward_spec(checkpointEverySteps=1000), tmp_path / "reward",
                      inputs | {"init": ("GMLLMTraining", tmp_path / "pretrain")})
        dpo_spec = {
            "policyRef": {"name": "pretrain"}, "rewardModelRef": {"name": "reward"}, "datasetRef": {"name": "gaip"},
            "dpo": DPO, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "rendering": {"backend": "procedural", "size": 64},
        }
        dpo = _run("groupdpo", "GroupDPORun", dpo_spec, tmp_path / "dpo", inputs | {
            "policy": ("GMLLMTraining", tmp_path / "pretrain"), "reward": ("GMLLMTraining", tmp_path / "reward")})
    finally:
        torch.set_num_threads(before)
    print(json.dumps({"pretrain": pretrain, "reward": reward, "dpo": dpo}, indent=1))

    # The pre-trained policy writes the style words of the group's best creative above chance, and
    # more than the same prompts share with the product's other groups.
    assert pretrain["style_match"] > 1.2 * pretrain["style_match_chance"]
    assert pretrain["style_match"] > pretrain["style_match_other_group"]
    # The GRM ranks held-out pairs above 0.5 and above its group-blind variant.
    assert reward["pairwise_accuracy"] > 0.6
    assert reward["pairwise_accuracy"] > reward["pairwise_accuracy_group_blind"] + 0.05
    # After Group-DPO the policy wins most GRM-judged comparisons against the pre-DPO policy.
    assert dpo["win_rate_vs_initial"] > 0.5
    # …and the world's true click model agrees that the prompts got better, not just the GRM.
    truth = json.loads((tmp_path / "truth.json").read_text())
    samples = json.loads((tmp_path / "dpo" / "eval" / "samples.json").read_text())
    initial = [true_logit(truth[f"{s['product_id']}/{s['group_id']}"], t) for s in samples for t in s["initial"]]
    final = [true_logit(truth[f"{s['product_id']}/{s['group_id']}"], t) for s in samples for t in s["final"]]
    assert np.mean(final) > np.mean(initial)
