"""The runs a job reads: checked to be finished runs of the expected kind, and what they recorded.

    dataset, digest = finished_input(ctx, Role.DATASET, "GAIPDataset")
    data = data_root(ctx, dataset, grouping)            # the `data` input, else the one a run recorded
    policy = recorded_input(generator, Role.POLICY)     # an input a finished run's manifest records
"""

from __future__ import annotations

from osmf_core.api import Role
from osmf_core.layout import MANIFEST
from osmf_core.store import ArtifactStore, open_store, read_manifest
from osmf_jobs.runtime import InvalidInput, JobContext


def finished_input(ctx: JobContext, role: str, kind: str) -> tuple[ArtifactStore, str]:
    """(store, manifest digest) of the input `role`, after checking it is a finished run of `kind`."""
    store = ctx.input_store(role)
    declared = ctx.config.inputs[role].kind
    if declared is not None and declared != kind:
        raise InvalidInput(f"input '{role}' is a {declared}; it must be a {kind}")
    found = read_manifest(store)
    if found is None:
        raise InvalidInput(f"input '{role}' ({store.uri}) has no {MANIFEST}: that {kind} has not succeeded; wait for it or re-run it")
    return store, found[1]


def recorded_input(run: ArtifactStore, role: str) -> ArtifactStore | None:
    """The input `role` that a finished run recorded in its manifest; None when it recorded none."""
    found = read_manifest(run)
    for item in (found[0].get("inputs", []) if found else []):
        if item.get("name") == role and item.get("uri"):
            return open_store(item["uri"])
    return None


def data_root(ctx: JobContext, *runs: ArtifactStore) -> ArtifactStore:
    """The logs root (products, images, users): the job's `data` input, else the first one `runs`
    recorded."""
    if ctx.has_input(Role.DATA):
        return ctx.input_store(Role.DATA)
    for run in runs:
        found = recorded_input(run, Role.DATA)
        if found is not None:
            return found
    raise InvalidInput(
        f"no data root: none of {', '.join(run.uri for run in runs)} records a '{Role.DATA}' input in its manifest; "
        f"re-run them or pass a '{Role.DATA}' input"
    )
