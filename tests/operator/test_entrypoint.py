"""`python -m osmf_operator` as the chart runs it: a separate process, a kubeconfig, a settings file,
the liveness endpoint and the metrics port; it reconciles, and exits cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_ports
from tests.factories import body


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.asyncio
async def test_the_entry_point_runs_the_operator(cluster, data_root, tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": cluster.url}}],
        "users": [{"name": "operator", "user": {"token": "test"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "operator"}}],
    }))
    settings = tmp_path / "settings.yaml"
    # Cluster-wide: with watchedNamespaces kopf lists /api/v1/namespaces, a path KMock cannot parse.
    settings.write_text(yaml.safe_dump({"artifacts": {"rootUri": (tmp_path / "artifacts").as_uri()}, "requeueSeconds": 5}))
    health_port, metrics_port = free_ports(2)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "OSMF_SETTINGS_FILE": str(settings)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "osmf_operator", f"--liveness=http://127.0.0.1:{health_port}/healthz",
         f"--metrics-port={metrics_port}", "--log-level=warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        await cluster.wait_for("the liveness endpoint", lambda: http_get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200
                               or process.poll() is not None)
        assert process.poll() is None, process.stdout.read().decode()
        await cluster.create(body("AudienceGrouping", data={"uri": data_root.as_uri()}))
        job = await cluster.wait_job("AudienceGrouping", "grouping", "train")
        assert job["metadata"]["ownerReferences"][0]["kind"] == "AudienceGrouping"
        await cluster.wait_condition("AudienceGrouping", "grouping", "Succeeded", "Unknown")
        # The reconcile counter moves just after the status write the wait above saw: poll for it.
        await cluster.wait_for("the reconcile counter on /metrics", lambda: 'osmf_reconcile_total{kind="AudienceGrouping"}'
                               in http_get(f"http://127.0.0.1:{metrics_port}/metrics")[1])
    except AssertionError as error:
        process.send_signal(signal.SIGTERM)
        output = await asyncio.to_thread(lambda: process.communicate(timeout=30)[0].decode())
        raise AssertionError(f"{error}\n--- operator output:\n{output[-4000:]}") from None
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    output = process.stdout.read().decode()
    assert code == 0, output
    assert "Traceback" not in output, output


def test_bad_settings_exit_with_a_reason(tmp_path: Path):
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"defaultGpuPool": "a100"}))
    result = subprocess.run([sys.executable, "-m", "osmf_operator", "--metrics-port=0"], capture_output=True, text=True,
                            env={**os.environ, "OSMF_SETTINGS_FILE": str(settings)}, timeout=60)
    assert result.returncode == 2
    assert "defaultGpuPool 'a100' is not in nodePools" in result.stderr and "Traceback" not in result.stderr
