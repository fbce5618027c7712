"""The job's inputs, checked before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from osmf_core.api import Kind, Role
from osmf_jobs.gmodel.location import model_role
from osmf_jobs.runs import data_root, finished_input
from osmf_jobs.runtime import InvalidInput, JobContext


@dataclass
class Inputs:
    policy: Any  # pretrain GMLLMTraining run
    reward: Any  # reward GMLLMTraining run (the GRM)
    dataset: Any  # GAIP run: which products and groups are sampled
    grouping: Any
    data: Any  # logs root (product cut-outs)
    policy_digest: str
    reward_digest: str


def resolve_inputs(ctx: JobContext) -> Inputs:
    policy, policy_digest = finished_input(ctx, Role.POLICY, Kind.GMLLM_TRAINING)
    if model_role(policy, "spec.policyRef") != "policy":
        raise InvalidInput(f"spec.policyRef: {policy.uri} is a reward run; the policy must be a task: pretrain GMLLMTraining")
    reward, reward_digest = finished_input(ctx, Role.REWARD, Kind.GMLLM_TRAINING)
    if model_role(reward, "spec.rewardModelRef") != "reward":
        raise InvalidInput(f"spec.rewardModelRef: {reward.uri} is a pretrain run; the judge must be a task: reward GMLLMTraining")
    dataset, _ = finished_input(ctx, Role.DATASET, Kind.GAIP_DATASET)
    grouping, _ = finished_input(ctx, Role.GROUPING, Kind.AUDIENCE_GROUPING)
    data = data_root(ctx, dataset, grouping)
    return Inputs(policy, reward, dataset, grouping, data, policy_digest, reward_digest)
