"""The job's inputs, checked before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from osmf_core.layout import MANIFEST, GModel
from osmf_core.store import read_manifest
from osmf_jobs.runtime import InvalidInput, JobContext

STEP = "train"


@dataclass
class Inputs:
    dataset: Any  # ArtifactStore of the GAIP run
    grouping: Any  # ArtifactStore of the AudienceGrouping run
    data: Any  # ArtifactStore of the logs root (explicit `data` input, or the GAIP run's)
    init: Any = None  # ArtifactStore of the pretrain run (task reward)


def completed(ctx: JobContext, name: str, kind: str) -> Any:
    """The input's store, after checking it is a finished run of the expected kind."""
    store = ctx.input_store(name)
    declared = ctx.config.inputs[name].kind
    if declared is not None and declared != kind:
        raise InvalidInput(f"input '{name}' is a {declared}; it must be a {kind}")
    if read_manifest(store) is None:
        raise InvalidInput(f"input '{name}' ({store.uri}) has no {MANIFEST}: that {kind} has not succeeded; wait for it or re-run it")
    return store


def resolve_inputs(ctx: JobContext) -> Inputs:
    from osmf_jobs.gmodel.data import data_root
    if ctx.step != STEP:
        raise InvalidInput(f"step {ctx.step!r}: GMLLMTraining has one step, {STEP!r}")
    dataset = completed(ctx, "dataset", "GAIPDataset")
    grouping = completed(ctx, "grouping", "AudienceGrouping")
    data = data_root(dataset, grouping, ctx.input_store("data") if ctx.has_input("data") else None)
    init = None
    if ctx.spec.task == "reward":
        if not ctx.has_input("init"):
            raise InvalidInput("task reward needs the 'init' input: set spec.initFromRef to a pretrain GMLLMTraining")
        init = completed(ctx, "init", "GMLLMTraining")
        info_rel = f"{GModel.MODEL_DIR}/{GModel.INFO}"
        if not init.exists(info_rel):
            raise InvalidInput(f"spec.initFromRef: {init.uri} holds no G-MLLM ({info_rel} missing); point it at a pretrain GMLLMTraining")
        role = init.read_json(info_rel).get("role")
        if role != "policy":
            raise InvalidInput(f"spec.initFromRef: {init.uri} is a {role} run, not a pretrain run; initialise a GRM from a task: pretrain GMLLMTraining")
    return Inputs(dataset, grouping, data, init)
