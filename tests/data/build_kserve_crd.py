"""Writes serving.kserve.io_inferenceservices.yaml: KServe's v1beta1 InferenceService CRD schema for tests.

KServe's published CRD (config/crd/full/serving.kserve.io_inferenceservices.yaml, ~1 MB) is
controller-gen output of its Go API types. This script rebuilds the part the operator writes from
the same sources, offline:

- the component fields of `ComponentExtensionSpec` (pkg/apis/serving/v1beta1/component.go) and the
  predictor's own fields (predictor.go), written out below;
- the inlined `PodSpec` (podspec.go: a copy of corev1.PodSpec with `containers` optional), taken from
  the official Kubernetes OpenAPI schema that kubernetes-validate ships, converted to a structural
  CRD schema (refs inlined, `nullable`, int-or-string) the way controller-gen writes it.

Framework predictors (sklearn, triton, …), explainers and transformers, which the operator never
writes, are kept as open objects. Run: `.venv/bin/python tests/data/build_kserve_crd.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"  # the Kubernetes API KServe 0.15/0.16 builds against
OUT = Path(__file__).with_name("serving.kserve.io_inferenceservices.yaml")


def load_definitions() -> dict[str, Any]:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{K8S_VERSION}-local"
    return json.loads((root / "_definitions.json").read_text())["$defs"]


def structural(node: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """A JSON-schema node of the Kubernetes OpenAPI → a structural CRD schema node."""
    if depth > 40:
        raise RecursionError("schema too deep")
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in ("io.k8s.apimachinery.pkg.api.resource.Quantity", "io.k8s.apimachinery.pkg.util.intstr.IntOrString"):
            out = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
            if name.endswith("Quantity"):
                out["pattern"] = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
            return out
        return structural(defs[name], defs, depth + 1)
    out: dict[str, Any] = {}
    types = node.get("type")
    if isinstance(types, list):
        real = [t for t in types if t != "null"]
        out["type"] = real[0]
    elif types:
        out["type"] = types
    if "format" in node and node["format"] in ("int32", "int64", "byte", "date-time", "double"):
        out["format"] = node["format"]
    if "enum" in node:
        out["enum"] = [v for v in node["enum"] if v is not None]
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {k: structural(v, defs, depth + 1) for k, v in sorted(node["properties"].items())}
        if node.get("required"):
            out["required"] = sorted(node["required"])
    if "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        out["type"] = "object"
        out["additionalProperties"] = structural(node["additionalProperties"], defs, depth + 1)
    if "items" in node:
        out["type"] = "array"
        out["items"] = structural(node["items"], defs, depth + 1)
    for key in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type"):
        if key in node:
            out[key] = node[key]
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def open_object() -> dict[str, Any]:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def string_map() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def component_extension() -> dict[str, Any]:
    """ComponentExtensionSpec (component.go)."""
    return {
        "minReplicas": {"type": "integer"},
        "maxReplicas": {"type": "integer"},
        "scaleTarget": {"type": "integer"},
        "scaleMetric": {"type": "string", "enum": ["cpu", "memory", "concurrency", "rps"]},
        "containerConcurrency": {"type": "integer", "format": "int64"},
        "timeout": {"type": "integer", "format": "int64"},
        "canaryTrafficPercent": {"type": "integer", "format": "int64"},
        "logger": open_object(),
        "batcher": open_object(),
        "labels": string_map(),
        "annotations": string_map(),
        "deploymentStrategy": open_object(),
    }


def predictor(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """PredictorSpec (predictor.go): framework specs, storageUris, workerSpec, inlined PodSpec and extensions."""
    props = dict(pod_spec["properties"])
    for framework in ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml",
                      "lightgbm", "paddle", "model", "workerSpec"):
        props[framework] = open_object()
    props["storageUris"] = {"type": "array", "minItems": 1, "x-kubernetes-list-type": "atomic", "items": {
        "type": "object", "required": ["uri"],
        "properties": {"uri": {"type": "string", "minLength": 1},
                       "mountPath": {"type": "string", "maxLength": 255, "pattern": "^/.*", "default": "/mnt/models"}}}}
    props.update(component_extension())
    return {"type": "object", "properties": dict(sorted(props.items()))}  # no `required`: containers is optional


def crd() -> dict[str, Any]:
    defs = load_definitions()
    pod_spec = structural(defs["io.k8s.api.core.v1.PodSpec"], defs)
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["predictor"],
                "properties": {"predictor": predictor(pod_spec), "explainer": open_object(), "transformer": open_object()},
            },
            "status": open_object(),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "inferenceservices.serving.kserve.io", "annotations": {
            "osmf.dev/source": f"rebuilt by tests/data/build_kserve_crd.py from KServe's v1beta1 Go types and Kubernetes {K8S_VERSION} PodSpec"}},
        "spec": {
            "group": "serving.kserve.io",
            "names": {"kind": "InferenceService", "listKind": "InferenceServiceList", "plural": "inferenceservices",
                      "singular": "inferenceservice", "shortNames": ["isvc"]},
            "scope": "Namespaced",
            "versions": [{"name": "v1beta1", "served": True, "storage": True, "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": schema}}],
        },
    }


if __name__ == "__main__":
    OUT.write_text("# Generated by build_kserve_crd.py; do not edit.\n" + yaml.safe_dump(crd(), sort_keys=False, width=120))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
