"""What GitOps tools see (issue 4, item 7): kstatus via `kubectl wait`, and the chart's Argo CD
Lua health checks run on the statuses the operator actually wrote during the pipeline run.
"""

from __future__ import annotations

import json

import pytest

from tests.cluster.controlplane import REPO, wait_for
from tests.cluster.pipeline import PIPELINE_TIMEOUT_S, condition, is_true

# The first test here may start the whole pipeline run (session fixture): allow for it.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(PIPELINE_TIMEOUT_S + 600)]

lupa = pytest.importorskip("lupa.lua51", reason="lupa (PyPI) provides the Lua interpreter")
HEALTH = REPO / "charts" / "osmf" / "health"


def health(kind: str, obj: dict) -> str:
    runtime = lupa.LuaRuntime()
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    return runtime.execute((HEALTH / f"{kind}.lua").read_text())["status"]


def as_object(kind: str, name: str, generation: int, status: dict) -> dict:
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "generation": generation}, "status": status}


def collapse(seq: list[str]) -> list[str]:
    return [s for i, s in enumerate(seq) if i == 0 or seq[i - 1] != s]


def test_argo_health_goes_from_progressing_to_healthy_through_the_run(pipeline):
    for kind, name in pipeline.final:
        history = pipeline.history(kind, name)
        assert history, f"no status recorded for {kind}/{name}"
        states = collapse([health(kind, as_object(kind, name, h["generation"], h["status"]))
                           for h in history])
        assert states[0] == "Progressing", (kind, name, states)
        assert states[-1] == "Healthy", (kind, name, states)
        assert "Degraded" not in states and "Suspended" not in states, (kind, name, states)


def test_statuses_follow_kstatus_throughout_the_run(pipeline):
    for kind, name in pipeline.final:
        for h in pipeline.history(kind, name):
            status = h["status"]
            types = [c["type"] for c in status.get("conditions", [])]
            assert len(types) == len(set(types)), f"{kind}/{name}: duplicate condition types"
            for c in status.get("conditions", []):
                assert c.get("observedGeneration", 0) <= status.get("observedGeneration", 0)
            obj = as_object(kind, name, h["generation"], status)
            if is_true(obj, "Succeeded"):
                assert not is_true(obj, "Stalled") and not is_true(obj, "Reconciling"), status
            if is_true(obj, "Stalled"):
                assert condition(obj, "Succeeded")["status"] != "True", status


def test_kubectl_wait_sees_every_resource_ready_and_current(pipeline, control_plane):
    result = control_plane.kubectl("wait", "osmf", "--all", "-n", pipeline.namespace,
                                   "--for=condition=Ready", "--timeout=30s", check=False,
                                   timeout=60)
    assert result.returncode == 0, result.stderr
    for obj in control_plane.get_json("osmf", "-n", pipeline.namespace)["items"]:
        if obj["metadata"]["name"] in ("gang", "one-too-many"):
            continue  # test_scheduling's, not the pipeline's
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


def test_a_spec_change_is_progressing_until_the_operator_observes_it(pipeline, control_plane):
    (name,) = [n for k, n in pipeline.final if k == "GroupDPORun"]
    ns = pipeline.namespace
    before = control_plane.get_json("groupdporun", name, "-n", ns)
    # A resources change: a new generation, but the same inputs (the run is a cache hit).
    control_plane.kubectl("patch", "groupdporun", name, "-n", ns, "--type=merge", "-p",
                          json.dumps({"spec": {"resources": {"cpu": "3"}}}))
    changed = control_plane.get_json("groupdporun", name, "-n", ns)
    generation = changed["metadata"]["generation"]
    assert generation == before["metadata"]["generation"] + 1
    if changed["status"]["observedGeneration"] < generation:
        assert health("GroupDPORun", changed) == "Progressing"
    result = control_plane.kubectl(
        "wait", f"groupdporun/{name}", "-n", ns,
        f"--for=jsonpath={{.status.observedGeneration}}={generation}", "--timeout=120s",
        check=False, timeout=150)
    assert result.returncode == 0, result.stderr
    after = wait_for("the new generation to be Healthy again",
                     lambda: (o := control_plane.get_json("groupdporun", name, "-n", ns))
                     and health("GroupDPORun", o) == "Healthy" and o, timeout=120)
    assert after["status"]["artifacts"]["output"] == before["status"]["artifacts"]["output"]


def test_an_invalid_spec_is_degraded_for_argo_and_stalled_for_kstatus(
        control_plane, operator, workload_ns):
    doc = {"apiVersion": "osmf.dev/v1alpha1", "kind": "AudienceGrouping",
           "metadata": {"name": "wrong-scheme"},
           "spec": {"data": {"uri": "ftp://example.com/logs"}, "userAttributes": ["age"]}}
    result = control_plane.kubectl("apply", "-n", workload_ns, "-f", "-", input=json.dumps(doc),
                                   check=False)
    if result.returncode != 0:
        pytest.fail(f"the schema already refuses it, so the operator's check is untested: "
                    f"{result.stderr.strip()}")
    obj = wait_for("the operator to stall the resource",
                   lambda: (o := control_plane.get_json("audiencegrouping", "wrong-scheme", "-n",
                                                        workload_ns)) and is_true(o, "Stalled") and o,
                   timeout=60)
    assert condition(obj, "Stalled")["reason"] == "InvalidSpec"
    assert "spec.data.uri" in condition(obj, "Stalled")["message"]
    assert health("AudienceGrouping", obj) == "Degraded"
    assert not control_plane.get_json("jobs", "-n", workload_ns)["items"]


