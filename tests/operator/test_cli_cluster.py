"""`osmf status` and `osmf logs` against the KMock emulator (no kopf: the statuses are written here).

The CLI finds the cluster through a kubeconfig, as kubectl does; the emulator answers pod logs the
way the kubelet would (emulator.ApiServer.pod_logs). tests/cluster/test_cli.py runs both against the
real control plane with the operator's own statuses and a real pod's output.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.factories import body
from tests.operator import kubeobjects as ko

from osmf_operator.cli import main

pytestmark = pytest.mark.asyncio


def kubeconfig(path: Path, url: str, namespace: str = "default") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "me", "namespace": namespace}}],
    }))
    return path


async def osmf(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def running_grouping(shards: int = 1) -> dict[str, Any]:
    doc = body("AudienceGrouping", "ads", shards=shards)
    doc["status"] = {
        "observedGeneration": 1, "stage": "Running:cluster", "summary": None,
        "conditions": [ko.condition("Ready", "True", "JobRunning", "job ads-cluster-1234abcd step cluster running"),
                       ko.condition("Succeeded", "Unknown", "Running", "step cluster is running"),
                       ko.condition("Stalled", "False", "NotStalled")],
        "progress": {"step": "cluster", "percent": 55.5, "current": 3, "total": 8, "etaSeconds": 40, "metrics": {"loss": 0.25},
                     "updated": "2026-01-01T00:00:00Z"},
        "children": {"objects": [{"kind": "Job", "name": "ads-train-1234abcd", "step": "train"},
                                 {"kind": "Job", "name": "ads-cluster-1234abcd", "step": "cluster"}]},
        "artifacts": {"inputHash": "1234abcd", "inputs": [{"name": "data", "kind": "Dataset", "uri": "s3://data/world", "digest": "sha256:d"}]},
    }
    doc["status"].pop("summary")
    return doc


def job(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {"spec": {"containers": []}}}, "status": status}


async def test_status_shows_stage_progress_conditions_children_and_artifacts(cluster, tmp_path, capsys):
    config = kubeconfig(tmp_path / "kubeconfig", cluster.url)
    await cluster.create(running_grouping())
    await cluster.create(job("ads-train-1234abcd", ko.job_succeeded()))
    await cluster.create(job("ads-cluster-1234abcd", ko.job_running(active=2, ready=1)))
    code, out, err = await osmf(capsys, "status", "ag/ads", "--kubeconfig", str(config))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "AudienceGrouping default/ads"
    assert lines[1] == "Stage:       Running:cluster"
    assert "Progress:    55.5%  step cluster  3/8  ETA 40s  loss=0.25" in out
    ready = next(line for line in lines if line.startswith("  Ready "))
    assert ready.split()[:3] == ["Ready", "True", "JobRunning"] and ready.endswith("job ads-cluster-1234abcd step cluster running")
    assert lines[lines.index("Conditions:") + 1].split() == ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
    train = next(line for line in lines if "ads-train-1234abcd" in line)
    cluster_job = next(line for line in lines if "ads-cluster-1234abcd  cluster" in line)
    assert train.split()[:4] == ["Job", "ads-train-1234abcd", "train", "Succeeded"]
    assert cluster_job.endswith("Running (2 active, 1 ready)")
    assert "  data    s3://data/world  sha256:d" in out
    # the same with the kind's other spellings, and -n over the context's namespace
    for spelling in ("AudienceGrouping/ads", "audiencegroupings/ads", "audiencegrouping.osmf.dev/ads"):
        assert (await osmf(capsys, "status", spelling, "--kubeconfig", str(config), "-n", "default"))[0] == 0


@pytest.mark.parametrize("argv, code, message", [
    (["status", "ag/missing"], 1, "osmf: AudienceGrouping default/missing not found; kubectl get audiencegroupings -n default lists them"),
    (["status", "grouping/ads"], 2, "osmf: 'grouping': not an osmf.dev kind; use one of AudienceGrouping (ag), "),
    (["status", "ads"], 2, "osmf: 'ads': give KIND/NAME, e.g. audiencegrouping/my-grouping or ag/my-grouping"),
    (["logs", "ag/ads", "--step", "merge"], 2, "osmf: AudienceGrouping/ads has no Job for step merge in its current run (stage Running:cluster)"),
    (["logs", "ag/ads", "--step", "shard"], 2, "osmf: --step 'shard': AudienceGrouping has the steps train, cluster, merge"),
])
async def test_cli_mistakes_are_one_line(cluster, tmp_path, capsys, argv, code, message):
    config = kubeconfig(tmp_path / "kubeconfig", cluster.url)
    await cluster.create(running_grouping())
    got, out, err = await osmf(capsys, *argv, "--kubeconfig", str(config))
    assert got == code and out == ""
    assert err.startswith(message) and err.count("\n") == 1


async def test_logs_of_the_running_step_each_line_prefixed_by_its_pod_when_sharded(cluster, tmp_path, capsys):
    config = kubeconfig(tmp_path / "kubeconfig", cluster.url)
    await cluster.create(running_grouping(shards=2))
    for index in (0, 1):
        pod = ko.pod(f"ads-cluster-1234abcd-{index}-x", ko.job_pod_labels("ads-cluster-1234abcd", index))
        await cluster.create(pod)
        cluster.server.pod_logs[("default", pod["metadata"]["name"])] = f"shard {index} starts\nshard {index} done\n".encode()
    other = ko.pod("ads-train-1234abcd-y", ko.job_pod_labels("ads-train-1234abcd"))
    await cluster.create(other)
    cluster.server.pod_logs[("default", "ads-train-1234abcd-y")] = b"training\n"
    code, out, err = await osmf(capsys, "logs", "ag/ads", "--kubeconfig", str(config))
    assert code == 0, err
    assert sorted(out.splitlines()) == ["[ads-cluster-1234abcd-0-x] shard 0 done", "[ads-cluster-1234abcd-0-x] shard 0 starts",
                                        "[ads-cluster-1234abcd-1-x] shard 1 done", "[ads-cluster-1234abcd-1-x] shard 1 starts"]
    code, out, _ = await osmf(capsys, "logs", "ag/ads", "--step", "train", "--kubeconfig", str(config))
    assert code == 0 and out == "training\n"
