"""Scheduling of the operator's pods on the fake H100 pool (issue 4, item 4).

Where the pipeline's own pods ran is checked in test_pipeline.py. Here, on top of the finished
pipeline (its GAIPDataset is the input), the operator builds a two-node 8-GPU training gang and
then one more 8-GPU stage than the pool holds. The pod bridge leaves these pods alone: only where
they are placed matters, not running them.
"""

from __future__ import annotations

import pytest

from tests.cluster.controlplane import GPUS_PER_H100_NODE, H100_NODES, wait_for
from tests.cluster.pipeline import PIPELINE_TIMEOUT_S, condition

# The first test here may start the whole pipeline run (session fixture): allow for it.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(PIPELINE_TIMEOUT_S + 600)]


def training(name: str, dataset: str, nodes: int) -> dict:
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": "GMLLMTraining", "metadata": {"name": name},
            "spec": {"task": "pretrain", "datasetRef": {"name": dataset},
                     "baseModel": {"uri": "builtin:tiny-llava"},
                     "training": {"epochs": 1, "precision": "fp32"},
                     "resources": {"gpusPerNode": GPUS_PER_H100_NODE, "nodes": nodes}}}


@pytest.fixture(scope="module")
def gang(pipeline, control_plane, pod_bridge):
    """A 2-node × 8-GPU GMLLMTraining on the pipeline's dataset, its pods placed but not run."""
    ns = pipeline.namespace
    (dataset,) = [n for k, n in pipeline.final if k == "GAIPDataset"]
    for name in ("gang", "one-too-many"):
        pod_bridge.ignore(ns, name)
    control_plane.apply([training("gang", dataset, nodes=2)], namespace=ns)

    def placed():
        pods = control_plane.get_json("pods", "-n", ns, "-l", "osmf.dev/name=gang")["items"]
        return pods if len(pods) == 2 and all(p["spec"].get("nodeName") for p in pods) else None

    pods = wait_for("both gang pods to be scheduled", placed, timeout=120)
    yield ns, pods, dataset
    control_plane.kubectl("delete", "gmllmtraining", "gang", "one-too-many", "-n", ns,
                          "--ignore-not-found", "--wait=true", timeout=120)


def test_a_two_node_gang_gets_an_indexed_job_a_headless_service_and_stable_hostnames(
        gang, control_plane):
    ns, pods, _ = gang
    (job,) = control_plane.get_json("jobs", "-n", ns, "-l", "osmf.dev/name=gang")["items"]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    service_name = spec["template"]["spec"]["subdomain"]
    service = control_plane.get_json("service", service_name, "-n", ns)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"].get("publishNotReadyAddresses") is True
    assert service["spec"]["selector"].items() <= pods[0]["metadata"]["labels"].items()
    name = job["metadata"]["name"]
    hostnames = sorted(p["spec"]["hostname"] for p in pods)
    assert hostnames == [f"{name}-0", f"{name}-1"]
    assert {p["spec"]["subdomain"] for p in pods} == {service_name}
    command = " ".join(pods[0]["spec"]["containers"][0]["command"])
    assert f"--master-addr={name}-0.{service_name}" in command


def test_without_the_jobset_api_the_gang_is_an_indexed_job_and_the_resource_says_so(gang, control_plane):
    """The operator found no jobset.x-k8s.io at its start (test_jobset.py installs it only for its module)."""
    ns, _, _ = gang
    assert control_plane.kubectl("get", "crd", "jobsets.jobset.x-k8s.io", check=False).returncode != 0
    obj = control_plane.get_json("gmllmtraining", "gang", "-n", ns)
    assert [c["kind"] for c in obj["status"]["children"]["objects"]] == ["Job"]


def test_two_8_gpu_pods_take_one_h100_node_each(gang):
    _, pods, _ = gang
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(H100_NODES)
    for pod in pods:
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == str(GPUS_PER_H100_NODE)


def test_a_stage_beyond_gpu_capacity_stays_pending_and_the_resource_says_why(
        gang, control_plane):
    ns, _, dataset = gang
    control_plane.apply([training("one-too-many", dataset, nodes=1)], namespace=ns)

    def explained():
        obj = control_plane.get_json("gmllmtraining", "one-too-many", "-n", ns)
        messages = " ".join(c.get("message", "") for c in obj.get("status", {}).get("conditions", []))
        return obj if "Insufficient nvidia.com/gpu" in messages else None

    obj = wait_for("the over-capacity stage to report why its pod waits", explained, timeout=120)
    pods = control_plane.get_json("pods", "-n", ns, "-l", "osmf.dev/name=one-too-many")["items"]
    assert pods and all(not p["spec"].get("nodeName") for p in pods)
    assert condition(obj, "Succeeded")["status"] == "Unknown"
    assert condition(obj, "Stalled") is None or condition(obj, "Stalled")["status"] != "True"
