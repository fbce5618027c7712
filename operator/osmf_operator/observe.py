"""Kubernetes objects → what the reconcile core observes. Pure translation: dicts in, dataclasses out.

- a Job or a JobSet (+ its pods, + its Kueue Workload) → ObservedJob;
- an InferenceService + its predictor pods → ObservedService (KServe can say Ready while the pods
  crash-loop, so the pods are read too).

What the kubelet reports about a container becomes a Problem naming the pod, the container and
the fix: a waiting state that will not clear without a person (image pull, a missing Secret or
ConfigMap) is `stuck` (the core stalls the resource after a grace period); a terminated attempt
(OOMKilled, an error exit) is a failure the Job retries within its backoffLimit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from .builders.pod import ANNOTATION_INPUT_HASH, KUEUE_QUEUE_LABEL, LABEL_INPUT_HASH, LABEL_STEP
from .reconcile import ObservedJob, ObservedService, Problem

# Waiting reasons of a container that mean "this will not start without a person".
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")
STUCK_WAITING_REASONS = (
    "CrashLoopBackOff", *IMAGE_PULL_REASONS, "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
)
# The kubelet's words for a reference it cannot resolve: `secret "osmf-s3" not found`.
_MISSING_REFERENCE = re.compile(r'\b(secret|configmap)s? "([^"]+)" not found', re.IGNORECASE)
MESSAGE_LIMIT = 512


@dataclass(frozen=True)
class Hints:
    """Where a person fixes what a pod's state says: the spec field of its memory and the setting of its image."""

    memory: str
    image: str


JOB_HINTS = Hints(memory="spec.resources.memory", image="images.trainer")
PREDICTOR_HINTS = Hints(memory="spec.serving.resources.memory", image="images.predictor")


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


def pod_name(pod: dict[str, Any]) -> str:
    return (pod.get("metadata") or {}).get("name", "")


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


