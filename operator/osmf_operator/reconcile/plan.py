"""What a resource needs before it can run: its dependencies, its inputs, its input hash.

Pure functions: the caller passes in the referenced resources it found (or None), and the
fingerprint of raw data it listed; no I/O happens here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from osmf_core.api import InputArtifact, Reference, Resource, Role
from osmf_core.api.common import ApiModel

# The kind recorded for raw data among a run's inputs (it is no resource).
RAW_DATA_KIND = "Dataset"

# Spec fields that change how a stage runs but not what it produces: excluded from the input hash.
NON_RESULT_FIELDS = ("resources", "runPolicy", "shards", "serving")
# The same inside a section: (section, field). GMLLMTraining's training.strategy (ddp | fsdp) shards the
# same computation differently; switching it resumes the run's checkpoint instead of starting over.
# keepCheckpoints only decides whether working files outlive the run; gradient checkpointing recomputes
# the same activations, data-loader workers build the same batches, and a collective timeout only
# decides when a stuck run gives up.
NON_RESULT_SUBFIELDS = (
    ("training", "strategy"), ("training", "keepCheckpoints"), ("training", "gradientCheckpointing"),
    ("training", "dataLoaderWorkers"), ("training", "collectiveTimeoutSeconds"),
    ("dpo", "keepCheckpoints"), ("dpo", "gradientCheckpointing"), ("dpo", "collectiveTimeoutSeconds"),
)


def references(resource: Resource) -> list[Reference]:
    """The resources this one consumes, by role (declared on the kind's spec model)."""
    return resource.info.references(resource.spec)


def topological(resources: list[Resource]) -> list[Resource]:
    """Dependencies first; references to resources not in the list are left for `check_dependencies`."""
    by_key = {(r.kind, r.namespace, r.name): r for r in resources}
    ordered: list[Resource] = []
    seen: set[tuple[str, str, str]] = set()

    def visit(resource: Resource, stack: tuple) -> None:
        key = (resource.kind, resource.namespace, resource.name)
        if key in seen or key in stack:
            return
        for ref in references(resource):
            dep = by_key.get((ref.kind, resource.namespace, ref.name))
            if dep is not None:
                visit(dep, stack + (key,))
        seen.add(key)
        ordered.append(resource)

    for resource in resources:
        visit(resource, ())
    return ordered


def condition_status(resource: Resource, type_: str) -> str | None:
    for condition in resource.status.conditions:
        if condition.type == type_:
            return condition.status
    return None


@dataclass
class Blocked:
    """The resource cannot run yet (waiting) or at all (stalled)."""

    reason: str
    message: str
    stalled: bool = False


@dataclass
class RunPlan:
    input_hash: str
    run_uri: str
    inputs: dict[str, InputArtifact] = field(default_factory=dict)


def output_of(dep: Resource) -> InputArtifact | None:
    out = dep.status.artifacts.output
    if out is None:
        return None
    return InputArtifact(kind=dep.kind, name=dep.name, uri=out.uri, digest=out.digest)


def inherited_input(dep: Resource, role: str) -> InputArtifact | None:
    for ref in dep.status.artifacts.inputs:
        if ref.name == role:
            return InputArtifact(kind=ref.kind, name=None, uri=ref.uri, digest=ref.digest)
    return None


def check_dependencies(resource: Resource, found: dict[str, Resource | None]) -> Blocked | None:
    """Missing → wait (it may be applied later); failed or of the wrong task → stalled; running → wait."""
    waiting = []
    for ref in references(resource):
        dep = found.get(ref.role)
        label = f"{ref.kind}/{ref.name}"
        if dep is None:
            return Blocked("DependencyNotFound", f"{ref.role} {label} does not exist in namespace {resource.namespace}; create it or fix the reference")
        wrong_task = ref.wrong_task(dep.spec)
        if wrong_task is not None:
            return Blocked(
                "InvalidReference",
                f"{ref.role} {label} has task {wrong_task!r}, but {resource.kind} needs task {ref.requires_task!r}",
                stalled=True,
            )
        if condition_status(dep, "Succeeded") == "False" or condition_status(dep, "Stalled") == "True":
            return Blocked("DependencyFailed", f"{ref.role} {label} failed; fix it and this resource continues", stalled=True)
        if condition_status(dep, "Succeeded") != "True" or output_of(dep) is None:
            waiting.append(f"{label} ({dep.status.stage})")
    if waiting:
        return Blocked("WaitingForDependency", "waiting for " + ", ".join(waiting))
    return None


def collect_inputs(resource: Resource, found: dict[str, Resource], data_fingerprint: str | None) -> dict[str, InputArtifact]:
    """Role → artifact for the job config: each reference's output, the raw data, then what the kind inherits."""
    inputs: dict[str, InputArtifact | None] = {}
    for ref in references(resource):
        inputs[ref.role] = output_of(found[ref.role])
    data_uri = resource.info.raw_data_uri(resource.spec)
    if data_uri is not None:
        inputs[Role.DATA] = InputArtifact(kind=RAW_DATA_KIND, uri=data_uri, digest=data_fingerprint)
    for inherit in resource.info.spec_model.inherits:
        via = found.get(inherit.via)
        inputs[inherit.role] = inherited_input(via, inherit.role) if via is not None else None
    return {role: art for role, art in inputs.items() if art is not None}


def result_spec(spec: ApiModel) -> dict:
    wire = spec.wire()
    result = {key: value for key, value in wire.items() if key not in NON_RESULT_FIELDS}
    for section, field_name in NON_RESULT_SUBFIELDS:
        if isinstance(result.get(section), dict):
            result[section] = {key: value for key, value in result[section].items() if key != field_name}
    return result


def input_hash(kind: str, spec: ApiModel, inputs: dict[str, InputArtifact]) -> str:
    """Same spec (result fields) + same input digests → same hash → same run directory."""
    doc = {
        "kind": kind,
        "spec": result_spec(spec),
        "inputs": {role: art.digest or art.uri for role, art in sorted(inputs.items())},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def run_uri(root: str, resource: Resource, digest: str) -> str:
    return f"{root.rstrip('/')}/{resource.namespace}/{resource.kind.lower()}/{resource.name}/{digest[:16]}"


def plan_run(
    resource: Resource,
    found: dict[str, Resource | None],
    artifact_root: str,
    data_fingerprint: str | None = None,
) -> Blocked | RunPlan:
    blocked = check_dependencies(resource, found)
    if blocked:
        return blocked
    inputs = collect_inputs(resource, found, data_fingerprint)
    digest = input_hash(resource.kind, resource.spec, inputs)
    return RunPlan(input_hash=digest, run_uri=run_uri(artifact_root, resource, digest), inputs=inputs)
