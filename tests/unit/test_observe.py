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


# ---- Job pods that cannot start or keep failing (issue 14.4) ------------------------------------

from osmf_operator.observe import JOB_HINTS, observe_jobset  # noqa: E402


def waiting_pod(name: str, labels: dict, reason: str, message: str, started: str = "2026-06-01T11:50:00Z",
                image: str = "registry.example/osmf/trainer:0.1.0") -> dict:
    status = {"name": "main", "ready": False, "restartCount": 0, "image": image,
              "state": {"waiting": {"reason": reason, "message": message}}}
    out = pod(name, labels, phase="Pending", conditions=[condition("PodScheduled"), condition("Ready", "False", "ContainersNotReady")],
              containers=[status])
    out["status"]["startTime"] = started
    out["metadata"]["namespace"] = "team-a"
    return out


def oom_pod(name: str, labels: dict, memory: str = "100Mi", finished: str = "2026-06-01T11:55:00Z") -> dict:
    out = pod(name, labels, phase="Failed", containers=[{
        "name": "main", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": finished}}}])
    out["spec"]["containers"][0]["resources"] = {"limits": {"memory": memory}}
    return out


@pytest.mark.parametrize("reason, kubelet, expect", [
    ("ErrImagePull", 'failed to pull and unpack image "registry.example/osmf/trainer:0.1.0": not found',
     "check the image name in the operator setting images.trainer and that the nodes can pull it (registry, pull secret)"),
    ("ImagePullBackOff", 'Back-off pulling image "registry.example/osmf/trainer:0.1.0"', "that the nodes can pull it (registry, pull secret)"),
    ("InvalidImageName", 'Failed to apply default image tag "registry.example/OSMF/trainer": invalid reference format',
     "fix the image reference in the operator setting images.trainer"),
    ("CreateContainerConfigError", 'secret "osmf-s3" not found', "create Secret osmf-s3 in namespace team-a"),
    ("CreateContainerConfigError", 'configmap "trainer-extra" not found', "create ConfigMap trainer-extra in namespace team-a"),
    ("CreateContainerConfigError", "couldn't find key AWS_SECRET_ACCESS_KEY in Secret team-a/osmf-s3",
     "create the Secret or ConfigMap (and key) the pod refers to in namespace team-a"),
])
def test_a_job_pod_that_cannot_start_is_a_stuck_problem_naming_pod_container_and_fix(reason, kubelet, expect):
    job = built_job(status=job_running(active=1, ready=0))
    assert job_needs_pods(job)
    observed = observe_job(job, [waiting_pod("grouping-train-x-abcde", job_pod_labels(job["metadata"]["name"]), reason, kubelet)])
    assert observed.phase == "Running" and observed.problem is not None
    problem = observed.problem
    assert (problem.reason, problem.stuck, problem.since) == (reason, True, "2026-06-01T11:50:00Z")
    assert problem.message.startswith(f"pod grouping-train-x-abcde: container main: {kubelet}")
    assert problem.message.endswith(expect)


def test_an_oom_killed_attempt_is_a_retryable_problem_until_a_newer_pod_runs():
    job = built_job(status=job_running(active=1, ready=0, failed=1))
    labels = job_pod_labels(job["metadata"]["name"])
    observed = observe_job(job, [oom_pod("a", labels)])
    assert observed.problem.reason == "OOMKilled" and not observed.problem.stuck
    assert observed.problem.message == ("pod a: container main was OOMKilled for exceeding its memory limit 100Mi; "
                                        "raise spec.resources.memory")
    running_again = built_job(status=job_running(active=1, ready=1, failed=1))
    assert observe_job(running_again, [oom_pod("a", labels)]).problem is None  # the retry is under way


def test_a_job_whose_retries_were_oom_kills_fails_with_that_reason():
    job = built_job(status=job_failed(failed=2))
    labels = job_pod_labels(job["metadata"]["name"])
    observed = observe_job(job, [oom_pod("a", labels, finished="2026-06-01T11:00:00Z"), oom_pod("b", labels)])
    assert observed.phase == "Failed" and observed.reason == "OOMKilled"
    assert observed.message.startswith("Job has reached the specified backoff limit; pod b: container main was OOMKilled")
    deadline = observe_job(built_job(status=job_failed("DeadlineExceeded", "too long")), [oom_pod("b", labels)])
    assert deadline.reason == "DeadlineExceeded"


def test_a_deleted_pod_is_not_stuck():
    job = built_job(status=job_running(active=1, ready=0))
    stuck = waiting_pod("p", job_pod_labels(job["metadata"]["name"]), "ImagePullBackOff", "Back-off")
    stuck["metadata"]["deletionTimestamp"] = "2026-06-01T12:00:00Z"
    assert observe_job(job, [stuck]).problem is None


def test_predictor_and_job_pods_name_their_own_fields():
    labels = job_pod_labels("j")
    assert "raise spec.serving.resources.memory" in pod_failure(oom_pod("a", labels))[1]
    assert "raise spec.resources.memory" in observe_job(built_job(status=job_running(active=0, failed=1)), [oom_pod("a", labels)]).problem.message
    assert JOB_HINTS.image == "images.trainer"


def test_an_unreadable_workload_of_a_suspended_job_is_a_problem_not_no_workload():
    job = built_job(settings=KUEUE, status=job_suspended())
    job["spec"]["suspend"] = True
    observed = observe_job(job, workload_error="kueue.x-k8s.io/v1beta2 Workloads answer 404")
    assert observed.phase == "Queued" and observed.reason == "WorkloadUnavailable"
    assert observed.problem.reason == "WorkloadUnavailable" and observed.problem.since is None


# ---- JobSets (multi-node gangs) -----------------------------------------------------------------


def built_jobset(status: dict, labels: dict | None = None) -> dict:
    from osmf_operator.builders import build_job_objects, owner_of
    from osmf_operator.reconcile import Observed, decide, plan_run
    from tests.factories import resource, succeeded

    res = resource("GMLLMTraining", resources={"gpusPerNode": 8, "nodes": 2})
    dataset = succeeded(resource("GAIPDataset"))
    plan = plan_run(res, {"dataset": dataset}, "s3://bucket/osmf")
    (request,) = decide(Observed(resource=res, plan=plan, jobset_api=True), "2026-06-01T12:00:00Z").create_jobs
    jobset = next(o for o in build_job_objects(request, owner_of(res), KUEUE) if o["kind"] == "JobSet")
    jobset["metadata"]["uid"] = "uid-js"
    jobset["metadata"]["labels"].update(labels or {})
    jobset["status"] = status
    return jobset


def gang_status(*conditions: dict, active: int = 2, ready: int = 2, failed: int = 0, restarts: int = 0) -> dict:
    return {"restarts": restarts, "conditions": list(conditions),
            "replicatedJobsStatus": [{"name": "node", "active": active, "ready": ready, "failed": failed, "succeeded": 0, "suspended": 0}]}


@pytest.mark.parametrize("status, phase, reason", [
    (gang_status(), "Running", ""),
    (gang_status(condition("Completed", reason="AllJobsCompleted"), active=0, ready=0), "Succeeded", ""),
    (gang_status(condition("Failed", reason="ReachedMaxRestarts", message="jobset failed due to reaching max number of restarts"),
                 active=0, ready=0, restarts=3), "Failed", "ReachedMaxRestarts"),
    (gang_status(condition("Failed", reason="FailJobSetFailurePolicyAction", message="applying FailJobSet failure policy action"),
                 active=0, ready=0), "Failed", "InvalidInput"),
    (gang_status(condition("Suspended", reason="SuspendedJobs"), active=0, ready=0), "Queued", "WaitingForQuota"),
])
def test_a_jobset_is_observed_in_the_words_of_a_job(status, phase, reason):
    observed = observe_jobset(built_jobset(status))
    assert (observed.kind, observed.phase, observed.reason) == ("JobSet", phase, reason)
    assert observed.step == "train" and len(observed.input_hash) == 64


def test_a_restarted_gang_reports_the_failed_worker_until_the_new_gang_is_ready():
    labels = job_pod_labels("x")
    killed = failed_pod("gang-node-1-0-abcde", labels, exit_code=137, log_tail="")
    restarting = observe_jobset(built_jobset(gang_status(active=2, ready=0, restarts=1)), [killed])
    assert restarting.restarts == 1 and restarting.problem.message == "pod gang-node-1-0-abcde: exit code 137: Error"
    assert observe_jobset(built_jobset(gang_status(restarts=1)), [killed]).problem is None
    assert job_needs_pods(built_jobset(gang_status(active=2, ready=1)))
    assert not job_needs_pods(built_jobset(gang_status()))
