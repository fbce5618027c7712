"""A ServiceRequest → a KServe v1beta1 InferenceService with a custom predictor container.

The operator writes the manifest as a plain dict (it never imports `kserve`). The predictor image's
entry point reads its configuration from the environment:

- `STORAGE_URI`: the campaign run's `serving/` folder (campaign.json only; images are read by URI);
  KServe's storage initializer copies it to /mnt/models
  (S3 credentials for that copy come from the predictor's ServiceAccount, KServe's convention);
- `OSMF_GROUPING_URI`: the AudienceGrouping artifact that maps viewers to groups;
- `PROTOCOL`: v1 or v2; `OSMF_MODEL_NAME`: the name the model answers under.

Both deployment modes (`settings.kserve.deploymentMode`, written as the
`serving.kserve.io/deploymentMode` annotation) admit the same predictor: Knative Serving, by
default, refuses every pod-level securityContext field (`kubernetes.podspec-securitycontext` is
off), so non-root, the user and group, no privilege escalation, no capabilities and the runtime
seccomp profile are all set on the container, where both Knative and a plain Deployment accept
them. The readiness probe asks the model server's own readiness endpoint for the protocol in use
(v1 `/v1/models/<name>`, v2 `/v2/models/<name>/ready`: 503 until the model has loaded) on the
container port, as Knative requires.
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
    runtime_env,
    service_account,
)

PREDICTOR_CONTAINER = "kserve-container"  # the name KServe looks for in a custom predictor
PREDICTOR_MODULE = "osmf_jobs.serving"
PREDICTOR_PORT = 8080
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"


def readiness_path(protocol: str, model_name: str) -> str:
    """KServe's model-ready endpoint of the protocol: 200 once `load()` has set the model ready, else 503."""
    return f"/v2/models/{model_name}/ready" if protocol == "v2" else f"/v1/models/{model_name}"


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
        "readinessProbe": {
            "httpGet": {"path": readiness_path(serving.protocol, request.name), "port": PREDICTOR_PORT},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": container_security_context(settings),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    predictor: dict[str, Any] = {
        "minReplicas": serving.min_replicas,
        "maxReplicas": serving.max_replicas,
        "containers": [container],
        **placement(resources, gpu, settings, field),
    }
    predictor.update(service_account(settings, owner["namespace"]))
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": object_meta(request.name, owner, owner_labels(owner),
                                {DEPLOYMENT_MODE_ANNOTATION: settings.kserve.deployment_mode}),
        "spec": {"predictor": predictor},
    }
