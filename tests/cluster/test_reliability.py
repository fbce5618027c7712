"""Failure handling on the real control plane (issue 4, item 6), apart from the pipeline run.

(Operator restarts at stage boundaries and the 30 s S3 outage happen during the pipeline run and
are checked in test_pipeline.py; 200 resources at once are in test_scale.py.)
Each test runs a small AudienceGrouping on the tiny synthetic world with the real grouping job.
"""

from __future__ import annotations

import pytest
from tests.cluster.controlplane import GiveUp, wait_for
from tests.cluster.pipeline import cluster_pipeline, condition, is_true, upload_tiny_world

pytestmark = pytest.mark.cluster

INVALID_INPUT_EXIT = 65


@pytest.fixture(scope="module")
def world_uri(s3_server):
    return upload_tiny_world(s3_server, "reliability-world")


def example_attributes() -> list[str]:
    """The user attributes of the local-pipeline example (columns the synthetic world has)."""
    (doc,) = [d for d in cluster_pipeline("unused") if d["kind"] == "AudienceGrouping"]
    return doc["spec"]["userAttributes"]


def grouping(name: str, data_uri: str, **spec) -> dict:
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": "AudienceGrouping",
            "metadata": {"name": name},
            "spec": {"data": {"uri": data_uri},
                     "userAttributes": spec.pop("userAttributes", example_attributes()),
                     "model": {"epochs": 1}, "privacy": {"minGroupSize": 5},
                     "resources": {"gpusPerNode": 1}, **spec}}


def get(cp, ns: str, name: str) -> dict:
    return cp.get_json("audiencegrouping", name, "-n", ns)


def wait_resource(cp, ns: str, name: str, what: str, predicate, timeout: float,
                  expect_failure: bool = False) -> dict:
    """Wait until `predicate(obj)`; give up at once if the resource fails when it should not."""

    def check():
        obj = get(cp, ns, name)
        if predicate(obj):
            return obj
        if not expect_failure and (is_true(obj, "Stalled") or (condition(obj, "Succeeded") or {})
                                   .get("status") == "False"):
            raise GiveUp(f"{name} failed instead: {condition(obj, 'Stalled') or obj['status']}")
        return None

    return wait_for(what, check, timeout=timeout)


def jobs_of(cp, ns: str, name: str) -> list[dict]:
    return cp.get_json("jobs", "-n", ns, "-l", f"osmf.dev/name={name}")["items"]


def test_invalid_input_fails_at_once_and_the_resource_is_stalled_with_the_reason(
        control_plane, operator, pod_bridge, workload_ns, world_uri):
    cp = control_plane
    pod_bridge.serve(workload_ns)
    cp.apply([grouping("bad-columns", world_uri,
                       userAttributes=[*example_attributes(), "shoe_size"])],
             namespace=workload_ns)
    obj = wait_resource(cp, workload_ns, "bad-columns", "the resource to stall",
                        lambda o: is_true(o, "Stalled"), timeout=300, expect_failure=True)
    stalled = condition(obj, "Stalled")
    assert "shoe_size" in stalled["message"], stalled
    assert condition(obj, "Succeeded")["status"] == "False"
    (job,) = jobs_of(cp, workload_ns, "bad-columns")
    failed = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed and failed[0]["reason"] == "PodFailurePolicy"
    assert job["status"]["failed"] == 1, "exit 65 is not retried"
    exits = [e["exit_code"] for e in pod_bridge.exits(workload_ns)]
    assert exits == [INVALID_INPUT_EXIT]


def test_a_disrupted_pod_does_not_count_against_retries(
        control_plane, operator, pod_bridge, workload_ns, world_uri):
    cp = control_plane
    pod_bridge.serve(workload_ns)
    # No retries allowed at all: if the eviction counted, the Job would fail.
    cp.apply([grouping("evicted", world_uri, runPolicy={"backoffLimit": 0})],
             namespace=workload_ns)
    pod = wait_for("the first pod to run", lambda: pod_bridge.running_pods(workload_ns),
                   timeout=180)[0]
    pod_bridge.disrupt(workload_ns, pod)
    wait_resource(cp, workload_ns, "evicted", "the grouping to succeed",
                  lambda o: is_true(o, "Succeeded"), timeout=480)
    evicted_job = next(j for j in jobs_of(cp, workload_ns, "evicted")
                       if pod.startswith(j["metadata"]["name"] + "-"))
    assert evicted_job["status"].get("failed", 0) == 0, evicted_job["status"]
    assert any(c["type"] == "Complete" and c["status"] == "True"
               for c in evicted_job["status"]["conditions"])


def test_deleting_a_resource_mid_run_removes_its_children_and_keeps_its_artifacts(
        control_plane, operator, pod_bridge, workload_ns, world_uri):
    from osmf_core.store import open_store

    cp = control_plane
    pod_bridge.serve(workload_ns)
    cp.apply([grouping("deleted", world_uri)], namespace=workload_ns)

    def second_step_started(obj):
        run = obj.get("status", {}).get("run") or {}
        return run.get("completedSteps") and len(jobs_of(cp, workload_ns, "deleted")) >= 2

    obj = wait_resource(cp, workload_ns, "deleted", "the first step to finish and the next to start",
                        second_step_started, timeout=480)
    run_uri = obj["status"]["artifacts"]["output"]["uri"] if obj["status"]["artifacts"].get(
        "output") else None
    store_uri = run_uri or _run_dir_from_jobs(cp, workload_ns)
    written = open_store(store_uri).list()
    assert written, "the finished step wrote files"
    cp.kubectl("delete", "audiencegrouping", "deleted", "-n", workload_ns, "--wait=true",
               timeout=120)

    def children_gone():
        left = {kind: cp.get_json(kind, "-n", workload_ns, "-l", "osmf.dev/name=deleted")["items"]
                for kind in ("jobs", "pods", "configmaps", "services")}
        return all(not items for items in left.values())

    wait_for("the garbage collector to remove every child", children_gone, timeout=120)
    # The bridge (our kubelet) learns of a deletion from its watch, a moment after the API server.
    wait_for("the deleted pods' processes to be stopped", lambda: not pod_bridge.running_pods(workload_ns), timeout=60)
    assert set(written) <= set(open_store(store_uri).list()), "artifacts are kept"


def _run_dir_from_jobs(cp, ns: str) -> str:
    """The run directory from a Job's config (status.artifacts.output is set only at the end)."""
    import json

    (config_map,) = cp.get_json("configmaps", "-n", ns, "-l", "osmf.dev/name=deleted")["items"][:1]
    config = json.loads(next(iter(config_map["data"].values())))
    return config["run"]["uri"]
