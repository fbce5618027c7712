"""A ServiceRequest → a KServe v1beta1 InferenceService with a custom predictor container.

The operator writes the manifest as a plain dict (it never imports `kserve`). The predictor image's
entry point reads its configuration from the environment:

- `STORAGE_URI`: the campaign run's `serving/` folder (campaign.json only; images are read by URI);
  KServe's storage initializer copies it to /mnt/models
  (S3 credentials for that copy come from the predictor's ServiceAccount, KServe's convention);
- `OSMF_GROUPING_URI`: the AudienceGrouping artifact that maps viewers to groups;
- `PROTOCOL`: v1 or v2; `OSMF_MODEL_NAME`: the name the model answers under.
"""

from __future__ import annotations

from typing import Any

from ..reconcile import ServiceRequest
from ..settings import OperatorSettings
from .pod import (
    artifact_env,
    container_resources,
    container_security_context,
    object_meta,
    owner_labels,
    placement,
    pod_security_context,
    runtime_env,
    service_account,
)

PREDICTOR_CONTAINER = "kserve-container"  # the name KServe looks for in a custom predictor
PREDICTOR_MODULE = "osmf_jobs.serving"
PREDICTOR_PORT = 8080


def build_inference_service(request: ServiceRequest, owner: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    serving = request.serving
    resources = serving.resources
    gpu = resources.gpus_per_node > 0
    field = "spec.serving.resources.nodePool"
    env = [
        {"name": "STORAGE_URI", "value": request.storage_uri},
        {"name": "OSMF_GROUPING_URI", "value": request.grouping_uri},
        {"name": "PROTOCOL", "value": serving.protocol},
        {"name": "OSMF_MODEL_NAME", "value": request.name},
        *runtime_env(),
        *artifact_env(settings, owner["namespace"]),
    ]
    container = {
        "name": PREDICTOR_CONTAINER,
        "image": settings.images.predictor,
        "imagePullPolicy": settings.images.pull_policy,
        "command": ["python", "-m", PREDICTOR_MODULE],
        "env": env,
        "ports": [{"containerPort": PREDICTOR_PORT, "protocol": "TCP"}],
        "resources": container_resources(resources, gpu, settings, field),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    predictor: dict[str, Any] = {
        "minReplicas": serving.min_replicas,
        "maxReplicas": serving.max_replicas,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        **placement(resources, gpu, settings, field),
    }
    predictor.update(service_account(settings, owner["namespace"]))
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": object_meta(request.name, owner, owner_labels(owner)),
        "spec": {"predictor": predictor},
    }
