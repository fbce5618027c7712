"""Kubernetes objects → what the reconcile core observes. Pure translation: dicts in, dataclasses out.

- a Job (+ its pods, + its Kueue Workload) → ObservedJob;
- an InferenceService + its predictor pods → ObservedService (KServe can say Ready while the pods
  crash-loop, so the pods are read too).
"""

from __future__ import annotations

from typing import Any, Iterable

from .builders.pod import ANNOTATION_INPUT_HASH, KUEUE_QUEUE_LABEL, LABEL_INPUT_HASH, LABEL_STEP
from .reconcile import ObservedJob, ObservedService

# Waiting reasons of a container that mean "this will not start without a person".
STUCK_WAITING_REASONS = (
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
)
MESSAGE_LIMIT = 512


def conditions_of(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)}


def is_true(conditions: dict[str, dict[str, Any]], type_: str) -> bool:
    return conditions.get(type_, {}).get("status") == "True"


def short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---- pods ----------------------------------------------------------------------------------------


def unschedulable(pod: dict[str, Any]) -> str:
    """The scheduler's message when the pod cannot be placed, else ''."""
    scheduled = conditions_of(pod).get("PodScheduled", {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return short(scheduled.get("message") or "no node fits the pod")
    return ""


def container_statuses(pod: dict[str, Any]) -> Iterable[dict[str, Any]]:
    status = pod.get("status") or {}
    yield from status.get("initContainerStatuses") or []
    yield from status.get("containerStatuses") or []


def pod_failure(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when a long-running pod is broken: crash loop, OOM, image pull, unschedulable."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    name = (pod.get("metadata") or {}).get("name", "")
    message = unschedulable(pod)
    if message:
        return "Unschedulable", f"pod {name}: {message}"
    for cs in container_statuses(pod):
        state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        container = cs.get("name", "")
        restarts = cs.get("restartCount", 0)
        if terminated.get("reason") == "OOMKilled" or (waiting.get("reason") == "CrashLoopBackOff" and last.get("reason") == "OOMKilled"):
            return "OOMKilled", short(f"pod {name}: container {container} was killed for exceeding its memory limit "
                                      f"(restarts: {restarts}); raise spec.serving.resources.memory")
        if waiting.get("reason") == "CrashLoopBackOff":
            exit_code = last.get("exitCode")
            detail = last_line(last.get("message")) or last.get("reason") or ""
            return "CrashLoopBackOff", short(f"pod {name}: container {container} keeps crashing (restarts: {restarts}, "
                                             f"last exit code {exit_code}){': ' + detail if detail else ''}")
        if waiting.get("reason") in STUCK_WAITING_REASONS:
            return waiting["reason"], short(f"pod {name}: container {container}: {waiting.get('message') or waiting['reason']}")
    return None


def pending_reason(pods: Iterable[dict[str, Any]]) -> str:
    for pod in pods:
        message = unschedulable(pod)
        if message:
            return message
    return ""


def failure_detail(pods: Iterable[dict[str, Any]]) -> str:
    """The newest failed pod's exit: `pod x: exit code 65: osmf: invalid input: …`."""
    failed = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if terminated and terminated.get("exitCode", 0) != 0:
                failed.append((terminated.get("finishedAt") or "", pod, terminated))
    if not failed:
        return ""
    _, pod, terminated = max(failed, key=lambda item: item[0])
    detail = last_line(terminated.get("message")) or terminated.get("reason") or ""
    name = (pod.get("metadata") or {}).get("name", "")
    return short(f"pod {name}: exit code {terminated.get('exitCode')}{': ' + detail if detail else ''}")


# ---- Kueue ---------------------------------------------------------------------------------------


def workload_reason(workload: dict[str, Any] | None) -> tuple[str, str]:
    """Why Kueue has not admitted the Job, in the words of its Workload."""
    if workload is None:
        return "WaitingForQuota", "waiting for Kueue to create and admit the workload"
    conds = conditions_of(workload)
    evicted = conds.get("Evicted", {})
    if evicted.get("status") == "True":
        return "Evicted", short(f"{evicted.get('reason', '')}: {evicted.get('message', '')}".strip(": "))
    quota = conds.get("QuotaReserved", {})
    if quota.get("status") != "True":
        return "WaitingForQuota", short(quota.get("message") or "waiting for quota in the ClusterQueue")
    admitted = conds.get("Admitted", {})
    if admitted.get("status") != "True":
        return "WaitingForAdmission", short(admitted.get("message") or "quota reserved; waiting for admission checks")
    return "Admitted", "admitted; the job is starting"


# ---- Jobs ----------------------------------------------------------------------------------------


def job_is_finished(job: dict[str, Any]) -> bool:
    conds = conditions_of(job)
    return any(is_true(conds, t) for t in ("Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"))


def job_is_suspended(job: dict[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend")) or is_true(conditions_of(job), "Suspended")


def job_needs_pods(job: dict[str, Any]) -> bool:
    """Whether the Job's pods would add anything: why it does not start, or why a pod failed."""
    status, conds = job.get("status") or {}, conditions_of(job)
    if is_true(conds, "Failed") or is_true(conds, "FailureTarget"):
        return True
    if job_is_finished(job) or job_is_suspended(job):
        return False
    # Pending pods count as active; a pod that is not ready yet may be unschedulable.
    return bool(status.get("failed")) or (status.get("ready") or 0) < (status.get("active") or 0)


def observe_job(job: dict[str, Any], pods: list[dict[str, Any]] | None = None,
                workload: dict[str, Any] | None = None) -> ObservedJob | None:
    """None when the Job is not one of ours (no step label)."""
    meta = job.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    step = labels.get(LABEL_STEP)
    if not step:
        return None
    input_hash = annotations.get(ANNOTATION_INPUT_HASH) or labels.get(LABEL_INPUT_HASH, "")
    status = job.get("status") or {}
    conds = conditions_of(job)
    base = dict(name=meta.get("name", ""), step=step, input_hash=input_hash,
                failed_pods=int(status.get("failed") or 0), active_pods=int(status.get("active") or 0))
    detail = failure_detail(pods or [])
    if is_true(conds, "Complete") or is_true(conds, "SuccessCriteriaMet"):
        return ObservedJob(**base, phase="Succeeded")
    for type_ in ("Failed", "FailureTarget"):
        if is_true(conds, type_):
            cond = conds[type_]
            message = short(f"{cond.get('message') or cond.get('reason', '')}{'; ' + detail if detail else ''}")
            return ObservedJob(**base, phase="Failed", reason=cond.get("reason") or "Failed", message=message)
    if job_is_suspended(job):
        if KUEUE_QUEUE_LABEL in labels:
            reason, message = workload_reason(workload)
        else:
            reason, message = "Suspended", "the Job is suspended"
        return ObservedJob(**base, phase="Queued", reason=reason, message=message)
    waiting = pending_reason(pods or [])
    if waiting:
        return ObservedJob(**base, phase="Pending", pending_reason=waiting, message=detail)
    return ObservedJob(**base, phase="Running" if base["active_pods"] else "Pending", message=detail)


# ---- InferenceService ----------------------------------------------------------------------------


def observe_service(isvc: dict[str, Any] | None, pods: list[dict[str, Any]]) -> ObservedService | None:
    """None when the InferenceService does not exist yet (the core then asks for it)."""
    if isvc is None:
        return None
    status = isvc.get("status") or {}
    ready = conditions_of(isvc).get("Ready", {})
    is_ready = ready.get("status") == "True"
    reason, message = "", ""
    if not is_ready:
        reason = ready.get("reason") or "InferenceServiceNotReady"
        message = short(ready.get("message") or f"InferenceService {isvc['metadata']['name']} is not ready yet")
    failure = next(filter(None, (pod_failure(p) for p in sorted(pods, key=lambda p: p["metadata"].get("name", "")))), None)
    return ObservedService(
        name=isvc["metadata"]["name"],
        ready=is_ready,
        url=status.get("url") or None,
        reason=reason,
        message=message,
        pod_failure_reason=failure[0] if failure else "",
        pod_failure_message=failure[1] if failure else "",
    )
