"""The G-MLLM stages on what the real grouping and GAIP jobs write (conftest's tiny pipeline):
pretrain → reward → Group-DPO complete and chain, reading the upstream artifacts as they are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.jobs.conftest import run_job_step


@pytest.fixture(scope="module")
def chain(tiny_grouping_artifact: Path, tiny_gaip_artifact: Path, tmp_path_factory) -> dict[str, Path]:
    import torch

    runs = tmp_path_factory.mktemp("gmllm-chain")
    upstream = {"dataset": ("GAIPDataset", tiny_gaip_artifact), "grouping": ("AudienceGrouping", tiny_grouping_artifact)}
    training = {"epochs": 2, "learningRate": 2e-3, "batchSize": 16, "precision": "fp32", "checkpointEverySteps": 1000}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_job_step("gmllm", "GMLLMTraining", {"task": "pretrain", "datasetRef": {"name": "gaip"}, "baseModel": {"uri": "builtin:tiny-llava"},
                                                "training": training}, "train", runs / "pretrain", upstream)
        run_job_step("gmllm", "GMLLMTraining", {"task": "reward", "datasetRef": {"name": "gaip"}, "initFromRef": {"name": "pretrain"},
                                                "training": training}, "train", runs / "reward",
                     upstream | {"init": ("GMLLMTraining", runs / "pretrain")})
        run_job_step("groupdpo", "GroupDPORun", {
            "policyRef": {"name": "pretrain"}, "rewardModelRef": {"name": "reward"}, "datasetRef": {"name": "gaip"},
            "dpo": {"rounds": 1, "epochs": 1, "samplesPerGroup": 2, "maxNewTokens": 16, "precision": "fp32"},
            "rendering": {"backend": "procedural", "size": 64},
        }, "train", runs / "dpo", upstream | {"policy": ("GMLLMTraining", runs / "pretrain"), "reward": ("GMLLMTraining", runs / "reward")})
    finally:
        torch.set_num_threads(before)
    return {"pretrain": runs / "pretrain", "reward": runs / "reward", "dpo": runs / "dpo"}


def test_stages_chain_on_the_real_upstream_artifacts(chain: dict[str, Path]) -> None:
    for run in chain.values():
        assert (run / "manifest.json").exists()
    pretrain = json.loads((chain["pretrain"] / "metrics.json").read_text())
    # Profiles come from the grouping's assignments over the attributes it was allowed to read.
    assert pretrain["group_profiles"].startswith("derived from assignments + users")
    assert pretrain["examples_per_task"]["profile"] > 0 and pretrain["examples_per_task"]["prompt"] > 0
    reward = json.loads((chain["reward"] / "metrics.json").read_text())
    assert reward["train_pairs"] > 0
    dpo = json.loads((chain["dpo"] / "metrics.json").read_text())
    assert dpo["train_groups"] > 0 and len(dpo["reward_margin_per_round"]) == 1

    from osmf_jobs.gmodel import GroupPolicy

    policy = GroupPolicy.load(chain["pretrain"], adapter=chain["dpo"])
    assert policy.adapter is not None
