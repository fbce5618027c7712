"""`osmf render`: the objects the operator would create for each resource, offline, made by its own code.

Each resource goes through the reconcile core (`decide`) the way the operator meets it: fresh, then
with each earlier step's Job succeeded, then with its manifest present (where the kind serves, that
decision asks for the InferenceService). The builders turn those decisions into Jobs, ConfigMaps,
Services and the InferenceService, as `handlers.Operator.apply` does; a resource's dependents see
it with the status its last decision wrote. Offline nothing is listed or run, so `UNKNOWN_DIGEST`
stands for the data listing and every manifest: input hashes (and the names and run URIs made from
them) differ from a cluster's, everything else is what the operator creates.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import yaml

from osmf_core.api import Resource

from .builders import BuildError, build_inference_service, build_job_objects, owner_of
from .reconcile import Observed, ObservedJob, decide, plan_run
from .reconcile.plan import Blocked, topological
from .settings import OperatorSettings
from .validate import check_for_cluster, has_errors

UNKNOWN_DIGEST = "sha256:unknown-until-run"
RENDER_TIME = "1970-01-01T00:00:00Z"
Rendered = list[tuple[str, dict]]  # (comment, object); an empty object is a comment alone


def placeholder_uid(resource: Resource) -> str:
    return f"<uid of {resource.kind}/{resource.name}>"


def render_resource(resource: Resource, found: dict[str, Resource | None], settings: OperatorSettings) -> tuple[Rendered, Resource | None]:
    """Every child of one resource, and the resource as its dependents see it once it has run (None: blocked)."""
    label = f"{resource.kind}/{resource.name}"
    plan = plan_run(resource, found, settings.artifacts_for(resource.namespace).root_uri, data_fingerprint=UNKNOWN_DIGEST)
    if isinstance(plan, Blocked):
        return [(f"{label}: not rendered: {plan.message}", {})], None
    owner = owner_of(resource)
    observed = Observed(resource=resource, plan=plan, code_version=settings.code_version)
    rendered: Rendered = []
    for step in resource.info.steps:
        decision = decide(observed, RENDER_TIME)
        requests = [r for r in decision.create_jobs if r.step.name == step.name]
        if len(requests) != 1 or len(decision.create_jobs) != 1:
            raise RuntimeError(f"{label}: the reconcile core asked for {len(decision.create_jobs)} job(s) at step {step.name}; please report it")
        for obj in build_job_objects(requests[0], owner, settings):
            rendered.append((f"{label} step {step.name}", obj))
        succeeded = ObservedJob(name=requests[0].name, step=step.name, input_hash=plan.input_hash, phase="Succeeded")
        observed = replace(observed, resource=replace(observed.resource, status=decision.status), jobs=[*observed.jobs, succeeded])
    decision = decide(replace(observed, manifest=({}, UNKNOWN_DIGEST)), RENDER_TIME)
    if decision.apply_service is not None:
        rendered.append((f"{label} serving", build_inference_service(decision.apply_service, owner, settings)))
    return rendered, replace(resource, status=decision.status)


def render_resources(resources: list[Resource], settings: OperatorSettings) -> Rendered:
    """(comment, object) for every child of every resource, dependencies first."""
    done: dict[tuple[str, str, str], Resource] = {}
    rendered: Rendered = []
    for resource in topological(resources):
        if not resource.metadata.uid:
            resource = replace(resource, metadata=resource.metadata.model_copy(update={"uid": placeholder_uid(resource)}))
        found = {ref.role: done.get((ref.kind, resource.namespace, ref.name)) for ref in resource.info.references(resource.spec)}
        children, as_run = render_resource(resource, found, settings)
        rendered += children
        if as_run is not None:
            done[resource.key] = as_run
    return rendered


def render_paths(paths: list[str], settings_file: str | None, artifact_root: str | None, namespace: str = "default") -> int:
    """`osmf render`: YAML on stdout; every problem on stderr (as `osmf validate` reports it) and exit 2 on errors."""
    resources, settings, problems = check_for_cluster(paths, namespace, settings_file)
    for problem in problems:
        print(problem, file=sys.stderr)
    if has_errors(problems):
        return 2
    if artifact_root:  # every namespace's root, the tenants' too
        settings = settings.model_copy(update={
            "artifacts": settings.artifacts.model_copy(update={"root_uri": artifact_root}),
            "tenants": {ns: t.model_copy(update={"root_uri": artifact_root}) for ns, t in settings.tenants.items()},
        })
    try:
        rendered = render_resources(resources, settings)
    except BuildError as error:  # spec_problems reports these first; this keeps a surprise to one line
        print(f"osmf: {error}", file=sys.stderr)
        return 2
    out = [f"# {comment}\n" + (yaml.safe_dump(obj, sort_keys=False) if obj else "") for comment, obj in rendered]
    sys.stdout.write("---\n".join(out))
    return 0
