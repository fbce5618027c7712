"""The job's inputs, checked before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from osmf_core.api import Role
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
    dataset, _ = finished_input(ctx, Role.DATASET, "GAIPDataset")
    grouping, _ = finished_input(ctx, Role.GROUPING, "AudienceGrouping")
    data = data_root(ctx, dataset, grouping)
    init = None
    if ctx.spec.task == "reward":
        if not ctx.has_input(Role.INIT):
            raise InvalidInput("task reward needs the 'init' input: set spec.initFromRef to a pretrain GMLLMTraining")
        init, _ = finished_input(ctx, Role.INIT, "GMLLMTraining")
        role = model_role(init, "spec.initFromRef")
        if role != "policy":
            raise InvalidInput(f"spec.initFromRef: {init.uri} is a {role} run, not a pretrain run; initialise a GRM from a task: pretrain GMLLMTraining")
    return Inputs(dataset, grouping, data, init)
