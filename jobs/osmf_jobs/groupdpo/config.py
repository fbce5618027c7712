"""The job's inputs, checked before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from osmf_core.layout import MANIFEST, GModel
from osmf_core.store import read_manifest
from osmf_jobs.runtime import InvalidInput, JobContext

STEP = "train"
MODEL_INFO = f"{GModel.MODEL_DIR}/{GModel.INFO}"


@dataclass
class Inputs:
    policy: Any  # pretrain GMLLMTraining run
    reward: Any  # reward GMLLMTraining run (the GRM)
    dataset: Any  # GAIP run: which products and groups are sampled
    grouping: Any
    data: Any  # logs root (product cut-outs)
    policy_digest: str
    reward_digest: str


def completed(ctx: JobContext, name: str, kind: str) -> tuple[Any, str]:
    store = ctx.input_store(name)
    declared = ctx.config.inputs[name].kind
    if declared is not None and declared != kind:
        raise InvalidInput(f"input '{name}' is a {declared}; it must be a {kind}")
    found = read_manifest(store)
    if found is None:
        raise InvalidInput(f"input '{name}' ({store.uri}) has no {MANIFEST}: that {kind} has not succeeded; wait for it or re-run it")
    return store, found[1]


def model_role(store: Any, field: str) -> str:
    if not store.exists(MODEL_INFO):
        raise InvalidInput(f"{field}: {store.uri} holds no G-MLLM ({MODEL_INFO} missing); point it at a GMLLMTraining run")
    return str(store.read_json(MODEL_INFO).get("role"))


def resolve_inputs(ctx: JobContext) -> Inputs:
    from osmf_jobs.gmodel.data import data_root

    if ctx.step != STEP:
        raise InvalidInput(f"step {ctx.step!r}: GroupDPORun has one step, {STEP!r}")
    policy, policy_digest = completed(ctx, "policy", "GMLLMTraining")
    if model_role(policy, "spec.policyRef") != "policy":
        raise InvalidInput(f"spec.policyRef: {policy.uri} is a reward run; the policy must be a task: pretrain GMLLMTraining")
    reward, reward_digest = completed(ctx, "reward", "GMLLMTraining")
    if model_role(reward, "spec.rewardModelRef") != "reward":
        raise InvalidInput(f"spec.rewardModelRef: {reward.uri} is a pretrain run; the judge must be a task: reward GMLLMTraining")
    dataset, _ = completed(ctx, "dataset", "GAIPDataset")
    grouping, _ = completed(ctx, "grouping", "AudienceGrouping")
    data = data_root(dataset, grouping, ctx.input_store("data") if ctx.has_input("data") else None)
    return Inputs(policy, reward, dataset, grouping, data, policy_digest, reward_digest)
