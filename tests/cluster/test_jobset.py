"""Multi-node training on JobSet (issue 13.4), with the real JobSet v0.11 controller.

For this module JobSet is installed (its CRD, its webhooks on loopback, its manager process) and the
operator restarted, since it discovers the JobSet API once per start; afterwards JobSet is removed
and the operator restarted again, so the rest of the tier (test_scheduling.py) sees the Indexed Job
fallback for the same kind of resource.

- A 2-node GMLLMTraining on the pipeline's dataset runs as a JobSet on the KWOK H100 nodes, both
  workers run by the pod bridge as one real torchrun gang (gloo on loopback); one worker is killed
  after the first checkpoint: JobSet restarts the whole gang once and the new gang resumes from the
  checkpoint; the resource mirrors the JobSet throughout and succeeds.
- Kueue admits the operator's JobSet as one unit: with room for one worker's GPUs it admits nothing;
  with room for both it admits both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import controllers
from tests.cluster.controlplane import wait_for
from tests.cluster.pipeline import PIPELINE_TIMEOUT_S, condition, is_true
from tests.cluster.test_kueue import kueue_queue, managed_namespace, workload_of

# The first test here may start the whole pipeline run (session fixture): allow for it.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(PIPELINE_TIMEOUT_S + 1200)]

GANG = "gang-js"


@pytest.fixture(scope="module")
def jobset_api(control_plane, operator, pipeline):
    """JobSet installed and running, the operator restarted to discover it; removed afterwards."""
    build, reason = controllers.find_controller("jobset")
    if build is None:
        pytest.skip(reason)
    controller = controllers.jobset(control_plane, build)
    controller.start()
    operator.restart()
    yield controller
    # Foreground: the JobSets go only after their Jobs and pods. Jobs whose owner's kind is gone would
    # be left behind by the garbage collector, holding their GPUs for the rest of the session.
    control_plane.kubectl("delete", "jobsets.jobset.x-k8s.io", "--all", "--all-namespaces", "--cascade=foreground",
                          "--wait=true", timeout=300)
    wait_for("every JobSet pod to be gone", lambda: not control_plane.get_json(
        "pods", "--all-namespaces", "-l", "jobset.sigs.k8s.io/jobset-name")["items"], timeout=180)
    controller.stop(uninstall=True)
    operator.restart()


def training(name: str, dataset: str) -> dict[str, Any]:
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": "GMLLMTraining", "metadata": {"name": name},
            "spec": {"task": "pretrain", "datasetRef": {"name": dataset},
                     "baseModel": {"uri": "builtin:tiny-llava"},
                     # Long enough that the first gang is far from done when a worker is killed
                     # after the first checkpoint (else rank 0 may finish alone and win the race).
                     "training": {"epochs": 100, "maxSteps": 150, "batchSize": 2, "precision": "fp32",
                                  "checkpointEverySteps": 5},
                     "resources": {"gpusPerNode": 1, "nodes": 2}}}


def run_uri(cp, ns: str, jobset: str) -> str:
    config_map = cp.get_json("configmap", f"{jobset}-config", "-n", ns)
    return json.loads(config_map["data"]["config.json"])["run"]["uri"]


def checkpoint_step(uri: str) -> int | None:
    from osmf_core.layout import CHECKPOINTS, GModel
    from osmf_core.store import open_store

    store = open_store(uri)
    steps = [store.read_json(path).get("step") for path in store.list(CHECKPOINTS) if path.endswith(GModel.CHECKPOINT_DONE)]
    steps = [s for s in steps if isinstance(s, int)]
    return max(steps) if steps else None


def gang_pods(cp, ns: str, jobset: str) -> list[dict[str, Any]]:
    pods = cp.get_json("pods", "-n", ns, "-l", f"jobset.sigs.k8s.io/jobset-name={jobset}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


@pytest.fixture(scope="module")
def gang_run(control_plane, pipeline, jobset_api, pod_bridge) -> dict[str, Any]:
    cp, ns = control_plane, pipeline.namespace
    (dataset,) = [n for k, n in pipeline.final if k == "GAIPDataset"]
    cp.apply([training(GANG, dataset)], namespace=ns)
    seen: dict[str, Any] = {"statuses": []}

    def jobset_created():
        items = cp.get_json("jobsets.jobset.x-k8s.io", "-n", ns, "-l", f"osmf.dev/name={GANG}")["items"]
        return items[0] if items else None

    jobset = wait_for("the operator to create a JobSet", jobset_created, timeout=120)
    name = jobset["metadata"]["name"]
    seen["jobset_created"] = jobset
    seen["first_pods"] = wait_for("both workers to run under the pod bridge", lambda: (
        pods if len(pods := gang_pods(cp, ns, name)) == 2 and all(
            p["metadata"]["name"] in pod_bridge.running_pods(ns) for p in pods) else None), timeout=180)
    seen["service"] = cp.get_json("service", name, "-n", ns)
    uri = run_uri(cp, ns, name)
    seen["checkpoint_before_kill"] = wait_for("the gang's first checkpoint", lambda: checkpoint_step(uri), timeout=600,
                                              interval=1)
    worker = next(p for p in seen["first_pods"] if p["metadata"]["annotations"]["jobset.sigs.k8s.io/job-index"] == "1")
    pod_bridge.crash(ns, worker["metadata"]["name"])
    seen["killed"] = worker["metadata"]["name"]
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        obj = cp.get_json("gmllmtraining", GANG, "-n", ns)
        status = obj.get("status") or {}
        if not seen["statuses"] or seen["statuses"][-1].get("conditions") != status.get("conditions"):
            seen["statuses"].append(status)
        if is_true(obj, "Succeeded") or is_true(obj, "Stalled"):
            break
        time.sleep(1)
    seen["final"] = cp.get_json("gmllmtraining", GANG, "-n", ns)
    seen["jobset"] = cp.get_json("jobsets.jobset.x-k8s.io", name, "-n", ns)
    seen["exits"] = [e for e in pod_bridge.exits(ns) if e["name"].startswith(f"{name}-node-")]
    yield seen
    cp.kubectl("delete", "gmllmtraining", GANG, "-n", ns, "--wait=true", timeout=180)
    wait_for("the gang's pods to be gone", lambda: not gang_pods(cp, ns, name), timeout=180)


def test_a_two_node_training_runs_as_a_jobset_with_a_headless_rendezvous(gang_run):
    jobset = gang_run["jobset_created"]
    name = jobset["metadata"]["name"]
    (rjob,) = jobset["spec"]["replicatedJobs"]
    assert (rjob["name"], rjob["replicas"]) == ("node", 2)
    assert jobset["metadata"]["ownerReferences"][0]["kind"] == "GMLLMTraining"
    service = gang_run["service"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"].get("publishNotReadyAddresses") is True
    pods = sorted(gang_run["first_pods"], key=lambda p: p["metadata"]["annotations"]["jobset.sigs.k8s.io/job-index"])
    assert [p["spec"]["hostname"] for p in pods] == [f"{name}-node-0-0", f"{name}-node-1-0"]
    assert {p["spec"]["subdomain"] for p in pods} == {name}
    for rank, pod in enumerate(pods):
        command = pod["spec"]["containers"][0]["command"]
        assert f"--master-addr={name}-node-0-0.{name}" in command and "--nnodes=2" in command
        assert "--node-rank=$(JOB_INDEX)" in command and pod["metadata"]["annotations"]["jobset.sigs.k8s.io/job-index"] == str(rank)
        assert pod["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-h100-80gb"
        assert pod["spec"]["nodeName"].startswith("h100-")


def test_killing_one_worker_restarts_the_whole_gang_once(gang_run):
    jobset = gang_run["jobset"]
    assert jobset["status"]["restarts"] == 1, jobset["status"]
    assert any(e["name"] == gang_run["killed"] and e["exit_code"] == 137 for e in gang_run["exits"])
    assert is_true(jobset, "Completed")


def test_the_restarted_gang_resumes_from_its_checkpoint_and_the_run_succeeds(gang_run):
    assert is_true(gang_run["final"], "Succeeded"), gang_run["final"]["status"]
    finished = [e for e in gang_run["exits"] if e["exit_code"] == 0]
    assert len(finished) == 2, gang_run["exits"]  # both workers of the restarted gang
    for exit in finished:
        log = Path(exit["log"]).read_text(errors="replace")
        assert "osmf: resuming from checkpoint at step" in log, log[-2000:]
    step = int(Path(finished[0]["log"]).read_text().split("resuming from checkpoint at step")[1].split()[0])
    assert step >= gang_run["checkpoint_before_kill"]


def test_the_resource_mirrors_the_jobset_and_its_restart(gang_run, control_plane, pipeline):
    status = gang_run["final"]["status"]
    children = [(c["kind"], c["name"]) for c in status["children"]["objects"]]
    assert children == [("JobSet", gang_run["jobset"]["metadata"]["name"])]
    assert status["run"]["attempt"] == 2, "the gang restart is the step's second attempt"
    events = [e for e in control_plane.get_json("events", "-n", pipeline.namespace)["items"]
              if e["involvedObject"]["name"] == GANG and e["reason"] == "GangRestarted"]
    assert len(events) == 1 and "(1 of 3 restarts)" in events[0]["message"], events
    assert all(condition({"status": s}, "Stalled")["status"] == "False" for s in gang_run["statuses"])
    assert any("gang restarted 1 of 3 times" in (condition({"status": s}, "Ready") or {}).get("message", "")
               or (condition({"status": s}, "Ready") or {}).get("reason") == "PodFailed"
               for s in gang_run["statuses"]), "a restart is visible in Ready while the new gang runs"


# ---- Kueue admits a gang as one unit -------------------------------------------------------------


def operator_jobset(namespace: str, settings_kueue: dict[str, Any]) -> list[dict[str, Any]]:
    """The ConfigMap and JobSet the operator builds for a 2-node × 8-GPU training (its own builders)."""
    from osmf_core.api import parse_resource
    from osmf_operator.builders import build_job_objects, owner_of
    from osmf_operator.reconcile import Observed, decide, plan_run
    from osmf_operator.settings import parse_settings
    from tests.factories import body, resource, succeeded
    from tests.cluster.controlplane import tier_values

    doc = body("GMLLMTraining", "gang-unit", resources={"gpusPerNode": 8, "nodes": 2})
    doc["metadata"]["namespace"] = namespace
    res = parse_resource(doc)
    plan = plan_run(res, {"dataset": succeeded(resource("GAIPDataset"))}, "s3://osmf/runs")
    (request,) = decide(Observed(resource=res, plan=plan, jobset_api=True), "2026-06-01T12:00:00Z").create_jobs
    settings = parse_settings({**tier_values()["settings"], "kueue": settings_kueue})
    objects = build_job_objects(request, owner_of(res), settings)
    for obj in objects:
        obj["metadata"].pop("ownerReferences")  # applied on its own, without its GMLLMTraining
    return objects


def test_kueue_admits_the_gang_as_one_unit(control_plane, kueue, jobset_api):
    cp, ns = control_plane, "queued-gang"
    managed_namespace(cp, ns)
    cp.apply(kueue_queue("gang", ns, gpus=8))
    cp.apply(operator_jobset(ns, {"enabled": True, "defaultQueue": None, "localQueues": {ns: "gpu"}}))
    (jobset,) = wait_for("the JobSet", lambda: cp.get_json("jobsets.jobset.x-k8s.io", "-n", ns)["items"], timeout=60)
    uid = jobset["metadata"]["uid"]
    assert jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"

    def pending_workload():
        workload = workload_of(cp, ns, uid)
        quota = condition(workload, "QuotaReserved") if workload else None
        return workload if quota and quota["status"] == "False" else None

    workload = wait_for("Kueue to hold the gang for quota", pending_workload, timeout=120)
    (pod_set,) = workload["spec"]["podSets"]
    assert pod_set["count"] == 2, "one Workload for both workers"
    assert "nvidia.com/gpu" in condition(workload, "QuotaReserved")["message"]
    time.sleep(5)
    assert cp.get_json("jobsets.jobset.x-k8s.io", jobset["metadata"]["name"], "-n", ns)["spec"]["suspend"] is True
    assert cp.get_json("pods", "-n", ns)["items"] == [], "room for one worker admits neither"

    cp.kubectl("patch", "clusterqueues.v1beta2.kueue.x-k8s.io", "gang", "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/spec/resourceGroups/0/flavors/0/resources/2/nominalQuota", "value": "16"}]))
    pods = wait_for("both workers once the quota holds them", lambda: (
        p if len(p := cp.get_json("pods", "-n", ns)["items"]) == 2 else None), timeout=120)
    assert is_true(workload_of(cp, ns, uid), "Admitted")
    assert sorted(p["metadata"]["annotations"]["jobset.sigs.k8s.io/job-index"] for p in pods) == ["0", "1"]
    cp.kubectl("delete", "jobsets.jobset.x-k8s.io", "--all", "-n", ns, "--cascade=foreground", "--wait=true", timeout=180)
    cp.kubectl("delete", "namespace", ns, "--wait=false")
    cp.kubectl("delete", "clusterqueues.v1beta2.kueue.x-k8s.io", "gang", "--wait=false")
