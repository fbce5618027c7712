"""Drive the whole OSMF pipeline on the real control plane and record what happened.

The pipeline is examples/local-pipeline (the runnable demo) made cluster-shaped: its data comes
from a tiny synthetic world uploaded to SeaweedFS, every stage that can use a GPU asks for one
(`gpusPerNode: 1`), so its pods must land on the fake H100 nodes, and the campaign is served; the
pod bridge then runs the real job code. While it runs the driver records every status and pod placement, restarts the operator
at each stage boundary, takes S3 away for 30 s while one stage runs, and answers for KServe
(InferenceService status), whose controller is absent.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.chartinstall import InstalledOperator
from tests.cluster.controlplane import REPO, ControlPlane
from tests.cluster.podbridge import PodBridge

EXAMPLE = REPO / "examples" / "local-pipeline" / "pipeline.yaml"
S3_OUTAGE_SECONDS = 30.0
PIPELINE_TIMEOUT_S = 1800
#: The stage whose Job runs while S3 is unreachable.
OUTAGE_KIND = "GMLLMTraining"


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_),
                None)


def is_true(obj: dict[str, Any], type_: str) -> bool:
    c = condition(obj, type_)
    return c is not None and c["status"] == "True"


def done(obj: dict[str, Any]) -> bool:
    """Finished as kstatus/Argo CD see it: this generation observed and succeeded (and Ready)."""
    observed = obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
    ready = obj["kind"] != "AdImageCampaign" or is_true(obj, "Ready")
    return observed and is_true(obj, "Succeeded") and ready


def failed(obj: dict[str, Any]) -> bool:
    c = condition(obj, "Succeeded")
    return is_true(obj, "Stalled") or (c is not None and c["status"] == "False")


def cluster_pipeline(data_uri: str) -> list[dict[str, Any]]:
    """The local-pipeline example as applied to the cluster: S3 data, one GPU per GPU stage, and
    the campaign served through KServe (off in the local example, which has no KServe)."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        if doc["kind"] == "AudienceGrouping":
            doc["spec"]["data"]["uri"] = data_uri
        doc["spec"].setdefault("resources", {})["gpusPerNode"] = 1
        if doc["kind"] == "AdImageCampaign":
            doc["spec"].setdefault("serving", {})["enabled"] = True
        out.append(doc)
    return out


def upload_tiny_world(s3_server, prefix: str) -> str:
    """`osmf synth --tiny` into a temp folder, uploaded to the session's bucket; returns its URI."""
    from osmf_core.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        subprocess.run([sys.executable, "-m", "osmf_jobs.synth", str(world), "--tiny"], check=True,
                       capture_output=True, timeout=300)
        uri = f"s3://{s3_server.bucket}/{prefix}"
        open_store(uri).upload(str(world), "")
    return uri


@dataclass
class PodSeen:
    name: str
    node: str
    kind: str
    resource: str
    step: str
    gpus: int
    job: str
    hostname: str | None
    subdomain: str | None


