"""Factories for OSMF resources and their statuses (tests build data here, not by hand)."""

from __future__ import annotations

import copy
from typing import Any

from osmf_core.api import API_VERSION, parse_resource
from osmf_core.api.resource import Resource

SPECS: dict[str, dict[str, Any]] = {
    "AudienceGrouping": {
        "data": {"uri": "file:///data/world"},
        "userAttributes": ["age_band", "region"],
        "resources": {"gpusPerNode": 1},
    },
    "GAIPDataset": {"groupingRef": {"name": "grouping"}, "minImpressions": 10},
    "GMLLMTraining": {"task": "pretrain", "datasetRef": {"name": "gaip"}, "baseModel": {"uri": "builtin:tiny-llava"}},
    "GroupDPORun": {
        "policyRef": {"name": "gmllm"}, "rewardModelRef": {"name": "grm"}, "datasetRef": {"name": "gaip"},
        "rendering": {"backend": "procedural", "size": 64},
    },
    "AdImageCampaign": {
        "groupingRef": {"name": "grouping"}, "generatorRef": {"kind": "GroupDPORun", "name": "dpo"},
        "rewardModelRef": {"name": "grm"}, "rendering": {"backend": "procedural", "size": 64},
    },
}

DEFAULT_NAMES = {
    "AudienceGrouping": "grouping", "GAIPDataset": "gaip", "GMLLMTraining": "gmllm",
    "GroupDPORun": "dpo", "AdImageCampaign": "campaign",
}


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def body(kind: str, name: str | None = None, namespace: str = "default", generation: int = 1, **spec: Any) -> dict[str, Any]:
    """A whole object as kubectl would send it; keyword arguments override spec fields (camelCase)."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name or DEFAULT_NAMES[kind], "namespace": namespace, "uid": f"uid-{name or DEFAULT_NAMES[kind]}",
                     "generation": generation},
        "spec": deep_merge(SPECS[kind], spec),
    }


def reward_body(name: str = "grm", init: str = "gmllm", **spec: Any) -> dict[str, Any]:
    base = {"task": "reward", "initFromRef": {"name": init}}
    base.pop("baseModel", None)
    doc = body("GMLLMTraining", name, **deep_merge(base, spec))
    doc["spec"].pop("baseModel", None)
    return doc


def resource(kind: str, name: str | None = None, **spec: Any) -> Resource:
    return parse_resource(body(kind, name, **spec))


def succeeded(res: Resource, uri: str | None = None, digest: str = "sha256:feed", inputs: list[dict] | None = None) -> Resource:
    """The resource as it looks after a successful run."""
    status = {
        "observedGeneration": res.metadata.generation,
        "stage": "Succeeded",
        "conditions": [
            {"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ],
        "artifacts": {
            "inputs": inputs or [],
            "output": {"name": "output", "kind": res.kind, "uri": uri or f"file:///art/{res.name}", "digest": digest},
        },
    }
    return parse_resource({**res.body, "status": status})


def failed(res: Resource) -> Resource:
    status = {
        "stage": "Failed",
        "conditions": [
            {"type": "Succeeded", "status": "False", "reason": "BackoffLimitExceeded", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Stalled", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ],
    }
    return parse_resource({**res.body, "status": status})


def running(res: Resource) -> Resource:
    status = {"stage": "Running:train", "conditions": [
        {"type": "Succeeded", "status": "Unknown", "reason": "Running", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    return parse_resource({**res.body, "status": status})


def job_config_model(kind: str) -> type:
    """The job's own config model: `<Kind>Config` in `<job module>.config` (what its `__main__`
    gives `run_job`), e.g. `osmf_jobs.grouping.config.AudienceGroupingConfig`."""
    import importlib

    from osmf_core.api import KINDS

    return getattr(importlib.import_module(f"{KINDS[kind].job_module}.config"), f"{kind}Config")
