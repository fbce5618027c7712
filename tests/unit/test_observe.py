"""Kubernetes objects → observations: Job phases, pending and failure reasons, Kueue, KServe and its pods."""

from __future__ import annotations

import pytest

from osmf_operator.observe import job_needs_pods, observe_job, observe_service, pod_failure, workload_reason
from osmf_operator.settings import parse_settings
from tests.operator.kubeobjects import (
    built_job,
    condition,
    crash_looping_pod,
    failed_pod,
    image_pull_pod,
    isvc_status,
    job_failed,
    job_invalid_input,
    job_pod_labels,
    job_running,
    job_succeeded,
    job_suspended,
    pending_quota,
    pod,
    container_running,
    predictor_pod_labels,
    unschedulable_pod,
    workload,
)

KUEUE = parse_settings({"kueue": {"enabled": True}})


def test_identity_comes_from_labels_and_the_full_hash_from_the_annotation():
    job = built_job(step="cluster", status=job_running())
    observed = observe_job(job)
    assert observed.step == "cluster"
    assert observed.input_hash == job["metadata"]["annotations"]["osmf.dev/input-hash"] and len(observed.input_hash) == 64
    assert observed.name == job["metadata"]["name"]
    foreign = {"metadata": {"name": "someone-elses", "labels": {"app": "x"}}, "status": job_running()}
    assert observe_job(foreign) is None


@pytest.mark.parametrize("status, phase, reason", [
    ({}, "Pending", ""),
    (job_running(active=1), "Running", ""),
    (job_running(active=2, failed=1), "Running", ""),
    (job_succeeded(), "Succeeded", ""),
    ({"conditions": [condition("SuccessCriteriaMet", reason="CompletionsReached")]}, "Succeeded", ""),
    (job_failed(), "Failed", "BackoffLimitExceeded"),
    (job_failed("DeadlineExceeded", "Job was active longer than specified deadline"), "Failed", "DeadlineExceeded"),
    ({"conditions": [condition("FailureTarget", reason="PodFailurePolicy", message="exit code 65")]}, "Failed", "PodFailurePolicy"),
    (job_invalid_input(), "Failed", "PodFailurePolicy"),
    (job_suspended(), "Queued", "Suspended"),
])
def test_job_phase_follows_the_job_controllers_conditions(status, phase, reason):
    observed = observe_job(built_job(status=status))
    assert (observed.phase, observed.reason) == (phase, reason)


def test_counts_of_pods_are_carried():
    observed = observe_job(built_job(status=job_running(active=3, failed=2)))
    assert (observed.active_pods, observed.failed_pods) == (3, 2)


def test_an_unschedulable_pod_makes_the_job_pending_with_the_schedulers_words():
    job = built_job(status=job_running(active=1, ready=0))
    assert job_needs_pods(job)
    pods = [unschedulable_pod("p-0", job_pod_labels(job["metadata"]["name"]))]
    observed = observe_job(job, pods)
    assert observed.phase == "Pending"
    assert observed.pending_reason.startswith("0/3 nodes are available: 3 Insufficient nvidia.com/gpu")


def test_a_failed_job_carries_its_pods_last_words():
    job = built_job(status=job_invalid_input("grouping-train-0"))
    labels = job_pod_labels(job["metadata"]["name"])
    pods = [
        failed_pod("old", labels, exit_code=1, log_tail="RuntimeError: flaky", finished="2026-06-01T11:00:00Z"),
        failed_pod("new", labels, exit_code=65, log_tail="loading …\nosmf: invalid input: table 'users': column 'age' missing",
                   finished="2026-06-01T11:30:00Z"),
    ]
    observed = observe_job(job, pods)
    assert observed.phase == "Failed" and observed.reason == "PodFailurePolicy"
    assert "matching FailJob rule" in observed.message
    assert observed.message.endswith("pod new: exit code 65: osmf: invalid input: table 'users': column 'age' missing")


def test_a_retrying_job_says_why_the_last_pod_failed():
    job = built_job(status=job_running(active=1, failed=1))
    assert job_needs_pods(job)
    observed = observe_job(job, [failed_pod("a", job_pod_labels("j"), exit_code=137, log_tail="")])
    assert observed.phase == "Running" and observed.failed_pods == 1
    assert observed.message == "pod a: exit code 137: Error"


