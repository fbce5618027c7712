"""Pieces every OSMF pod shares: labels, owner references, placement, security, artifact-store env.

Pure functions of (request, owner, settings): no clock, no environment, no Kubernetes client.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from osmf_core.api import Resource, Resources

from ..settings import NodePool, OperatorSettings

MANAGED_BY = {"app.kubernetes.io/managed-by": "osmf-operator"}
LABEL_KIND = "osmf.dev/kind"
LABEL_NAME = "osmf.dev/name"
LABEL_STEP = "osmf.dev/step"
LABEL_INPUT_HASH = "osmf.dev/input-hash"
# Label values stop at 63 characters; the full hash travels in an annotation of the same name.
ANNOTATION_INPUT_HASH = "osmf.dev/input-hash"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CONFIG_DIR = "/etc/osmf"
CONFIG_FILE = "config.json"
# A ConfigMap holds at most 1 MiB; keep room for its metadata.
MAX_CONFIG_BYTES = 1_000_000
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class BuildError(ValueError):
    """The resource cannot be turned into manifests with these settings; the message names the field."""


def label_value(text: str) -> str:
    """`text` if it is a valid label value, else a stable ≤ 63-character stand-in ending in a hash."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:54].strip("-_.")
    return f"{head}-{digest}" if head else digest


def owner_labels(owner: dict[str, Any], step: str | None = None, input_hash: str | None = None) -> dict[str, str]:
    """Only `osmf.dev/` labels plus managed-by: the parent's own labels are never copied (GitOps tracking ids)."""
    labels = {LABEL_KIND: owner["kind"], LABEL_NAME: label_value(owner["name"]), **MANAGED_BY}
    if step:
        labels[LABEL_STEP] = step
    if input_hash:
        labels[LABEL_INPUT_HASH] = input_hash[:16]
    return labels


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["name"],
        "uid": owner["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(name: str, owner: dict[str, Any], labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner["namespace"],
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def owner_of(resource: Resource) -> dict[str, Any]:
    """The owner dict the builders take, from a parsed resource."""
    return {
        "apiVersion": resource.body.get("apiVersion", "osmf.dev/v1alpha1"),
        "kind": resource.kind,
        "name": resource.name,
        "uid": resource.metadata.uid,
        "namespace": resource.namespace,
    }


# ---- placement -----------------------------------------------------------------------------------


def node_pool(settings: OperatorSettings, name: str | None, field: str) -> NodePool:
    try:
        return settings.node_pools[name or settings.default_gpu_pool]
    except KeyError:
        known = ", ".join(sorted(settings.node_pools)) or "none"
        raise BuildError(f"{field}: unknown node pool {name!r}; the operator's settings define: {known}") from None


def placement(resources: Resources, gpu: bool, settings: OperatorSettings, field: str) -> dict[str, Any]:
    """nodeSelector and tolerations for a pod.

    GPU pods go to the named pool (or the default GPU pool). CPU pods go to the named pool when the
    spec names one, else to the settings' CPU node selector.
    """
    if gpu or resources.node_pool:
        pool = node_pool(settings, resources.node_pool, field)
        out: dict[str, Any] = {}
        if pool.node_selector:
            out["nodeSelector"] = dict(pool.node_selector)
        if pool.tolerations:
            out["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in pool.tolerations]
        return out
    return {"nodeSelector": dict(settings.cpu_node_selector)} if settings.cpu_node_selector else {}


def container_resources(resources: Resources, gpu: bool, settings: OperatorSettings, field: str) -> dict[str, Any]:
    """CPU and memory as request = limit (Guaranteed QoS); GPUs as a limit of the pool's resource name."""
    amounts = {"cpu": resources.cpu, "memory": resources.memory}
    out = {"requests": dict(amounts), "limits": dict(amounts)}
    if gpu:
        pool = node_pool(settings, resources.node_pool, field)
        out["limits"][pool.gpu_resource] = str(resources.gpus_per_node)
    return out


# ---- security and environment --------------------------------------------------------------------


def pod_security_context(settings: OperatorSettings) -> dict[str, Any]:
    """Non-root always; a UID only when the settings name one. Without it the images' own non-root user
    runs, or the UID OpenShift's restricted SCC assigns (it refuses pods that ask for another)."""
    context: dict[str, Any] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    uid = settings.run_as_user
    if uid is not None:
        context.update(runAsUser=uid, runAsGroup=uid, fsGroup=uid)
    return context


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def artifact_env(settings: OperatorSettings, namespace: str) -> list[dict[str, Any]]:
    """The standard AWS variables the store (boto3) reads; credentials only by reference to a Secret
    (the namespace's tenant Secret where the settings name one, docs/operator.md "Tenancy")."""
    art = settings.artifacts_for(namespace)
    env: list[dict[str, Any]] = [  # osmf_core.store's managed-transfer settings
        {"name": "OSMF_S3_MULTIPART_THRESHOLD_MB", "value": f"{art.multipart_threshold_mb:g}"},
        {"name": "OSMF_S3_MULTIPART_CHUNK_MB", "value": f"{art.multipart_chunk_mb:g}"},
    ]
    if art.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": art.endpoint_url})
    if art.region:
        env += [{"name": "AWS_REGION", "value": art.region}, {"name": "AWS_DEFAULT_REGION", "value": art.region}]
    if art.credentials_secret:
        for key, optional in (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False), ("AWS_SESSION_TOKEN", True)):
            ref: dict[str, Any] = {"name": art.credentials_secret, "key": key}
            if optional:
                ref["optional"] = True
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def service_account(settings: OperatorSettings, namespace: str) -> dict[str, str]:
    """`serviceAccountName` of job and predictor pods (workload identity), if the namespace has one."""
    name = settings.artifacts_for(namespace).service_account
    return {"serviceAccountName": name} if name else {}


def runtime_env() -> list[dict[str, Any]]:
    """Jobs and predictors run offline: models come from the artifact store, never from a hub."""
    return [
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "HF_HUB_DISABLE_PROGRESS_BARS", "value": "1"},
        {"name": "HF_HOME", "value": "/tmp/huggingface"},
        {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def spec_problems(resource: Resource, settings: OperatorSettings) -> list[str]:
    """What the typed models cannot know: node pools the settings lack, a config too big for a ConfigMap."""
    problems = []
    paths = [("spec.resources.nodePool", resource.spec.resources)]
    serving = resource.info.serving(resource.spec)
    if serving is not None:
        paths.append(("spec.serving.resources.nodePool", serving.resources))
    for path, resources in paths:
        if resources.node_pool and resources.node_pool not in settings.node_pools:
            known = ", ".join(sorted(settings.node_pools)) or "none"
            problems.append(f"{path}: unknown node pool {resources.node_pool!r}; the operator's settings define: {known}")
    size = len(json.dumps(resource.spec.wire(), separators=(",", ":")))
    if size > MAX_CONFIG_BYTES - 20_000:
        problems.append(f"spec: {size} bytes do not fit the job's config ConfigMap (1 MiB); list fewer spec.products")
    return problems
