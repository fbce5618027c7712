"""The control plane itself: fake H100 nodes, RBAC on, the scheduler honouring the GPU pool.

These check the tier's ground truth (what the operator tests below rely on) with plain Kubernetes
objects: if they fail, the operator tests' results mean nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.cluster.controlplane import (CPU_NODE, GPUS_PER_H100_NODE, H100_NODES, NOBODY_TOKEN,
                                        tier_values, wait_for)

pytestmark = pytest.mark.cluster

SETTINGS = tier_values()["settings"]
POOL = SETTINGS["nodePools"][SETTINGS["defaultGpuPool"]]
GPU = POOL["gpuResource"]


@pytest.fixture
def namespace(control_plane):
    name = f"cp-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


def gpu_pod(name: str, gpus: int) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": POOL["nodeSelector"],
            "tolerations": POOL["tolerations"],
            "containers": [{"name": "main", "image": "trainer:test", "command": ["true"],
                            "resources": {"limits": {GPU: str(gpus)}}}],
        },
    }


def placement(cp, namespace: str, name: str) -> dict:
    return cp.get_json("pod", name, "-n", namespace)


def test_fake_nodes_carry_the_pool_labels_taint_and_gpus(control_plane):
    nodes = {n["metadata"]["name"]: n for n in control_plane.get_json("nodes")["items"]}
    assert set(H100_NODES) | {CPU_NODE} <= set(nodes)
    for name in H100_NODES:
        node = nodes[name]
        assert POOL["nodeSelector"].items() <= node["metadata"]["labels"].items()
        assert node["status"]["allocatable"][GPU] == str(GPUS_PER_H100_NODE)
        assert {t["key"] for t in node["spec"]["taints"]} == {t["key"] for t in POOL["tolerations"]}
    assert GPU not in nodes[CPU_NODE]["status"]["allocatable"]
    assert not nodes[CPU_NODE]["spec"].get("taints")
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]


def test_rbac_is_enforced_for_an_unbound_user(control_plane, tmp_path):
    kubeconfig = control_plane.write_kubeconfig(tmp_path / "nobody.kubeconfig", NOBODY_TOKEN)
    result = control_plane.kubectl("get", "pods", "-n", "default", kubeconfig=kubeconfig,
                                   check=False)
    assert result.returncode != 0
    assert "Forbidden" in result.stderr and "osmf-test-nobody" in result.stderr


def test_gpu_pods_fill_the_h100_nodes_and_the_rest_stays_pending(control_plane, namespace):
    cp = control_plane
    full = [gpu_pod(f"full-{i}", GPUS_PER_H100_NODE) for i in range(len(H100_NODES))]
    cp.apply([*full, gpu_pod("one-too-many", 1)], namespace=namespace)

    def scheduled():
        nodes = [placement(cp, namespace, p["metadata"]["name"])["spec"].get("nodeName")
                 for p in full]
        return nodes if all(nodes) else None

    nodes = wait_for("the 8-GPU pods to be scheduled", scheduled, timeout=60)
    assert sorted(nodes) == sorted(H100_NODES), "one full pod per H100 node"

    def unschedulable():
        pod = placement(cp, namespace, "one-too-many")
        conds = [c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"]
        return conds[0] if conds and conds[0].get("reason") == "Unschedulable" else None

    cond = wait_for("the extra GPU pod to be reported unschedulable", unschedulable, timeout=60)
    assert f"Insufficient {GPU}" in cond["message"]
    assert not placement(cp, namespace, "one-too-many")["spec"].get("nodeName")


def test_pods_without_the_toleration_never_land_on_h100_nodes(control_plane, namespace):
    cp = control_plane
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cpu-work"},
           "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "trainer:test",
                                    "resources": {"requests": {"cpu": "1"}}}]}}
    cp.apply([pod], namespace=namespace)

    def running_on():
        got = placement(cp, namespace, "cpu-work")
        return got["spec"].get("nodeName") if got["status"].get("phase") == "Running" else None

    assert wait_for("the CPU pod to run (KWOK marks it Running)", running_on, timeout=60) == CPU_NODE


def exit_job(name: str, code_source: str) -> list[dict]:
    """A Job whose pod exits with the code in its ConfigMap-mounted file, via the pod bridge."""
    script = ("import os, pathlib, sys; "
              "code = int(pathlib.Path('/etc/exit/code').read_text()); "
              "print('index', os.environ['JOB_COMPLETION_INDEX'], 'pod', os.environ['POD_NAME']); "
              "sys.exit(code)")
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
         "data": {"code": code_source}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
         "spec": {
             "completionMode": "Indexed", "completions": 1, "parallelism": 1, "backoffLimit": 3,
             "podFailurePolicy": {"rules": [
                 {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [65]}},
                 {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
             "template": {"spec": {
                 "restartPolicy": "Never",
                 "containers": [{
                     "name": "main", "image": "trainer:test",
                     "command": ["python", "-c", script],
                     "env": [{"name": "POD_NAME",
                              "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                     "volumeMounts": [{"name": "exit", "mountPath": "/etc/exit"}]}],
                 "volumes": [{"name": "exit", "configMap": {"name": name}}]}}}},
    ]


def job_condition(cp, namespace: str, name: str):
    job = cp.get_json("job", name, "-n", namespace)
    done = [c for c in job.get("status", {}).get("conditions", [])
            if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
    return (done[0], job) if done else None


def test_pod_bridge_runs_the_real_command_and_the_job_controller_sees_its_exit(
        control_plane, pod_bridge, namespace):
    cp = control_plane
    pod_bridge.serve(namespace)
    cp.apply(exit_job("ok", "0") + exit_job("bad-input", "65"), namespace=namespace)
    ok, _ = wait_for("Job ok to finish", lambda: job_condition(cp, namespace, "ok"), timeout=90)
    assert ok["type"] == "Complete"
    failed, job = wait_for("Job bad-input to finish",
                           lambda: job_condition(cp, namespace, "bad-input"), timeout=90)
    assert (failed["type"], failed["reason"]) == ("Failed", "PodFailurePolicy")
    assert job["status"].get("failed") == 1, "exit 65 fails the Job at once, without retries"
    exits = {e["name"].rsplit("-", 2)[0]: e for e in pod_bridge.exits(namespace)}
    assert exits["ok"]["exit_code"] == 0 and exits["bad-input"]["exit_code"] == 65
    output = [line for line in Path(exits["ok"]["log"]).read_text().splitlines()
              if not line.startswith("--- ")]  # the bridge's start marker
    assert output[0].startswith("index 0 pod ok-0-"), output
