"""Factories for the Kubernetes side of the world: Job, Pod, Workload and InferenceService states.

They write what the Job controller, the kubelet, Kueue and KServe would write, in their shapes and
words, so tests never hand-write these dicts.
"""

from __future__ import annotations

from typing import Any

T0 = "2026-06-01T12:00:00Z"


def condition(type_: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, Any]:
    out = {"type": type_, "status": status, "lastTransitionTime": T0}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


# ---- Job status (batch/v1, Kubernetes ≥ 1.31 condition order) -----------------------------------


def job_running(active: int = 1, ready: int | None = None, failed: int = 0, succeeded: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": T0, "active": active, "ready": active if ready is None else ready}
    if failed:
        status["failed"] = failed
    if succeeded:
        status["succeeded"] = succeeded
    return status


def job_succeeded(completions: int = 1) -> dict[str, Any]:
    return {
        "startTime": T0, "completionTime": T0, "succeeded": completions, "ready": 0,
        "conditions": [
            condition("SuccessCriteriaMet", reason="CompletionsReached", message="Reached expected number of succeeded pods"),
            condition("Complete", reason="CompletionsReached", message="Reached expected number of succeeded pods"),
        ],
    }


def job_failed(reason: str = "BackoffLimitExceeded", message: str = "Job has reached the specified backoff limit",
               failed: int = 4) -> dict[str, Any]:
    return {
        "startTime": T0, "failed": failed, "ready": 0,
        "conditions": [condition("FailureTarget", reason=reason, message=message), condition("Failed", reason=reason, message=message)],
    }


def job_invalid_input(pod: str = "p", container: str = "main") -> dict[str, Any]:
    return job_failed(
        "PodFailurePolicy",
        f"Container {container} for pod default/{pod} failed with exit code 65 matching FailJob rule at index 1",
        failed=1,
    )


def job_suspended() -> dict[str, Any]:
    return {"conditions": [condition("Suspended", reason="JobSuspended", message="Job suspended")]}


# ---- Pods ----------------------------------------------------------------------------------------


def pod(name: str, labels: dict[str, str], namespace: str = "default", phase: str = "Running",
        conditions: list[dict[str, Any]] | None = None, containers: list[dict[str, Any]] | None = None,
        init_containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or [condition("PodScheduled"), condition("Ready")]}
    if containers is not None:
        status["containerStatuses"] = containers
    if init_containers is not None:
        status["initContainerStatuses"] = init_containers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"containers": [{"name": "main", "image": "x"}]}, "status": status}


def job_pod_labels(job: str, index: int | None = None) -> dict[str, str]:
    labels = {"batch.kubernetes.io/job-name": job, "job-name": job}
    if index is not None:
        labels["batch.kubernetes.io/job-completion-index"] = str(index)
    return labels


def predictor_pod_labels(isvc: str) -> dict[str, str]:
    return {"serving.kserve.io/inferenceservice": isvc, "component": "predictor"}


def container_running(name: str = "main", restarts: int = 0) -> dict[str, Any]:
    return {"name": name, "ready": True, "restartCount": restarts, "state": {"running": {"startedAt": T0}}}


def unschedulable_pod(name: str, labels: dict[str, str],
                      message: str = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available") -> dict[str, Any]:
    return pod(name, labels, phase="Pending",
               conditions=[condition("PodScheduled", "False", "Unschedulable", message)], containers=[])


def failed_pod(name: str, labels: dict[str, str], exit_code: int = 1, log_tail: str = "Traceback …\nRuntimeError: boom",
               finished: str = T0, container: str = "main") -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": "Error", "message": log_tail, "finishedAt": finished}
    return pod(name, labels, phase="Failed",
               containers=[{"name": container, "ready": False, "restartCount": 0, "state": {"terminated": terminated}}])


def crash_looping_pod(name: str, labels: dict[str, str], exit_code: int = 1, log_tail: str = "ValueError: no campaign.json",
                      oom: bool = False, container: str = "kserve-container", restarts: int = 5) -> dict[str, Any]:
    last = {"exitCode": 137 if oom else exit_code, "reason": "OOMKilled" if oom else "Error", "finishedAt": T0}
    if not oom:
        last["message"] = log_tail
    status = {"name": container, "ready": False, "restartCount": restarts,
              "state": {"waiting": {"reason": "CrashLoopBackOff",
                                    "message": f"back-off 5m0s restarting failed container={container}"}},
              "lastState": {"terminated": last}}
    return pod(name, labels, conditions=[condition("PodScheduled"), condition("Ready", "False", "ContainersNotReady")],
               containers=[status])


def image_pull_pod(name: str, labels: dict[str, str], image: str = "osmf/predictor:0.1.0",
                   container: str = "kserve-container") -> dict[str, Any]:
    status = {"name": container, "ready": False, "restartCount": 0,
              "state": {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}}}
    return pod(name, labels, phase="Pending",
               conditions=[condition("PodScheduled"), condition("Ready", "False", "ContainersNotReady")], containers=[status])


# ---- Kueue Workload and KServe InferenceService -------------------------------------------------


def workload(job_uid: str, *conditions: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
            "metadata": {"name": f"job-{job_uid[:8]}", "namespace": namespace, "labels": {"kueue.x-k8s.io/job-uid": job_uid}},
            "spec": {"queueName": "osmf"}, "status": {"conditions": list(conditions)}}


def pending_quota(message: str = "couldn't assign flavors to pod set main: insufficient quota for nvidia.com/gpu in flavor h100") -> dict[str, Any]:
    return condition("QuotaReserved", "False", "Pending", message)


def isvc_status(ready: bool, url: str | None = None, reason: str = "", message: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [
        condition("PredictorReady", "True" if ready else "False", reason, message),
        condition("Ready", "True" if ready else "False", reason, message),
    ]}
    if url:
        status["url"] = url
        status["address"] = {"url": url}
    return status


# ---- the operator's own children, as the builders make them -------------------------------------


def built_job(kind: str = "AudienceGrouping", step: str | None = None, settings: Any = None, status: dict | None = None,
              **spec: Any) -> dict[str, Any]:
    """The Job the operator would create for `step` of a fresh resource (earlier steps succeeded), with `status`."""
    from osmf_operator.builders import build_job_objects, owner_of
    from osmf_operator.reconcile import Observed, ObservedJob, decide, plan_run
    from osmf_operator.settings import parse_settings
    from tests.factories import resource

    res = resource(kind, **spec)
    plan = plan_run(res, {}, "s3://bucket/osmf", data_fingerprint="sha256:data")
    step = step or res.info.steps[0].name
    done = [ObservedJob(name=s.name, step=s.name, input_hash=plan.input_hash, phase="Succeeded")
            for s in res.info.steps[: [s.name for s in res.info.steps].index(step)]]
    (request,) = decide(Observed(resource=res, plan=plan, jobs=done), T0).create_jobs
    objects = build_job_objects(request, owner_of(res), settings or parse_settings({}))
    job = next(o for o in objects if o["kind"] == "Job")
    job["metadata"]["uid"] = f"uid-{job['metadata']['name']}"
    if status is not None:
        job["status"] = status
    return job
