"""`osmf render`: the exact objects the operator would create for each resource, offline.

Every step of every resource is rendered as if its dependencies had succeeded (their artifact URIs
are computed the way the operator computes them; digests are unknown until they run, and the data
listing is not read), using the same core and builders as the operator.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from osmf_core.api import API_VERSION, Resource, parse_resource

from .builders.jobs import build_job_objects
from .builders.serving import build_inference_service
from .reconcile import Observed, plan_run, references
from .reconcile import ServiceRequest
from .reconcile.decide import job_request, service_name
from .reconcile.plan import Blocked, RunPlan, topological
from .settings import OperatorSettings, SettingsError, load_settings, parse_settings

UNKNOWN_DIGEST = "sha256:unknown-until-run"


def owner_of(resource: Resource) -> dict:
    return {
        "apiVersion": API_VERSION, "kind": resource.kind, "name": resource.name,
        "namespace": resource.namespace, "uid": resource.metadata.uid or f"<uid of {resource.kind}/{resource.name}>",
    }


def as_succeeded(resource: Resource, plan: RunPlan) -> Resource:
    """The resource as its dependents will see it once it has run."""
    status = {
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Rendered", "lastTransitionTime": "1970-01-01T00:00:00Z"}],
        "stage": "Succeeded",
        "artifacts": {
            "inputHash": plan.input_hash,
            "inputs": [{"name": role, "kind": a.kind, "uri": a.uri, "digest": a.digest} for role, a in plan.inputs.items()],
            "output": {"name": "output", "kind": resource.kind, "uri": plan.run_uri, "digest": UNKNOWN_DIGEST},
        },
    }
    return parse_resource({**resource.body, "status": status})


def render_resources(resources: list[Resource], settings: OperatorSettings) -> list[tuple[str, dict]]:
    """(comment, object) for every child of every resource."""
    root = settings.artifacts.root_uri
    done: dict[tuple[str, str], Resource] = {}
    rendered: list[tuple[str, dict]] = []
    for resource in topological(resources):
        found = {ref.role: done.get((ref.kind, ref.name)) for ref in references(resource)}
        plan = plan_run(resource, found, root, data_fingerprint=UNKNOWN_DIGEST)
        if isinstance(plan, Blocked):
            rendered.append((f"{resource.kind}/{resource.name}: not rendered: {plan.message}", {}))
            continue
        done[(resource.kind, resource.name)] = as_succeeded(resource, plan)
        obs = Observed(resource=resource, plan=plan, code_version=settings.code_version)
        for step in resource.info.steps:
            request = job_request(obs, plan, step)
            for obj in build_job_objects(request, owner_of(resource), settings):
                rendered.append((f"{resource.kind}/{resource.name} step {step.name}", obj))
        serving = getattr(resource.spec, "serving", None)
        if serving is not None and serving.enabled:
            grouping = plan.inputs.get("grouping")
            request = ServiceRequest(service_name(resource), plan.run_uri, grouping.uri if grouping else "", serving)
            rendered.append((f"{resource.kind}/{resource.name} serving", build_inference_service(request, owner_of(resource), settings)))
    return rendered


def render_paths(paths: list[str], settings_file: str | None, artifact_root: str | None) -> int:
    from .cli import load_resources

    resources, problems = load_resources(paths)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        settings = parse_settings(yaml.safe_load(Path(settings_file).read_text())) if settings_file else load_settings({})
    except (OSError, SettingsError, yaml.YAMLError) as error:
        print(f"osmf: settings: {error}", file=sys.stderr)
        return 2
    if artifact_root:
        settings = settings.model_copy(update={"artifacts": settings.artifacts.model_copy(update={"root_uri": artifact_root})})
    out = []
    for comment, obj in render_resources(resources, settings):
        out.append(f"# {comment}\n" + (yaml.safe_dump(obj, sort_keys=False) if obj else ""))
    sys.stdout.write("---\n".join(out))
    return 0
