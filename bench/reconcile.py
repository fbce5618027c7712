"""Reconcile throughput: the pure core for 1,000 resources, and the kopf operator for 200 resources
against the in-process API emulator (with its RSS).

    python bench/reconcile.py [--core-resources 1000] [--operator-resources 200]

Baselines, measured in the same run:
- core: `parse_resource` of the same objects — the floor every reconcile pays before it decides;
  the ratio says what planning and deciding cost on top of parsing.
- operator: the bare API work of starting a run (create the resource, its ConfigMap and Job, write
  its status) done by one plain client against the same emulator; the ratio says what the
  operator (kopf, watches, observing children, the store, Events) costs on top of it.

The emulator (KMock with API-server semantics, tests/operator/emulator.py) runs in its own process;
the operator runs as in the operator tests (real kopf, in a thread). The machine's load is printed:
on a shared machine the absolute numbers move.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from osmf_core.api import KINDS, Kind, parse_resource  # noqa: E402
from osmf_core.layout import MANIFEST, Dataset  # noqa: E402
from osmf_operator.reconcile import Observed, ObservedJob, decide, plan_run, references  # noqa: E402
from osmf_operator.builders.pod import CONFIG_FILE  # noqa: E402
from osmf_operator.kube import Kube  # noqa: E402
from osmf_core.store import open_store  # noqa: E402
from tests.factories import body, resource, reward_body, succeeded  # noqa: E402
from tests.operator import kubeobjects as ko  # noqa: E402
from tests.operator.emulator import Cluster  # noqa: E402

NOW = "2026-06-01T12:00:00Z"
ROOT_URI = "s3://bench/osmf"


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load}, Python {sys.version.split()[0]}"


# ---- the core -----------------------------------------------------------------------------------


def core_bodies(count: int) -> list[dict[str, Any]]:
    """`count` objects spread over the five kinds (reward trainings among the GMLLMTrainings)."""
    kinds = list(KINDS)
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == Kind.GMLLM_TRAINING and i % 2:
            out.append(reward_body(f"grm-{i}"))
        else:
            out.append(body(kind, f"{kind.lower()}-{i}", shards=4) if "shards" in KINDS[kind].spec_model.model_fields
                       else body(kind, f"{kind.lower()}-{i}"))
    return out


def dependencies(res) -> dict[str, Any]:
    found = {}
    for ref in references(res):
        dep = parse_resource(reward_body(ref.name)) if ref.requires_task == "reward" else resource(ref.kind, ref.name)
        found[ref.role] = succeeded(dep, uri=f"{ROOT_URI}/{ref.name}", inputs=[
            {"name": "data", "kind": "Dataset", "uri": "s3://bench/world", "digest": "sha256:d"},
            {"name": "grouping", "kind": Kind.AUDIENCE_GROUPING, "uri": f"{ROOT_URI}/grouping", "digest": "sha256:g"},
            {"name": "policy", "kind": Kind.GMLLM_TRAINING, "uri": f"{ROOT_URI}/gmllm", "digest": "sha256:p"},
        ])
    return found


def reconcile_three_ways(res, found) -> int:
    """A fresh resource, the same one with its first step running (with progress), and with its manifest."""
    plan = plan_run(res, found, ROOT_URI, data_fingerprint="sha256:data")
    first = decide(Observed(resource=res, plan=plan), NOW)
    step = res.info.steps[0].name
    job = ObservedJob(name=first.create_jobs[0].name, step=step, input_hash=plan.input_hash, phase="Running", active_pods=1)
    running = res.__class__(info=res.info, metadata=res.metadata, spec=res.spec, status=first.status, body=res.body)
    progress = [{"step": step, "current": 10, "total": 40, "percent": 25.0, "metrics": {"loss": 0.5}, "updated": NOW}]
    decide(Observed(resource=running, plan=plan, jobs=[job], progress=progress), NOW)
    jobs = [ObservedJob(name=f"j-{s.name}", step=s.name, input_hash=plan.input_hash, phase="Succeeded") for s in res.info.steps]
    decide(Observed(resource=running, plan=plan, jobs=jobs, manifest=({"metrics": {"auroc": 0.7}}, "sha256:m")), NOW)
    return 3


def bench_core(count: int) -> None:
    bodies = core_bodies(count)
    started = time.perf_counter()
    parsed = [parse_resource(b) for b in bodies]
    parse_s = time.perf_counter() - started
    found = [dependencies(res) for res in parsed]
    started = time.perf_counter()
    decisions = sum(reconcile_three_ways(res, deps) for res, deps in zip(parsed, found))
    core_s = time.perf_counter() - started
    print(f"core: {count} resources × 3 states = {decisions} decisions in {core_s:.2f} s "
          f"→ {count / core_s:,.0f} resources/s, {decisions / core_s:,.0f} decisions/s, {1e3 * core_s / decisions:.2f} ms each")
    print(f"  baseline parse_resource: {count / parse_s:,.0f} objects/s ({1e3 * parse_s / count:.2f} ms each); "
          f"one decision costs {core_s / decisions / (parse_s / count):.1f}× one parse")


# ---- the operator against the emulator ----------------------------------------------------------


def rss_mib(pid: int | None = None) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


class Emulator:
    """The API emulator in its own process, as an API server would be: the operator's process, its
    RSS and its GIL are the operator's alone."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.operator.emulator"], cwd=ROOT,
                                        stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.stop()
            raise RuntimeError("the emulator did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(20)


def wait(what: str, check, timeout: float = 3600.0, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def plain_client_baseline(kube: Kube, count: int) -> float:
    """The bare writes of starting `count` runs, from one client, no operator (another namespace)."""
    started = time.perf_counter()
    for i in range(count):
        meta = {"name": f"baseline-{i}", "namespace": "baseline"}
        kube.create({"apiVersion": "osmf.dev/v1alpha1", "kind": Kind.AUDIENCE_GROUPING, "metadata": meta, "spec": {}})
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": f"baseline-{i}-config"}, "data": {}})
        kube.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {**meta, "name": f"baseline-{i}-train"}, "spec": {}})
        kube.patch_status(Kind.AUDIENCE_GROUPING, "baseline", meta["name"], {"stage": "Running:train"}, None)
    return time.perf_counter() - started


