"""Install the operator from the rendered Helm chart and run its Deployment's pod.

The chart is rendered with `helm template` and the tier's values (tests/cluster/values-test.yaml,
plus the session's S3 endpoint and free ports), and applied whole: ServiceAccount, ClusterRole and
binding, settings ConfigMap, metrics Service and the Deployment. The Deployment's pod is
scheduled onto the fake CPU node and run by the pod bridge, which gives it a token of the chart's
ServiceAccount: the operator works with exactly the chart's RBAC and nothing else.
"""

from __future__ import annotations

import copy
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tests.cluster.controlplane import REPO, ControlPlane, GiveUp, free_port, wait_for
from tests.cluster.podbridge import PodBridge

CHART = REPO / "charts" / "osmf"
OPERATOR_NAMESPACE = "osmf-system"
RELEASE = "osmf"
S3_SECRET = "osmf-s3"


@dataclass
class RenderedChart:
    docs: list[dict[str, Any]]
    values: dict[str, Any]

    def one(self, kind: str) -> dict[str, Any]:
        (doc,) = [d for d in self.docs if d["kind"] == kind]
        return doc

    @property
    def settings(self) -> dict[str, Any]:
        return yaml.safe_load(self.one("ConfigMap")["data"]["settings.yaml"])


def render_chart(helm: Path, values: dict[str, Any], workdir: Path) -> RenderedChart:
    values_file = workdir / "chart-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    # --include-crds: kopf's peering CRDs, which `helm install` applies from the chart's crds/.
    result = subprocess.run([str(helm), "template", RELEASE, str(CHART), "--namespace",
                             OPERATOR_NAMESPACE, "-f", str(values_file), "--include-crds"],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed: {result.stderr.strip()}")
    return RenderedChart([d for d in yaml.safe_load_all(result.stdout) if d], values)


def tier_chart_values(base: dict[str, Any], s3_endpoint: str, bucket: str,
                      tenants: dict[str, Any] | None = None) -> dict[str, Any]:
    values = copy.deepcopy(base)
    values["healthPort"] = free_port()
    values.setdefault("metrics", {})["port"] = free_port()
    values["settings"]["artifacts"] = {"rootUri": f"s3://{bucket}/runs", "endpointUrl": s3_endpoint,
                                       "region": "us-east-1", "credentialsSecret": S3_SECRET}
    if tenants:
        values["settings"]["tenants"] = tenants
    return values


TENANT_A, TENANT_B = "tenant-a", "tenant-b"
TENANT_A_SECRET, TENANT_B_SERVICE_ACCOUNT = "tenant-a-s3", "tenant-b-jobs"


def tenant_settings(bucket: str, endpoint: str) -> dict[str, Any]:
    """Two tenants reaching S3 through `endpoint` (the recording proxy): A by its own Secret, B by a
    ServiceAccount (workload identity); each may read one data prefix of the session's bucket."""
    return {
        TENANT_A: {"endpointUrl": endpoint, "credentialsSecret": TENANT_A_SECRET,
                   "allowedUriPrefixes": [f"s3://{bucket}/{TENANT_A}-data/"]},
        TENANT_B: {"endpointUrl": endpoint, "serviceAccount": TENANT_B_SERVICE_ACCOUNT,
                   "allowedUriPrefixes": [f"s3://{bucket}/{TENANT_B}-data/"]},
    }


def s3_secret(namespace: str) -> dict[str, Any]:
    """The credentials Secret that settings.artifacts.credentialsSecret names (SeaweedFS's keys)."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": S3_SECRET, "namespace": namespace},
            "stringData": {"AWS_ACCESS_KEY_ID": "osmf", "AWS_SECRET_ACCESS_KEY": "osmf-secret"}}


class InstalledOperator:
    """The operator as the chart deploys it, running through the pod bridge."""

    def __init__(self, cp: ControlPlane, bridge: PodBridge, chart: RenderedChart):
        self.cp, self.bridge, self.chart = cp, bridge, chart
        self.deployment = chart.one("Deployment")["metadata"]["name"]
        self.health_url = f"http://127.0.0.1:{chart.values['healthPort']}/healthz"
        self.metrics_url = f"http://127.0.0.1:{chart.values['metrics']['port']}/metrics"
        self.service_account = chart.one("ServiceAccount")["metadata"]["name"]

    def install(self, timeout: float = 120) -> None:
        self.cp.create_namespace(OPERATOR_NAMESPACE)
        for namespace in self.chart.settings.get("tenants") or {}:  # the platform team makes them first
            if self.cp.kubectl("get", "namespace", namespace, check=False).returncode != 0:
                self.cp.create_namespace(namespace)
        self.bridge.serve(OPERATOR_NAMESPACE)
        self.cp.apply([s3_secret(OPERATOR_NAMESPACE)])
        # As Helm does: CRDs first and Established, then what uses them (the peering object).
        crds = [d for d in self.chart.docs if d["kind"] == "CustomResourceDefinition"]
        self.cp.establish_crds(crds)
        self.cp.apply([d for d in self.chart.docs if d["kind"] != "CustomResourceDefinition"])
        self.wait_healthy(timeout)

    def pod_names(self) -> list[str]:
        pods = self.cp.get_json("pods", "-n", OPERATOR_NAMESPACE, "-l",
                                f"app.kubernetes.io/instance={RELEASE}")["items"]
        return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]

    def process(self):
        return self.bridge.process_of(OPERATOR_NAMESPACE, f"{self.deployment}-")

    def healthy(self) -> bool:
        crashed = [e for e in self.bridge.exits(OPERATOR_NAMESPACE) if e.get("restarted")]
        if len(crashed) >= 2:
            raise GiveUp(f"the operator pod crash-loops (exit {crashed[-1]['exit_code']})")
        if self.process() is None:
            return False
        with urllib.request.urlopen(self.health_url, timeout=2) as response:
            return response.status == 200

    def wait_healthy(self, timeout: float = 120) -> None:
        wait_for(f"the operator pod to run and answer {self.health_url}", self.healthy,
                 timeout=timeout, interval=0.5, processes=self.cp.processes.values())

    def restart(self, timeout: float = 120) -> None:
        """Delete the operator's pod as a node drain would; the Deployment makes a new one."""
        old = self.process()
        for name in self.pod_names():
            self.cp.kubectl("delete", "pod", name, "-n", OPERATOR_NAMESPACE, "--wait=false")
        wait_for("the old operator process to end", lambda: old is None or old.poll() is not None,
                 timeout=30)
        self.wait_healthy(timeout)

    def rss_bytes(self) -> int:
        import psutil

        proc = self.process()
        assert proc is not None, "the operator is not running"
        return psutil.Process(proc.pid).memory_info().rss

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    def log(self) -> str:
        logs = sorted((self.bridge.workdir / OPERATOR_NAMESPACE).glob("*/output.log"),
                      key=lambda p: p.stat().st_mtime)
        return logs[-1].read_text(errors="replace") if logs else "(no operator log)"


def settle(seconds: float) -> None:
    """Let watches deliver; used only where a test asserts that something does NOT happen."""
    time.sleep(seconds)
