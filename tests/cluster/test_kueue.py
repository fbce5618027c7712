"""Kueue for real (issue 14.6): the real Kueue v0.17 controller admits the operator's Jobs.

The tier's operator settings queue namespace `queued` on LocalQueue `gpu` and give AudienceGroupings
the WorkloadPriorityClass `osmf-batch` (tests/cluster/values-test.yaml). Here a ClusterQueue holds
8 nvidia.com/gpu; an 8-GPU AudienceGrouping is suspended by Kueue's webhook and admitted; a 1-GPU one
(the ninth GPU) waits, its resource Queued=True with Kueue's own reason, and runs once the first
Job finishes. The pods of both are placed but not run (the test ends the first as its kubelet
would), so the quota alone decides. The operator never writes a Job after creating it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cluster.chartinstall import OPERATOR_NAMESPACE, s3_secret
from tests.cluster.controllers import KUEUE_NAMESPACE_LABEL
from tests.cluster.controlplane import wait_for
from tests.cluster.pipeline import condition, is_true, upload_tiny_world
from tests.cluster.test_reliability import grouping

pytestmark = pytest.mark.cluster

NAMESPACE = "queued"  # values-test.yaml: settings.kueue.localQueues
LOCAL_QUEUE = "gpu"
PRIORITY_CLASS, PRIORITY = "osmf-batch", 100  # values-test.yaml: settings.kueue.priorityClasses
KUEUE_API = "kueue.x-k8s.io/v1beta2"


def kueue_queue(name: str, namespace: str, gpus: int) -> list[dict[str, Any]]:
    """A ResourceFlavor, a ClusterQueue with `gpus` nvidia.com/gpu (and room for any CPU and memory), its LocalQueue.

    StrictFIFO: a waiting workload keeps its place, so a finished stage's next step cannot take the
    quota that the older, waiting Job was promised."""
    return [
        {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}},
        {"apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": {"name": name}, "spec": {
            "namespaceSelector": {}, "queueingStrategy": "StrictFIFO",
            "resourceGroups": [{"coveredResources": ["cpu", "memory", "nvidia.com/gpu"], "flavors": [{
                "name": "default-flavor", "resources": [
                    {"name": "cpu", "nominalQuota": "1000"}, {"name": "memory", "nominalQuota": "10Ti"},
                    {"name": "nvidia.com/gpu", "nominalQuota": str(gpus)}]}]}]}},
        {"apiVersion": KUEUE_API, "kind": "LocalQueue", "metadata": {"name": LOCAL_QUEUE, "namespace": namespace},
         "spec": {"clusterQueue": name}},
    ]


def managed_namespace(cp, name: str) -> None:
    """A namespace Kueue manages (the tier's Kueue webhooks select it by label), with the S3 Secret."""
    cp.create_namespace(name)
    cp.kubectl("label", "namespace", name, "=".join(KUEUE_NAMESPACE_LABEL))
    cp.apply([s3_secret(name)])


def local_queue_active(cp, namespace: str) -> bool:
    queue = cp.get_json(f"localqueues.v1beta2.kueue.x-k8s.io/{LOCAL_QUEUE}", "-n", namespace)
    return is_true(queue, "Active")


def workload_of(cp, namespace: str, owner_uid: str) -> dict[str, Any] | None:
    items = cp.get_json("workloads.v1beta2.kueue.x-k8s.io", "-n", namespace,
                        "-l", f"kueue.x-k8s.io/job-uid={owner_uid}")["items"]
    return items[0] if items else None


def only_job(cp, namespace: str, name: str) -> dict[str, Any]:
    jobs = cp.get_json("jobs", "-n", namespace, "-l", f"osmf.dev/name={name}")["items"]
    assert len(jobs) >= 1, f"no Job of {name}"
    return sorted(jobs, key=lambda j: j["metadata"]["creationTimestamp"])[0]


def resource(cp, name: str) -> dict[str, Any]:
    return cp.get_json("audiencegrouping", name, "-n", NAMESPACE)


@pytest.fixture(scope="module")
def queue(control_plane, kueue, operator) -> str:
    cp = control_plane
    managed_namespace(cp, NAMESPACE)
    cp.apply([*kueue_queue("gpu", NAMESPACE, gpus=8),
              {"apiVersion": KUEUE_API, "kind": "WorkloadPriorityClass", "metadata": {"name": PRIORITY_CLASS},
               "value": PRIORITY, "description": "OSMF batch stages"}])
    wait_for("the LocalQueue to be active", lambda: local_queue_active(cp, NAMESPACE), timeout=60)
    yield NAMESPACE
    cp.kubectl("delete", "namespace", NAMESPACE, "--wait=false")  # its pods hold H100 GPUs
    wait_for("the queued namespace's pods to be gone", lambda: not cp.get_json("pods", "-n", NAMESPACE)["items"],
             timeout=120)


@pytest.fixture(scope="module")
def quota_run(control_plane, queue, pod_bridge, s3_server) -> dict[str, Any]:
    """8 GPUs admitted, the ninth waiting, then admitted when the first Job finishes; what was seen on the way."""
    cp, ns = control_plane, queue
    world = upload_tiny_world(s3_server, "kueue-world")
    for name in ("first", "ninth"):
        pod_bridge.ignore(ns, name)
    seen: dict[str, Any] = {}
    cp.apply([grouping("first", world, resources={"gpusPerNode": 8})], namespace=ns)

    def first_running():
        job = only_job(cp, ns, "first")
        pods = cp.get_json("pods", "-n", ns, "-l", "osmf.dev/name=first")["items"]
        # KWOK runs the pod before the Job controller records the resume on the Job; wait for both.
        resumed = (condition(job, "Suspended") or {}).get("status") == "False"
        return (job, pods) if resumed and pods and all(p["status"].get("phase") == "Running" for p in pods) else None

    seen["first_job"], seen["first_pods"] = wait_for("Kueue to admit the 8-GPU Job and its pod to run", first_running, timeout=120)
    seen["first_workload"] = workload_of(cp, ns, seen["first_job"]["metadata"]["uid"])

    cp.apply([grouping("ninth", world, resources={"gpusPerNode": 1})], namespace=ns)
    def ninth_queued():
        # A pass can meet the Workload before Kueue has tried to admit it (no QuotaReserved message
        # yet); the resource says Kueue's words from the next pass on (the requeue timer's).
        obj = resource(cp, "ninth")
        if not is_true(obj, "Queued"):
            return None
        job = only_job(cp, ns, "ninth")
        workload = workload_of(cp, ns, job["metadata"]["uid"])
        kueue_says = (condition(workload, "QuotaReserved") or {}).get("message") if workload else None
        return (obj, job, workload) if kueue_says and condition(obj, "Queued")["message"] == kueue_says else None

    seen["ninth_queued"], seen["ninth_job_queued"], seen["ninth_workload_queued"] = wait_for(
        "the ninth GPU's resource to be Queued in Kueue's words", ninth_queued, timeout=120)
    seen["ninth_pods_queued"] = cp.get_json("pods", "-n", ns, "-l", "osmf.dev/name=ninth")["items"]

    (pod,) = seen["first_pods"]
    pod_bridge.finish(ns, pod["metadata"]["name"])  # the first Job's only pod ends well
    def ninth_running():
        obj = resource(cp, "ninth")
        pods = cp.get_json("pods", "-n", ns, "-l", "osmf.dev/name=ninth")["items"]
        return obj if not is_true(obj, "Queued") and pods else None

    seen["ninth_running"] = wait_for("the ninth GPU's Job to be admitted and run once the first finished",
                                     ninth_running, timeout=120)
    seen["ninth_job"] = only_job(cp, ns, "ninth")
    seen["ninth_pods"] = cp.get_json("pods", "-n", ns, "-l", "osmf.dev/name=ninth")["items"]
    seen["ninth_workload"] = workload_of(cp, ns, seen["ninth_job"]["metadata"]["uid"])
    seen["first_job_done"] = cp.get_json("job", seen["first_job"]["metadata"]["name"], "-n", ns)
    return seen


def test_kueue_serves_workloads_at_v1beta2_and_v1beta1(control_plane, kueue):
    doc = json.loads(control_plane.kubectl("get", "--raw", "/apis/kueue.x-k8s.io").stdout)
    assert doc["preferredVersion"]["version"] == "v1beta2"
    assert {v["version"] for v in doc["versions"]} >= {"v1beta2", "v1beta1"}


def test_kueue_suspends_the_operators_job_and_admits_it(quota_run):
    job, workload = quota_run["first_job"], quota_run["first_workload"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == LOCAL_QUEUE
    suspended = condition(job, "Suspended")
    assert suspended is not None and (suspended["status"], suspended["reason"]) == ("False", "JobResumed"), \
        "the Job was suspended (by Kueue's webhook) and resumed on admission"
    assert workload is not None and is_true(workload, "Admitted") and is_true(workload, "QuotaReserved")
    assert workload["status"]["admission"]["clusterQueue"] == "gpu"
    pods = quota_run["first_pods"]
    assert [p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] for p in pods] == ["8"]


def test_the_ninth_gpu_waits_and_the_resource_says_why_in_kueues_words(quota_run):
    obj = quota_run["ninth_queued"]
    queued = condition(obj, "Queued")
    assert queued["reason"] == "WaitingForQuota"
    workload = quota_run["ninth_workload_queued"]
    quota = condition(workload, "QuotaReserved")
    assert quota["status"] == "False" and queued["message"] == quota["message"]
    assert "nvidia.com/gpu" in queued["message"], queued["message"]
    assert obj["status"]["stage"] == "Queued"
    assert condition(obj, "Ready")["status"] == "True", "a queued Job is current for kstatus"
    assert condition(obj, "Stalled")["status"] == "False"
    assert quota_run["ninth_job_queued"]["spec"]["suspend"] is True
    assert quota_run["ninth_pods_queued"] == [], "no pod before admission"


def test_the_ninth_gpu_runs_when_the_first_job_finishes(quota_run):
    assert any(c["type"] == "Complete" and c["status"] == "True"
               for c in quota_run["first_job_done"]["status"].get("conditions", []))
    obj = quota_run["ninth_running"]
    assert condition(obj, "Queued")["status"] == "False"
    assert quota_run["ninth_job"]["spec"]["suspend"] is False
    assert is_true(quota_run["ninth_workload"], "Admitted")
    (pod,) = quota_run["ninth_pods"]
    assert pod["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-h100-80gb"


def test_the_kinds_priority_class_reaches_kueue(quota_run):
    assert quota_run["first_job"]["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == PRIORITY_CLASS
    spec = quota_run["first_workload"]["spec"]
    assert spec["priorityClassRef"]["name"] == PRIORITY_CLASS and spec["priority"] == PRIORITY


def operator_requests(cp, operator) -> list[dict[str, Any]]:
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{operator.service_account}"
    return [e for e in cp.audit_events() if e["user"]["username"] == user and e.get("objectRef")]


def test_the_operator_never_writes_a_job_after_creating_it(quota_run, control_plane, operator):
    del quota_run
    writes = [(e["verb"], e["objectRef"].get("name")) for e in operator_requests(control_plane, operator)
              if e["objectRef"].get("resource") == "jobs" and e["verb"] in ("patch", "update")]
    assert writes == [], "spec.suspend is Kueue's alone"


def test_the_operator_reads_workloads_at_v1beta2(quota_run, control_plane, operator):
    del quota_run
    reads = {(e["objectRef"].get("apiVersion"), e["verb"]) for e in operator_requests(control_plane, operator)
             if e["objectRef"].get("resource") == "workloads"}
    assert reads == {("v1beta2", "list")}, reads
