"""What a resource needs before it can run: its dependencies, its inputs, its input hash.

Pure functions: the caller passes in the referenced resources it found (or None), and the
fingerprint of raw data it listed; no I/O happens here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from osmf_core.api import KINDS, InputArtifact, Resource
from osmf_core.api.common import ApiModel

# Spec fields that change how a stage runs but not what it produces: excluded from the input hash.
NON_RESULT_FIELDS = ("resources", "runPolicy", "shards", "serving")
# The same inside a section: (section, field). GMLLMTraining's training.strategy (ddp | fsdp) shards the
# same computation differently; switching it resumes the run's checkpoint instead of starting over.
# keepCheckpoints only decides whether working files outlive the run.
NON_RESULT_SUBFIELDS = (("training", "strategy"), ("training", "keepCheckpoints"), ("dpo", "keepCheckpoints"))


@dataclass(frozen=True)
class Reference:
    role: str
    kind: str
    name: str
    optional: bool = False
    # What the referenced resource must be, e.g. {"task": "pretrain"} for a policy.
    requires_task: str | None = None


def references(resource: Resource) -> list[Reference]:
    """The resources this one consumes, by role."""
    spec = resource.spec
    kind = resource.kind
    if kind == "AudienceGrouping":
        return []
    if kind == "GAIPDataset":
        return [Reference("grouping", "AudienceGrouping", spec.grouping_ref.name)]
    if kind == "GMLLMTraining":
        refs = [Reference("dataset", "GAIPDataset", spec.dataset_ref.name)]
        if spec.task == "reward":
            refs.append(Reference("init", "GMLLMTraining", spec.init_from_ref.name, requires_task="pretrain"))
        return refs
    if kind == "GroupDPORun":
        return [
            Reference("policy", "GMLLMTraining", spec.policy_ref.name, requires_task="pretrain"),
            Reference("reward", "GMLLMTraining", spec.reward_model_ref.name, requires_task="reward"),
            Reference("dataset", "GAIPDataset", spec.dataset_ref.name),
        ]
    if kind == "AdImageCampaign":
        generator = spec.generator_ref
        refs = [
            Reference("grouping", "AudienceGrouping", spec.grouping_ref.name),
            Reference(
                "generator", generator.kind, generator.name,
                requires_task="pretrain" if generator.kind == "GMLLMTraining" else None,
            ),
        ]
        if spec.reward_model_ref is not None:
            refs.append(Reference("reward", "GMLLMTraining", spec.reward_model_ref.name, requires_task="reward"))
        return refs
    raise ValueError(f"unknown kind {kind}")


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
        if ref.requires_task and getattr(dep.spec, "task", ref.requires_task) != ref.requires_task:
            return Blocked(
                "InvalidReference",
                f"{ref.role} {label} has task {dep.spec.task!r}, but {resource.kind} needs task {ref.requires_task!r}",
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
    """Role → artifact for the job config, including artifacts inherited through dependencies."""
    inputs: dict[str, InputArtifact] = {}
    for ref in references(resource):
        inputs[ref.role] = output_of(found[ref.role])
    kind = resource.kind
    if kind == "AudienceGrouping":
        inputs["data"] = InputArtifact(kind="Dataset", uri=resource.spec.data.uri, digest=data_fingerprint)
    elif kind in ("GAIPDataset", "AdImageCampaign"):
        inputs["data"] = inherited_input(found["grouping"], "data")
    if kind in ("GMLLMTraining", "GroupDPORun"):
        inputs["grouping"] = inherited_input(found["dataset"], "grouping")
    if kind == "AdImageCampaign" and resource.spec.generator_ref.kind == "GroupDPORun":
        inputs["policy"] = inherited_input(found["generator"], "policy")
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


def dependency_keys(resource: Resource) -> list[tuple[str, str]]:
    """(kind, name) of every referenced resource; the shell fetches these."""
    return [(ref.kind, ref.name) for ref in references(resource)]


def known_kind(kind: str) -> bool:
    return kind in KINDS
