"""`osmf status` and `osmf logs` on the real control plane (issue 14, point 7).

A small AudienceGrouping whose input is invalid (a user attribute the data lacks) runs the real
grouping job through the pod bridge: the job prints its one-line reason and exits 65. The CLI, run
as a user would with a kubeconfig, shows the resource's status as the operator wrote it and its
pod's output through the API server's pod log endpoint (kube-apiserver → the node's kubelet
endpoint, here the pod bridge's: tests/cluster/kubeletlogs.py).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.cluster.controlplane import wait_for
from tests.cluster.pipeline import is_true, upload_tiny_world
from tests.cluster.test_reliability import example_attributes, grouping

pytestmark = pytest.mark.cluster


def osmf(cp, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "osmf_operator.cli", *argv, f"--kubeconfig={cp.admin_kubeconfig}"],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def world(s3_server):
    return upload_tiny_world(s3_server, "cli-world")


def test_status_and_logs_of_a_resource_on_the_cluster(control_plane, operator, pod_bridge, workload_ns, world):
    cp = control_plane
    pod_bridge.serve(workload_ns)
    cp.apply([grouping("shoes", world, userAttributes=[*example_attributes(), "shoe_size"])], namespace=workload_ns)

    def running_pod():
        pods = cp.get_json("pods", "-n", workload_ns, "-l", "osmf.dev/name=shoes")["items"]
        return pods and pod_bridge.log_of(workload_ns, pods[0]["metadata"]["name"])

    wait_for("the grouping's train pod to run", running_pod, timeout=180, processes=cp.processes.values())
    follow = osmf(cp, "logs", "ag/shoes", "-n", workload_ns, "--follow", timeout=300)  # returns when the pod ends
    assert follow.returncode == 0, follow.stderr
    assert "osmf: invalid input:" in follow.stdout and "shoe_size" in follow.stdout

    wait_for("the resource to stall", lambda: is_true(cp.get_json("ag", "shoes", "-n", workload_ns), "Stalled"),
             timeout=120, processes=cp.processes.values())
    status = osmf(cp, "status", "audiencegrouping/shoes", "-n", workload_ns)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"AudienceGrouping {workload_ns}/shoes" and lines[1].startswith("Stage:       Failed")
    stalled = next(line for line in lines if line.startswith("  Stalled "))
    assert stalled.split()[:3] == ["Stalled", "True", "InvalidInput"] and "shoe_size" in stalled
    job = next(line for line in lines if line.startswith("  Job "))
    assert job.split()[2] == "train" and "Failed (PodFailurePolicy)" in job
    assert any(line.startswith("  data    s3://") for line in lines)

    again = osmf(cp, "logs", "ag/shoes", "-n", workload_ns, "--step", "train")  # a finished pod's log
    assert again.returncode == 0 and "osmf: invalid input:" in again.stdout
    missing = osmf(cp, "logs", "ag/shoes", "-n", workload_ns, "--step", "merge")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "has no Job for step merge" in missing.stderr
