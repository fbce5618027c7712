"""The local runtime: the same resources, the same reconcile core, jobs as local subprocesses."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from osmf_core.api import Resource
from osmf_core.layout import ArtifactRoot, GroupDPO, join
from osmf_core.store import open_store, read_manifest

from ..reconcile import Decision, JobRequest, Observed, ObservedJob, ObservedService, decide, plan_run, references
from ..reconcile.plan import RunPlan, topological
from .executor import LocalExecutor
from .report import StageReport, render_report

LOCAL_SERVING_MESSAGE = "serving needs a cluster with KServe; locally, start the predictor from the campaign's artifact directory"


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_uid(resource: Resource) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "osmf-local/" + "/".join(resource.key)))


@dataclass
class LocalRun:
    resources: list[Resource]
    artifact_root: str
    jobs: dict[tuple, list[ObservedJob]] = field(default_factory=dict)
    # (kind, namespace, name) → step → (optimizer step, loss) as the running step's progress.json said
    curves: dict[tuple, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)

    def succeeded(self) -> bool:
        return all(status_of(r, "Succeeded") == "True" for r in self.resources)


def status_of(resource: Resource, type_: str) -> str | None:
    return next((c.status for c in resource.status.conditions if c.type == type_), None)


def absolute_root(root: str) -> str:
    if "://" in root:
        return root
    return Path(root).absolute().as_uri()


class LocalRuntime:
    def __init__(self, artifact_root: str, console: Console | None = None, workdir: Path | None = None,
                 executor: LocalExecutor | None = None):
        self.artifact_root = absolute_root(artifact_root)
        self.console = console or Console()
        root_store = open_store(self.artifact_root)
        local = root_store.local_path()
        self.workdir = Path(workdir) if workdir else (local / ".osmf-local" if local else Path.cwd() / ".osmf-local")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._run: LocalRun | None = None
        self.executor = executor or LocalExecutor(self.workdir, on_progress=self.show_progress)

    # -- display --------------------------------------------------------------------------------

    def show_progress(self, request: JobRequest, docs: list[dict]) -> None:
        self.record_curve(request, docs)
        if self._progress is None:
            return
        if request.name not in self._tasks:
            label = f"{request.kind}/{request.config['metadata']['name']} {request.step.name}"
            self._tasks[request.name] = self._progress.add_task(label, total=100, detail="")
        percent = sum(d.get("percent", 0.0) for d in docs) / max(len(docs), 1) if docs else 0.0
        metrics = docs[0].get("metrics", {}) if docs else {}
        detail = " ".join(f"{k}={v:.3g}" for k, v in list(metrics.items())[:3])
        self._progress.update(self._tasks[request.name], completed=percent, detail=detail)

    def record_curve(self, request: JobRequest, docs: list[dict]) -> None:
        """The loss of a one-pod step at each progress report (the report's training curve)."""
        if self._run is None or len(docs) != 1 or request.step.sharded:
            return
        loss, step = (docs[0].get("metrics") or {}).get("loss"), docs[0].get("current")
        if isinstance(loss, (int, float)) and isinstance(step, (int, float)) and not isinstance(loss, bool):
            meta = request.config["metadata"]
            points = self._run.curves.setdefault((request.kind, meta["namespace"], meta["name"]), {}).setdefault(request.step.name, [])
            if not points or points[-1][0] != step:
                points.append((float(step), float(loss)))

    # -- the loop -------------------------------------------------------------------------------

    def observe(self, run: LocalRun, resource: Resource) -> Observed:
        found = {}
        by_key = {(r.kind, r.name): r for r in run.resources}
        for ref in references(resource):
            found[ref.role] = by_key.get((ref.kind, ref.name))
        data_uri = resource.info.raw_data_uri(resource.spec)
        fingerprint = data_fingerprint(data_uri) if data_uri is not None else None
        plan = plan_run(resource, found, self.artifact_root, fingerprint)
        jobs = run.jobs.get(resource.key, [])
        manifest = read_manifest(open_store(plan.run_uri)) if isinstance(plan, RunPlan) else None
        service = None
        if resource.info.serving(resource.spec) is not None:
            service = ObservedService(name=resource.name, ready=False, reason="NotServedLocally", message=LOCAL_SERVING_MESSAGE)
        return Observed(resource=resource, plan=plan, jobs=jobs, manifest=manifest, service=service)

    def reconcile(self, run: LocalRun, resource: Resource) -> bool:
        """Reconcile one resource until it stops creating jobs; True when something ran."""
        ran = False
        while True:
            decision: Decision = decide(self.observe(run, resource), now_rfc3339())
            resource.status = decision.status
            for event in decision.events:
                if event.reason in ("CacheHit", "Succeeded", "JobCreated") or event.type == "Warning":
                    style = "yellow" if event.type == "Warning" else "dim"
                    self.console.print(f"[{style}]{resource.kind}/{resource.name}: {event.message}[/]")
            if not decision.create_jobs:
                return ran
            for request in decision.create_jobs:
                observed = self.executor.run(request)
                run.jobs.setdefault(resource.key, []).append(observed)
                if observed.phase == "Succeeded" and self._progress is not None and request.name in self._tasks:
                    self._progress.update(self._tasks[request.name], completed=100)
                ran = True

    def run(self, resources: list[Resource]) -> LocalRun:
        for resource in resources:
            resource.metadata.uid = resource.metadata.uid or local_uid(resource)
        run = LocalRun(resources=topological(resources), artifact_root=self.artifact_root)
        self._run = run
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                      TimeElapsedColumn(), TextColumn("{task.fields[detail]}"), console=self.console,
                      transient=False) as progress:
            self._progress = progress
            for _ in range(len(run.resources) + 1):
                if not any([self.reconcile(run, resource) for resource in run.resources]):
                    break
            self._progress = None
        return run

    # -- the end --------------------------------------------------------------------------------

    def summary_table(self, run: LocalRun) -> Table:
        table = Table(title=f"OSMF local run — artifacts in {self.artifact_root}")
        for column in ("Resource", "Stage", "Succeeded", "Ready", "Key metric", "Message"):
            table.add_column(column, overflow="fold")
        for resource in run.resources:
            status = resource.status
            message = next((c.message for c in status.conditions
                            if c.type in ("Stalled", "Ready") and c.status != "True" and c.message), "")
            table.add_row(f"{resource.kind}/{resource.name}", status.stage, status_of(resource, "Succeeded") or "",
                          status_of(resource, "Ready") or "", status.summary or "", message[:160])
        return table

    def write_report(self, run: LocalRun) -> Path | None:
        """summary.json and report.html beside the artifacts (what the report shows: local/report.py)."""
        local = open_store(self.artifact_root).local_path()
        if local is None:
            return None
        summary = [{
            "kind": r.kind, "name": r.name, "stage": r.status.stage,
            "conditions": {c.type: c.status for c in r.status.conditions},
            "conditionDetails": {c.type: {"status": c.status, "reason": c.reason, "message": c.message} for c in r.status.conditions},
            "metrics": r.status.metrics,
            "artifact": r.status.artifacts.output.uri if r.status.artifacts.output else None,
        } for r in run.resources]
        (local / ArtifactRoot.SUMMARY).write_text(json.dumps(summary, indent=2))
        stages = [self.stage_report(run, resource, local) for resource in run.resources]
        evaluation = local / ArtifactRoot.EVALUATION_DIR
        lift_path = evaluation / ArtifactRoot.CAMPAIGN_LIFT
        page = render_report("OSMF local run", self.artifact_root, stages, lift=read_json_file(lift_path),
                             grouping=read_json_file(evaluation / ArtifactRoot.GROUPING_EVALUATION),
                             lift_href=relative_href(lift_path.as_uri(), local) if lift_path.is_file() else None)
        path = local / ArtifactRoot.REPORT_HTML
        path.write_text(page)
        return path

    def stage_report(self, run: LocalRun, resource: Resource, local: Path) -> StageReport:
        output = resource.status.artifacts.output
        directory = open_store(output.uri).local_path() if output is not None else None
        stage = StageReport(
            kind=resource.kind, name=resource.name, stage=resource.status.stage,
            conditions=[{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message} for c in resource.status.conditions],
            metrics=dict(resource.status.metrics), artifact_uri=output.uri if output else None,
            artifact_href=relative_href(output.uri, local) if output else None,
            curves=run.curves.get(resource.key, {}),
        )
        if output is not None and resource.info.report_page and directory is not None and (directory / resource.info.report_page).is_file():
            stage.gallery_href = relative_href(join(output.uri, resource.info.report_page), local)
        if directory is not None:
            rounds = read_json_file(directory / GroupDPO.EVAL_ROUNDS)
            stage.rounds = rounds if isinstance(rounds, list) else []
        return stage


def relative_href(uri: str, root: Path) -> str:
    """A link from report.html at `root` to `uri` (relative when it lies below the root, so the folder can move)."""
    path = open_store(uri).local_path()
    if path is None:
        return uri
    try:
        return path.relative_to(root).as_posix() + ("/" if path.is_dir() else "")
    except ValueError:
        return path.as_uri()


def read_json_file(path: Path):
    """A JSON file another part wrote, or None when it is missing or unreadable (the report drops that part)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def data_fingerprint(uri: str) -> str | None:
    try:
        return open_store(uri).fingerprint()
    except (OSError, ValueError):
        return None  # the job reports the unreadable data with its field name