@dataclass
class PipelineRecord:
    namespace: str
    docs: list[dict[str, Any]]
    statuses: list[tuple[float, str, str, int, dict[str, Any]]] = field(default_factory=list)
    pods: dict[str, PodSeen] = field(default_factory=dict)
    restarts: list[tuple[float, str]] = field(default_factory=list)
    outage: dict[str, Any] = field(default_factory=dict)
    final: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def history(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Every distinct status the resource went through, with its generation, oldest first."""
        return [{"generation": g, "status": s} for _, k, n, g, s in self.statuses
                if (k, n) == (kind, name)]


class PipelineDriver:
    def __init__(self, cp: ControlPlane, operator: InstalledOperator, bridge: PodBridge,
                 s3_server, namespace: str):
        self.cp, self.operator, self.bridge, self.s3 = cp, operator, bridge, s3_server
        self.ns = namespace
        self._last_rv: dict[tuple[str, str], str] = {}

    def run(self, docs: list[dict[str, Any]], timeout: float) -> PipelineRecord:
        record = PipelineRecord(self.ns, docs)
        start = time.monotonic()
        self.bridge.serve(self.ns)
        self.cp.apply(docs, namespace=self.ns)
        names = {(d["kind"], d["metadata"]["name"]) for d in docs}
        boundaries_done: set[tuple[str, str]] = set()
        outage_until: float | None = None
        while True:
            now = time.monotonic() - start
            objs = {(o["kind"], o["metadata"]["name"]): o
                    for o in self.cp.get_json("osmf", "-n", self.ns)["items"]}
            for key, obj in objs.items():
                rv = obj["metadata"]["resourceVersion"]
                if self._last_rv.get(key) != rv and "status" in obj:
                    self._last_rv[key] = rv
                    record.statuses.append((now, key[0], key[1], obj["metadata"]["generation"],
                                            copy.deepcopy(obj["status"])))
            self._record_pods(record)
            self._answer_for_kserve()
            bad = [k for k, o in objs.items() if failed(o)]
            if bad:
                raise AssertionError(f"pipeline failed at {bad}: "
                                     f"{json.dumps({f'{k[0]}/{k[1]}': objs[k].get('status') for k in bad})[:3000]}"
                                     f"\n--- operator log ---\n{self.operator.log()[-3000:]}")
            finished = {k for k, o in objs.items() if done(o)}
            if names <= finished:
                record.final = objs
                break
            # The S3 outage: while the first Job of OUTAGE_KIND exists and has not finished.
            if outage_until is None and not record.outage:
                job = self._first_job_of(OUTAGE_KIND)
                if job is not None:
                    self.s3.stop()
                    outage_until = now + S3_OUTAGE_SECONDS
                    record.outage = {"job": job, "start": now}
            elif outage_until is not None and now >= outage_until:
                self.s3.start()
                record.outage["end"] = time.monotonic() - start
                outage_until = None
            # Operator restarts at stage boundaries (not during the outage: one fault at a time).
            if outage_until is None:
                for key in sorted(finished - boundaries_done):
                    boundaries_done.add(key)
                    if finished != names:
                        self.operator.restart()
                        record.restarts.append((time.monotonic() - start, f"{key[0]}/{key[1]}"))
            if now > timeout:
                raise AssertionError(
                    f"pipeline not done after {timeout:.0f}s; finished {sorted(finished)}; "
                    f"statuses: {json.dumps({f'{k[0]}/{k[1]}': o.get('status', {}).get('stage') for k, o in objs.items()})}"
                    f"\n--- operator log ---\n{self.operator.log()[-3000:]}")
            time.sleep(1.0)
        if outage_until is not None:
            self.s3.start()
        record.jobs = {j["metadata"]["name"]: j for j in
                       self.cp.get_json("jobs", "-n", self.ns)["items"]}
        record.seconds = time.monotonic() - start
        return record

    def _first_job_of(self, kind: str) -> str | None:
        jobs = self.cp.get_json("jobs", "-n", self.ns, "-l", f"osmf.dev/kind={kind}")["items"]
        return jobs[0]["metadata"]["name"] if jobs else None

    def _record_pods(self, record: PipelineRecord) -> None:
        for pod in self.cp.get_json("pods", "-n", self.ns)["items"]:
            name = pod["metadata"]["name"]
            node = pod["spec"].get("nodeName")
            if name in record.pods or not node:
                continue
            labels = pod["metadata"].get("labels", {})
            limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
            record.pods[name] = PodSeen(
                name=name, node=node, kind=labels.get("osmf.dev/kind", ""),
                resource=labels.get("osmf.dev/name", ""), step=labels.get("osmf.dev/step", ""),
                gpus=int(limits.get("nvidia.com/gpu", 0)), job=labels.get("job-name", ""),
                hostname=pod["spec"].get("hostname"), subdomain=pod["spec"].get("subdomain"))

    def _answer_for_kserve(self) -> None:
        """What KServe's controller would do: mark each InferenceService Ready with its URL."""
        for isvc in self.cp.get_json("inferenceservices", "-n", self.ns)["items"]:
            if is_true(isvc, "Ready"):
                continue
            name = isvc["metadata"]["name"]
            set_isvc_ready(self.cp, self.ns, name)


def set_isvc_ready(cp: ControlPlane, ns: str, name: str, ready: bool = True) -> None:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    value = "True" if ready else "False"
    status = {"status": {
        "url": f"http://{name}.{ns}.example.com",
        "address": {"url": f"http://{name}-predictor.{ns}.svc.cluster.local"},
        "observedGeneration": 1,
        "conditions": [{"type": t, "status": value, "lastTransitionTime": at}
                       for t in ("IngressReady", "PredictorReady", "Ready")]}}
    cp.kubectl("patch", "inferenceservice", name, "-n", ns, "--subresource=status",
               "--type=merge", "-p", json.dumps(status))
