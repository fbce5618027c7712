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
    dataset: Any  # ArtifactStore of the GAIP run
    grouping: Any  # ArtifactStore of the AudienceGrouping run
    data: Any  # ArtifactStore of the logs root (explicit `data` input, or the GAIP run's)
    init: Any = None  # ArtifactStore of the pretrain run (task reward)


def resolve_inputs(ctx: JobContext) -> Inputs:
    dataset, _ = finished_input(ctx, Role.DATASET, Kind.GAIP_DATASET)
    grouping, _ = finished_input(ctx, Role.GROUPING, Kind.AUDIENCE_GROUPING)
    data = data_root(ctx, dataset, grouping)
    init = None
    if ctx.spec.task == "reward":  # the job config carries `init` then (JobConfig checks every reference)
        init, _ = finished_input(ctx, Role.INIT, Kind.GMLLM_TRAINING)
        role = model_role(init, "spec.initFromRef")
        if role != "policy":
            raise InvalidInput(f"spec.initFromRef: {init.uri} is a {role} run, not a pretrain run; initialise a GRM from a task: pretrain GMLLMTraining")
    return Inputs(dataset, grouping, data, init)