def items(kube: Kube, kind: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return kube.list(kind, "default", labels or {})


def statuses(kube: Kube) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o.get("status") or {} for o in items(kube, Kind.AUDIENCE_GROUPING)}


def jobs_by_step(kube: Kube, step: str) -> list[dict[str, Any]]:
    return items(kube, "Job", {"osmf.dev/step": step})


def write_manifest(kube: Kube, job: dict[str, Any]) -> None:
    """What the merge step's pod writes last."""
    config_map = kube.get("ConfigMap", "default", f"{job['metadata']['name']}-config")
    config = json.loads(config_map["data"][CONFIG_FILE])
    store = open_store(config["run"]["uri"])
    store.write_json(MANIFEST, {"kind": config["kind"], "name": config["metadata"]["name"],
                                       "inputHash": config["run"]["inputHash"], "metrics": {"auroc": 0.7}})


def bench_operator(count: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    emulator = Emulator()
    try:
        with tempfile.TemporaryDirectory(prefix="osmf-bench-") as tmp:
            data = Path(tmp) / "world"
            data.mkdir()
            (data / Dataset.table_file(Dataset.USERS)).write_bytes(b"u")
            kube = Kube.for_server(emulator.url)
            baseline_s = plain_client_baseline(kube, count)
            cluster = Cluster(server=None, url=emulator.url, artifacts=Path(tmp) / "artifacts")
            rss_before = rss_mib()
            operator = asyncio.run(cluster.start_operator(requeueSeconds=30))
            names = [f"ag-{i:04d}" for i in range(count)]
            started = time.perf_counter()
            for name in names:
                kube.create(body(Kind.AUDIENCE_GROUPING, name, data={"uri": data.as_uri()}))
            def started_all() -> bool:
                if len(jobs_by_step(kube, "train")) < count:
                    return False
                current = statuses(kube)
                return len(current) == count and all(s.get("run") for s in current.values())

            wait("the first Job and a status for every resource", started_all)
            start_s = time.perf_counter() - started

            steps = KINDS[Kind.AUDIENCE_GROUPING].steps
            started = time.perf_counter()
            for index, step in enumerate(steps):
                for job in jobs_by_step(kube, step.name):
                    if index == len(steps) - 1:
                        write_manifest(kube, job)
                    kube.merge_patch("Job", "default", job["metadata"]["name"], {"status": ko.job_succeeded()}, "status")
                if index < len(steps) - 1:
                    wait(f"{count} {steps[index + 1].name} Jobs", lambda: len(jobs_by_step(kube, steps[index + 1].name)) >= count)
            wait("every resource Succeeded", lambda: all(s.get("stage") == "Succeeded" for s in statuses(kube).values()))
            finish_s = time.perf_counter() - started
            rss_after = rss_mib()
            reconciles = operator.metrics.registry.get_sample_value("osmf_reconcile_total", {"kind": Kind.AUDIENCE_GROUPING})
            seconds = operator.metrics.registry.get_sample_value("osmf_reconcile_duration_seconds_sum", {"kind": Kind.AUDIENCE_GROUPING})
            emulator_rss = rss_mib(emulator.process.pid)
            asyncio.run(cluster.stop_operators())
    finally:
        emulator.stop()
    print(f"operator: {count} AudienceGroupings, the emulator in a separate process")
    print(f"  start (apply → first Job + status for all): {start_s:.1f} s → {count / start_s:.1f} resources/s; "
          f"baseline (one plain client doing just those writes): {baseline_s:.1f} s → ratio {start_s / baseline_s:.1f}×")
    print(f"  run to Succeeded ({len(steps)} steps each, Job statuses set by the bench): {finish_s:.1f} s "
          f"→ {count * len(steps) / finish_s:.1f} steps/s")
    print(f"  {reconciles:.0f} reconciles ({reconciles / count:.1f} per resource), {seconds / reconciles * 1e3:.0f} ms each on average")
    print(f"  RSS of the operator process: {rss_before:.0f} MiB before kopf started, {rss_after:.0f} MiB with {count} "
          f"resources reconciled (+{rss_after - rss_before:.0f} MiB); the emulator process: {emulator_rss:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core-resources", type=int, default=1000)
    parser.add_argument("--operator-resources", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    bench_core(args.core_resources)
    if args.operator_resources:
        bench_operator(args.operator_resources)
    return 0


if __name__ == "__main__":
    sys.exit(main())