@pytest.mark.parametrize("status, needs", [
    (job_running(active=2, ready=2), False),
    (job_running(active=2, ready=1), True),
    (job_succeeded(), False),
    (job_failed(), True),
    (job_suspended(), False),
    ({}, False),
])
def test_pods_are_listed_only_when_they_can_explain_something(status, needs):
    assert job_needs_pods(built_job(status=status)) is needs


def test_a_kueue_suspended_job_is_queued_with_the_workloads_reason():
    job = built_job(settings=KUEUE, status=job_suspended())
    job["spec"]["suspend"] = True  # what Kueue's webhook does
    observed = observe_job(job, workload=workload("uid", pending_quota()))
    assert observed.phase == "Queued" and observed.reason == "WaitingForQuota"
    assert "insufficient quota for nvidia.com/gpu" in observed.message
    assert observe_job(job).reason == "WaitingForQuota"  # no Workload yet


@pytest.mark.parametrize("conditions, reason", [
    ([], "WaitingForQuota"),
    ([pending_quota()], "WaitingForQuota"),
    ([condition("QuotaReserved"), condition("Admitted", "False", "", "waiting for ProvisioningRequest")], "WaitingForAdmission"),
    ([condition("QuotaReserved", "False", "Pending"), condition("Evicted", reason="Preempted", message="preempted by a higher priority workload")], "Evicted"),
])
def test_workload_reasons(conditions, reason):
    got, message = workload_reason(workload("uid", *conditions))
    assert got == reason and message


def test_inference_service_ready_and_url():
    isvc = {"metadata": {"name": "spring"}, "status": isvc_status(True, "http://spring.default.example.com")}
    observed = observe_service(isvc, [pod("spring-predictor-1", predictor_pod_labels("spring"), containers=[container_running("kserve-container")])])
    assert observed.ready and observed.url == "http://spring.default.example.com"
    assert not observed.pod_failure_reason
    pending = observe_service({"metadata": {"name": "spring"}, "status": isvc_status(False, reason="PredictorNotReady", message="0 of 1 replicas")}, [])
    assert not pending.ready and pending.reason == "PredictorNotReady" and pending.message == "0 of 1 replicas"
    assert observe_service({"metadata": {"name": "spring"}}, []).reason == "InferenceServiceNotReady"
    assert observe_service(None, []) is None


@pytest.mark.parametrize("make, reason, fragment", [
    (lambda l: crash_looping_pod("p", l, exit_code=2, log_tail="…\nValueError: no campaign.json"), "CrashLoopBackOff",
     "keeps crashing (restarts: 5, last exit code 2): ValueError: no campaign.json"),
    (lambda l: crash_looping_pod("p", l, oom=True), "OOMKilled", "exceeding its memory limit"),
    (lambda l: image_pull_pod("p", l), "ImagePullBackOff", 'Back-off pulling image "osmf/predictor:0.1.0"'),
    (lambda l: unschedulable_pod("p", l, "0/4 nodes are available: 4 Insufficient memory."), "Unschedulable", "4 Insufficient memory"),
])
def test_broken_predictor_pods_are_surfaced_even_when_kserve_says_ready(make, reason, fragment):
    labels = predictor_pod_labels("spring")
    isvc = {"metadata": {"name": "spring"}, "status": isvc_status(True, "http://spring")}
    observed = observe_service(isvc, [pod("spring-ok", labels, containers=[container_running("kserve-container")]), make(labels)])
    assert observed.ready  # KServe's view is mirrored as is …
    assert observed.pod_failure_reason == reason  # … and the pods tell the truth
    assert fragment in observed.pod_failure_message and "pod p" in observed.pod_failure_message


def test_failing_init_containers_count_and_terminating_pods_do_not():
    init = {"name": "storage-initializer", "ready": False, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "botocore: AccessDenied"}}}
    broken = pod("p", predictor_pod_labels("s"), phase="Pending", containers=[], init_containers=[init])
    assert pod_failure(broken) == ("CrashLoopBackOff", "pod p: container storage-initializer keeps crashing (restarts: 3, last exit code 1): botocore: AccessDenied")
    broken["metadata"]["deletionTimestamp"] = "2026-06-01T12:00:00Z"
    assert pod_failure(broken) is None
