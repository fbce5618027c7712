"""A JobRequest → the objects of one step: the config ConfigMap, the Job, and for multi-node a headless Service.

Shapes (DESIGN §3, NOTES "Jobs"):
- one pod: a plain Job;
- a sharded step: an Indexed Job, completions = parallelism = shards, retries per index
  (`backoffLimitPerIndex`: shards are independent);
- single-node multi-GPU: torchrun (through `osmf_jobs.launch`) `--standalone --nproc-per-node=<gpus>`;
- multi-node: an Indexed Job of N pods whose `subdomain` is a headless Service; the rendezvous is
  `<job>-0.<service>` and the node rank is the completion index. A gang shares one `backoffLimit`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from osmf_core.api import INVALID_INPUT_EXIT_CODE, KINDS
from ..reconcile import JobRequest
from ..settings import OperatorSettings
from .pod import (
    ANNOTATION_INPUT_HASH,
    CONFIG_DIR,
    CONFIG_FILE,
    KUEUE_QUEUE_LABEL,
    MAX_CONFIG_BYTES,
    BuildError,
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

CONTAINER = "main"
RENDEZVOUS_PORT = 29500
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def uses_gpu(request: JobRequest) -> bool:
    """GPUs only where the step's code uses them (the kind's `Step.gpu`, which may ask the spec)."""
    if request.resources.gpus_per_node <= 0:
        return False
    spec = KINDS[request.kind].spec_model.model_validate(request.config["spec"])
    return request.step.uses_gpu(spec)


def node_count(request: JobRequest) -> int:
    return request.resources.nodes if request.step.distributed else 1


def config_map_name(job_name: str) -> str:
    return f"{job_name}-config"


def rendezvous_service_name(job_name: str) -> str:
    """A Service name is a DNS-1035 label: it starts with a letter."""
    return job_name if re.match(r"^[a-z]", job_name) else f"j{job_name}"[:63].rstrip("-")


# torchrun behind a launcher that keeps the exit-code contract (torchrun makes every failure exit 1).
TORCHRUN = ("python", "-m", "osmf_jobs.launch")


def command(request: JobRequest, module: str) -> list[str]:
    entry = ["-m", module, "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    gpus = max(request.resources.gpus_per_node, 1) if uses_gpu(request) else 1
    nodes = node_count(request)
    if not request.step.distributed or (nodes == 1 and gpus == 1):
        return ["python", *entry]
    if nodes == 1:
        return [*TORCHRUN, "--standalone", "--nnodes=1", f"--nproc-per-node={gpus}", *entry]
    service = rendezvous_service_name(request.name)
    return [
        *TORCHRUN, f"--nnodes={nodes}", f"--nproc-per-node={gpus}",
        # Kubernetes expands $(VAR) from the container's env before the process starts.
        "--node-rank=$(JOB_COMPLETION_INDEX)",
        f"--master-addr={request.name}-0.{service}", f"--master-port={RENDEZVOUS_PORT}",
        *entry,
    ]


def pod_failure_policy() -> dict[str, Any]:
    return {"rules": [
        # Evictions, preemptions and node drains are not the job's fault: they do not count.
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        # The job said its input is invalid: retrying cannot help.
        {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [INVALID_INPUT_EXIT_CODE]}},
    ]}


def build_config_map(request: JobRequest, owner: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    text = json.dumps(request.config, indent=2, sort_keys=True)
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise BuildError(f"spec: the job config is {len(text.encode())} bytes, more than a ConfigMap holds (1 MiB); list fewer spec.products")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(config_map_name(request.name), owner, labels),
        "data": {CONFIG_FILE: text},
    }


def build_rendezvous_service(request: JobRequest, owner: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(rendezvous_service_name(request.name), owner, labels),
        "spec": {
            "clusterIP": "None",
            # Peers must resolve each other before any of them is Ready.
            "publishNotReadyAddresses": True,
            "selector": {"batch.kubernetes.io/job-name": request.name},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT, "protocol": "TCP"}],
        },
    }


def build_pod_spec(request: JobRequest, settings: OperatorSettings, namespace: str) -> dict[str, Any]:
    gpu = uses_gpu(request)
    field = "spec.resources.nodePool"
    env = runtime_env() + artifact_env(settings, namespace)
    if node_count(request) > 1:
        env.insert(0, {"name": "JOB_COMPLETION_INDEX", "valueFrom": {
            "fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}})
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(request.name)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if gpu:
        # NCCL and data loaders share tensors through /dev/shm; the container default is 64 MiB.
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.images.trainer,
        "imagePullPolicy": settings.images.pull_policy,
        "command": command(request, KINDS[request.kind].job_module),
        "env": env,
        "resources": container_resources(request.resources, gpu, settings, field),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        # A failed pod's last log lines (the job's one-line reason) become its termination message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if node_count(request) > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"}]
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Jobs talk to the artifact store, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": volumes,
        **placement(request.resources, gpu, settings, field),
    }
    spec.update(service_account(settings, namespace))
    if node_count(request) > 1:
        spec["subdomain"] = rendezvous_service_name(request.name)
    return spec


def build_job(request: JobRequest, owner: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    labels = owner_labels(owner, request.step.name, request.input_hash)
    job_labels = dict(labels)
    if settings.kueue.enabled:
        # Kueue's webhook suspends the Job and admits it when quota allows; `suspend` is Kueue's alone.
        job_labels[KUEUE_QUEUE_LABEL] = settings.kueue.default_queue
    policy = request.run_policy
    spec: dict[str, Any] = {
        "activeDeadlineSeconds": policy.active_deadline_seconds,
        "ttlSecondsAfterFinished": policy.ttl_seconds_after_finished,
        "podFailurePolicy": pod_failure_policy(),
        "template": {
            "metadata": {"labels": labels, "annotations": {ANNOTATION_INPUT_HASH: request.input_hash}},
            "spec": build_pod_spec(request, settings, owner["namespace"]),
        },
    }
    nodes = node_count(request)
    if request.step.sharded and request.shards > 1:
        spec.update(completionMode="Indexed", completions=request.shards, parallelism=request.shards,
                    backoffLimitPerIndex=policy.backoff_limit)
    elif nodes > 1:
        spec.update(completionMode="Indexed", completions=nodes, parallelism=nodes, backoffLimit=policy.backoff_limit)
    else:
        spec["backoffLimit"] = policy.backoff_limit
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(request.name, owner, job_labels, {ANNOTATION_INPUT_HASH: request.input_hash}),
        "spec": spec,
    }


def build_job_objects(request: JobRequest, owner: dict[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    """ConfigMap, (headless Service,) Job — in creation order: the Job's pods mount the ConfigMap."""
    labels = owner_labels(owner, request.step.name, request.input_hash)
    objects = [build_config_map(request, owner, labels)]
    if node_count(request) > 1:
        objects.append(build_rendezvous_service(request, owner, labels))
    objects.append(build_job(request, owner, settings))
    return objects