def container_spec(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if container.get("name") == name:
            return container
    return {}


def memory_limit(pod: dict[str, Any], container: str) -> str:
    limit = ((container_spec(pod, container).get("resources") or {}).get("limits") or {}).get("memory")
    return f"memory limit {limit}" if limit else "memory limit"


def oom_message(pod: dict[str, Any], container: str, hints: Hints, restarts: int | None = None) -> str:
    again = f", restarts: {restarts}" if restarts is not None else ""
    return short(f"pod {pod_name(pod)}: container {container} was OOMKilled for exceeding its "
                 f"{memory_limit(pod, container)}{again}; raise {hints.memory}")


def waiting_fix(pod: dict[str, Any], reason: str, message: str, hints: Hints) -> str:
    """What a person does about a container that cannot start."""
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    if reason in IMAGE_PULL_REASONS:
        return f"check the image name in the operator setting {hints.image} and that the nodes can pull it (registry, pull secret)"
    if reason == "InvalidImageName":
        return f"fix the image reference in the operator setting {hints.image}"
    missing = _MISSING_REFERENCE.search(message)
    if reason == "CreateContainerConfigError" and missing:
        kind = "Secret" if missing.group(1).lower() == "secret" else "ConfigMap"
        return f"create {kind} {missing.group(2)} in namespace {namespace}"
    if reason == "CreateContainerConfigError":
        return f"create the Secret or ConfigMap (and key) the pod refers to in namespace {namespace}"
    return "see `kubectl describe pod` for the container runtime's error"


def container_problem(pod: dict[str, Any], cs: dict[str, Any], hints: Hints) -> Problem | None:
    """What one container's status says is wrong, if anything."""
    state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
    waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
    container, restarts, name = cs.get("name", ""), cs.get("restartCount", 0), pod_name(pod)
    if terminated.get("reason") == "OOMKilled":
        return Problem("OOMKilled", oom_message(pod, container, hints), stuck=False)
    reason = waiting.get("reason")
    if reason == "CrashLoopBackOff" and last.get("reason") == "OOMKilled":
        return Problem("OOMKilled", oom_message(pod, container, hints, restarts))
    if reason == "CrashLoopBackOff":
        exit_code = last.get("exitCode")
        detail = last_line(last.get("message")) or last.get("reason") or ""
        return Problem("CrashLoopBackOff", short(f"pod {name}: container {container} keeps crashing (restarts: {restarts}, "
                                                 f"last exit code {exit_code}){': ' + detail if detail else ''}"))
    if reason in STUCK_WAITING_REASONS:
        said = waiting.get("message") or reason
        return Problem(reason, short(f"pod {name}: container {container}: {said}; {waiting_fix(pod, reason, said, hints)}"))
    return None


def stuck_since(pod: dict[str, Any]) -> str | None:
    """When the kubelet first took the pod (a stuck container has been stuck since then)."""
    return (pod.get("status") or {}).get("startTime") or (pod.get("metadata") or {}).get("creationTimestamp")


def pod_problem(pod: dict[str, Any], hints: Hints) -> Problem | None:
    """The first thing wrong with a pod's containers that it will not get over by itself."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    for cs in container_statuses(pod):
        problem = container_problem(pod, cs, hints)
        if problem is not None and problem.stuck:
            return Problem(problem.reason, problem.message, since=stuck_since(pod))
    return None


def pod_failure(pod: dict[str, Any], hints: Hints = PREDICTOR_HINTS) -> tuple[str, str] | None:
    """(reason, message) when a long-running pod is broken: crash loop, OOM, image pull, unschedulable."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    message = unschedulable(pod)
    if message:
        return "Unschedulable", f"pod {pod_name(pod)}: {message}"
    for cs in container_statuses(pod):
        problem = container_problem(pod, cs, hints)
        if problem is not None:
            return problem.reason, problem.message
    return None


def pending_reason(pods: Iterable[dict[str, Any]]) -> str:
    for pod in pods:
        message = unschedulable(pod)
        if message:
            return message
    return ""


def failed_attempt(pods: Iterable[dict[str, Any]], hints: Hints = JOB_HINTS) -> Problem | None:
    """The newest failed pod's exit as a retryable Problem: `pod x: exit code 65: osmf: invalid input: …`,
    or an OOM kill naming the memory limit and the field to raise."""
    failed = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if terminated and terminated.get("exitCode", 0) != 0:
                failed.append((terminated.get("finishedAt") or "", pod_name(pod), pod, cs, terminated))
    if not failed:
        return None
    _, name, pod, cs, terminated = max(failed, key=lambda item: item[:2])
    if terminated.get("reason") == "OOMKilled":
        return Problem("OOMKilled", oom_message(pod, cs.get("name", ""), hints), stuck=False)
    detail = last_line(terminated.get("message")) or terminated.get("reason") or ""
    return Problem("PodFailed", short(f"pod {name}: exit code {terminated.get('exitCode')}{': ' + detail if detail else ''}"),
                   stuck=False)


def failure_detail(pods: Iterable[dict[str, Any]]) -> str:
    """The newest failed pod's exit, in one line ('' when no pod failed)."""
    attempt = failed_attempt(pods)
    return attempt.message if attempt else ""


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


# ---- Jobs and JobSets ----------------------------------------------------------------------------


def job_is_finished(job: dict[str, Any]) -> bool:
    conds = conditions_of(job)
    return any(is_true(conds, t) for t in ("Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"))


def job_is_suspended(job: dict[str, Any]) -> bool:
    return bool((job.get("spec") or {}).get("suspend")) or is_true(conditions_of(job), "Suspended")


def gang_counts(jobset: dict[str, Any]) -> dict[str, int]:
    """A JobSet's pods summed over its replicated Jobs, in a Job's status words."""
    out = {"active": 0, "ready": 0, "failed": 0}
    for rjob in (jobset.get("status") or {}).get("replicatedJobsStatus") or []:
        for key in out:
            out[key] += int(rjob.get(key) or 0)
    return out


def counts_of(child: dict[str, Any]) -> dict[str, int]:
    if child.get("kind") == "JobSet":
        return gang_counts(child)
    status = child.get("status") or {}
    return {key: int(status.get(key) or 0) for key in ("active", "ready", "failed")}


def job_needs_pods(job: dict[str, Any]) -> bool:
    """Whether a Job's (or JobSet's) pods would add anything: why it does not start, or why a pod failed."""
    conds = conditions_of(job)
    if is_true(conds, "Failed") or is_true(conds, "FailureTarget"):
        return True
    if job_is_finished(job) or is_true(conds, "Completed") or job_is_suspended(job):
        return False
    counts = counts_of(job)
    # Pending pods count as active; a pod that is not ready yet may be unschedulable or stuck.
    return bool(counts["failed"]) or counts["ready"] < counts["active"] or bool((job.get("status") or {}).get("restarts"))


def running_problem(pods: list[dict[str, Any]], counts: dict[str, int], hints: Hints = JOB_HINTS) -> Problem | None:
    """A stuck pod, else — while no newer pod runs — the last failed attempt."""
    for pod in sorted(pods, key=pod_name):
        problem = pod_problem(pod, hints)
        if problem is not None:
            return problem
    if counts["failed"] and not (counts["active"] and counts["ready"] >= counts["active"]):
        return failed_attempt(pods, hints)
    return None


def queued(labels: dict[str, str], workload: dict[str, Any] | None, workload_error: str | None) -> tuple[str, str, Problem | None]:
    if KUEUE_QUEUE_LABEL not in labels:
        return "Suspended", "suspended by someone other than Kueue", None
    if workload_error:
        return "WorkloadUnavailable", workload_error, Problem("WorkloadUnavailable", short(workload_error))
    reason, message = workload_reason(workload)
    return reason, message, None


def failure_reason(reason: str, attempt: Problem | None) -> str:
    """Retries spent on OOM kills say so: the reason a person acts on is the memory limit."""
    if reason in ("BackoffLimitExceeded", "ReachedMaxRestarts") and attempt is not None and attempt.reason == "OOMKilled":
        return "OOMKilled"
    return reason


def identity(obj: dict[str, Any]) -> tuple[str, str, str] | None:
    meta = obj.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    step = labels.get(LABEL_STEP)
    if not step:
        return None
    return meta.get("name", ""), step, annotations.get(ANNOTATION_INPUT_HASH) or labels.get(LABEL_INPUT_HASH, "")


def observe_job(job: dict[str, Any], pods: list[dict[str, Any]] | None = None,
                workload: dict[str, Any] | None = None, workload_error: str | None = None) -> ObservedJob | None:
    """None when the Job is not one of ours (no step label)."""
    found = identity(job)
    if found is None:
        return None
    name, step, input_hash = found
    pods = pods or []
    counts = counts_of(job)
    conds = conditions_of(job)
    base = dict(name=name, step=step, input_hash=input_hash, failed_pods=counts["failed"], active_pods=counts["active"])
    attempt = failed_attempt(pods)
    detail = attempt.message if attempt else ""
    if is_true(conds, "Complete") or is_true(conds, "SuccessCriteriaMet"):
        return ObservedJob(**base, phase="Succeeded")
    for type_ in ("Failed", "FailureTarget"):
        if is_true(conds, type_):
            cond = conds[type_]
            message = short(f"{cond.get('message') or cond.get('reason', '')}{'; ' + detail if detail else ''}")
            return ObservedJob(**base, phase="Failed", reason=failure_reason(cond.get("reason") or "Failed", attempt),
                               message=message, problem=attempt)
    if job_is_suspended(job):
        reason, message, problem = queued((job.get("metadata") or {}).get("labels") or {}, workload, workload_error)
        return ObservedJob(**base, phase="Queued", reason=reason, message=message, problem=problem)
    problem = running_problem(pods, counts)
    waiting = pending_reason(pods)
    if waiting:
        return ObservedJob(**base, phase="Pending", pending_reason=waiting, message=detail, problem=problem)
    return ObservedJob(**base, phase="Running" if counts["active"] else "Pending", message=detail, problem=problem)


# The FailJobSet rule of the operator's JobSets is the invalid-input exit (builders/jobs.py).
JOBSET_INVALID_INPUT_REASON = "FailJobSetFailurePolicyAction"


def observe_jobset(jobset: dict[str, Any], pods: list[dict[str, Any]] | None = None,
                   workload: dict[str, Any] | None = None, workload_error: str | None = None) -> ObservedJob | None:
    """A multi-node gang run as a JobSet (kubernetes-sigs/jobset), in the words of a Job. None when not ours."""
    found = identity(jobset)
    if found is None:
        return None
    name, step, input_hash = found
    pods = pods or []
    counts = gang_counts(jobset)
    conds = conditions_of(jobset)
    base = dict(name=name, step=step, input_hash=input_hash, failed_pods=counts["failed"], active_pods=counts["active"],
                kind="JobSet", restarts=int((jobset.get("status") or {}).get("restarts") or 0))
    attempt = failed_attempt(pods)
    detail = attempt.message if attempt else ""
    if is_true(conds, "Completed"):
        return ObservedJob(**base, phase="Succeeded")
    if is_true(conds, "Failed"):
        cond = conds["Failed"]
        reason = cond.get("reason") or "Failed"
        reason = "InvalidInput" if reason == JOBSET_INVALID_INPUT_REASON else failure_reason(reason, attempt)
        message = short(f"{cond.get('message') or reason}{'; ' + detail if detail else ''}")
        return ObservedJob(**base, phase="Failed", reason=reason, message=message, problem=attempt)
    if job_is_suspended(jobset):
        reason, message, problem = queued((jobset.get("metadata") or {}).get("labels") or {}, workload, workload_error)
        return ObservedJob(**base, phase="Queued", reason=reason, message=message, problem=problem)
    # Pods of earlier gang attempts linger while the JobSet recreates its Jobs: the newest attempt speaks.
    problem = running_problem(pods, counts)
    if problem is None and base["restarts"] and not (counts["active"] and counts["ready"] >= counts["active"]):
        problem = attempt
    waiting = pending_reason(pods)
    if waiting:
        return ObservedJob(**base, phase="Pending", pending_reason=waiting, message=detail, problem=problem)
    return ObservedJob(**base, phase="Running" if counts["active"] else "Pending", message=detail, problem=problem)


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
