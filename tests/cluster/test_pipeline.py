"""The whole pipeline on the real control plane with the real job code (issue 4, items 5 and 6).

One run (the session's `pipeline` fixture, tests/cluster/pipeline.py) applies every stage at once;
the operator, installed from the chart with its RBAC only, runs each stage as Jobs whose pods the
pod bridge executes; artifacts go to SeaweedFS. Faults injected during that run: the operator is
restarted at every stage boundary, and S3 is unreachable for 30 s while the first training stage
runs. These tests read what the run recorded.
"""

from __future__ import annotations

import collections
import hashlib
from datetime import datetime

import pytest
from tests.cluster.controlplane import CPU_NODE, H100_NODES
from tests.cluster.pipeline import PIPELINE_TIMEOUT_S, S3_OUTAGE_SECONDS, condition

# The first test here may start the whole pipeline run (session fixture): allow for it.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(PIPELINE_TIMEOUT_S + 600)]

REF_KINDS = {"groupingRef": "AudienceGrouping", "datasetRef": "GAIPDataset",
             "initFromRef": "GMLLMTraining", "policyRef": "GMLLMTraining",
             "rewardModelRef": "GMLLMTraining"}


def dependencies(doc: dict) -> list[tuple[str, str]]:
    """(kind, name) of what a document references, read from its spec as a user would."""
    deps = []
    for field, ref in doc["spec"].items():
        if field.endswith("Ref") and isinstance(ref, dict):
            deps.append((ref.get("kind") or REF_KINDS[field], ref["name"]))
    return deps


def ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def test_every_stage_succeeds_and_the_campaign_serves(pipeline, control_plane):
    for (kind, name), obj in pipeline.final.items():
        status = obj["status"]
        assert condition(obj, "Succeeded")["status"] == "True", (kind, name, status)
        assert status["observedGeneration"] == obj["metadata"]["generation"]
        assert status["artifacts"]["output"]["uri"], (kind, name)
    (campaign,) = [o for (k, _), o in pipeline.final.items() if k == "AdImageCampaign"]
    assert condition(campaign, "Ready")["status"] == "True"
    isvcs = control_plane.get_json("inferenceservices", "-n", pipeline.namespace)["items"]
    assert len(isvcs) == 1
    isvc = isvcs[0]
    owner = isvc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("AdImageCampaign", campaign["metadata"]["name"])
    predictor = isvc["spec"]["predictor"]
    containers = predictor.get("containers", [])
    assert containers and containers[0]["name"] == "kserve-container"
    env = {e["name"]: e.get("value") for e in containers[0].get("env", [])}
    assert env.get("STORAGE_URI", "").startswith("s3://")
    assert campaign["status"]["children"]["url"] == isvc["status"]["url"]


def test_stages_start_only_after_their_dependencies_succeeded(pipeline):
    first_job = {}
    for job in pipeline.jobs.values():
        labels = job["metadata"]["labels"]
        key = (labels["osmf.dev/kind"], labels["osmf.dev/name"])
        created = ts(job["metadata"]["creationTimestamp"])
        first_job[key] = min(created, first_job.get(key, created))
    for doc in pipeline.docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key in first_job, f"{key} never made a Job"
        for dep in dependencies(doc):
            succeeded = ts(condition(pipeline.final[dep], "Succeeded")["lastTransitionTime"])
            assert first_job[key] >= succeeded, f"{key} started before {dep} succeeded"


def test_artifacts_are_in_s3_with_their_manifest_digest(pipeline, s3_server):
    from osmf_core.store import open_store

    for (kind, name), obj in pipeline.final.items():
        output = obj["status"]["artifacts"]["output"]
        prefix = f"s3://{s3_server.bucket}/runs/{pipeline.namespace}/{kind.lower()}/{name}/"
        assert output["uri"].startswith(prefix), output["uri"]
        manifest = open_store(output["uri"]).read_bytes("manifest.json")
        assert output["digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_gpu_stages_run_on_h100_nodes_and_cpu_steps_on_the_cpu_node(pipeline):
    gpu_pods = [p for p in pipeline.pods.values() if p.gpus > 0]
    cpu_pods = [p for p in pipeline.pods.values() if p.gpus == 0]
    assert gpu_pods and cpu_pods
    for pod in gpu_pods:
        assert pod.node in H100_NODES, f"{pod.name} ({pod.kind} {pod.step}) ran on {pod.node}"
    for pod in cpu_pods:
        assert pod.node == CPU_NODE, f"{pod.name} ({pod.kind} {pod.step}) ran on {pod.node}"


def test_operator_restarts_at_stage_boundaries_make_no_duplicate_jobs(pipeline, control_plane):
    stages = {(d["kind"], d["metadata"]["name"]) for d in pipeline.docs}
    # One restart per finished stage but the last (two stages finishing together count once).
    assert len(pipeline.restarts) >= len(stages) - 2, pipeline.restarts
    created = collections.Counter(
        e["objectRef"]["name"] for e in control_plane.audit_events()
        if e["verb"] == "create" and e["objectRef"].get("resource") == "jobs"
        and e["objectRef"].get("namespace") == pipeline.namespace
        and e.get("responseStatus", {}).get("code") == 201)
    assert set(pipeline.jobs) <= set(created)
    assert all(n == 1 for n in created.values()), {k: n for k, n in created.items() if n > 1}
    per_step = collections.defaultdict(list)
    for job in pipeline.jobs.values():
        labels = job["metadata"]["labels"]
        per_step[(labels["osmf.dev/kind"], labels["osmf.dev/name"],
                  labels["osmf.dev/step"])].append(job)
    for step, jobs in per_step.items():
        complete = [j for j in jobs if any(c["type"] == "Complete" and c["status"] == "True"
                                           for c in j["status"].get("conditions", []))]
        assert len(complete) == 1, f"{step}: {len(complete)} completed Jobs"


def test_s3_outage_during_a_stage_is_retried_and_the_stage_succeeds(pipeline, pod_bridge):
    outage = pipeline.outage
    assert outage and outage["end"] - outage["start"] >= S3_OUTAGE_SECONDS
    job = pipeline.jobs[outage["job"]]
    exits = [e for e in pod_bridge.exits(pipeline.namespace)
             if e["name"].startswith(outage["job"] + "-")]
    assert 75 in [e["exit_code"] for e in exits], \
        f"no pod of {outage['job']} exited with the retriable code 75: {exits}"
    assert exits[-1]["exit_code"] == 0
    assert any(c["type"] == "Complete" and c["status"] == "True"
               for c in job["status"]["conditions"])
