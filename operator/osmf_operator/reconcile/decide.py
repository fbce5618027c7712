"""The reconcile core: from what was observed, decide the actions and the new status.

Shared by the kopf operator and the local runtime. Pure: no clock (`now` is passed in), no I/O,
no Kubernetes client. The caller observes children *before* reading the manifest, so a child that
succeeded always has its manifest visible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from osmf_core.api import JobConfig, Resource, Role, Step
from osmf_core.api.common import ArtifactRef, Artifacts, ChildRef, Children, OsmfStatus, Progress, RunState
from osmf_core.layout import Campaign, join

from .conditions import ConditionSet
from .plan import Blocked, RunPlan
ChildPhase = Literal["Pending", "Running", "Queued", "Succeeded", "Failed"]

PROGRESS_WRITE_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class ObservedJob:
    """A child Job as the executor sees it."""

    name: str
    step: str
    input_hash: str
    phase: ChildPhase
    reason: str = ""
    message: str = ""
    failed_pods: int = 0
    active_pods: int = 0
    pending_reason: str = ""  # e.g. Unschedulable: 0/3 nodes have enough nvidia.com/gpu


@dataclass(frozen=True)
class ObservedService:
    """The campaign's InferenceService and its predictor pods."""

    name: str
    ready: bool
    url: str | None = None
    reason: str = ""
    message: str = ""
    pod_failure_reason: str = ""  # CrashLoopBackOff, OOMKilled, ImagePullBackOff, Unschedulable
    pod_failure_message: str = ""


@dataclass(frozen=True)
class JobRequest:
    """One Job to create: the executor turns it into manifests or a local subprocess."""

    name: str
    kind: str
    step: Step
    shards: int
    config: dict[str, Any]
    resources: Any
    run_policy: Any
    input_hash: str


@dataclass(frozen=True)
class ServiceRequest:
    name: str
    storage_uri: str
    grouping_uri: str
    serving: Any


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Decision:
    status: OsmfStatus
    create_jobs: list[JobRequest] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    apply_service: ServiceRequest | None = None
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


@dataclass
class Observed:
    resource: Resource
    plan: Blocked | RunPlan
    jobs: list[ObservedJob] = field(default_factory=list)
    manifest: tuple[dict[str, Any], str] | None = None  # (manifest, digest) at plan.run_uri
    progress: list[dict[str, Any]] = field(default_factory=list)  # progress.json docs of the running step
    service: ObservedService | None = None
    invalid_spec: str | None = None  # set by the shell when the spec did not validate
    code_version: str = "0.0.0"


# Indexed Jobs name their pods' hostnames `<job>-<index>` (a DNS label ≤ 63): keep room for "-1023".
JOB_NAME_MAX = 58


def job_name(resource: Resource, step: str, digest: str) -> str:
    """`<name>-<step>-<hash8>`, shortened with a hash of the full name to stay ≤ JOB_NAME_MAX."""
    suffix = f"-{step}-{digest[:8]}"
    name = resource.name.replace(".", "-")
    if len(name) + len(suffix) > JOB_NAME_MAX:
        short = hashlib.sha256(name.encode()).hexdigest()[:6]
        name = f"{name[: JOB_NAME_MAX - len(suffix) - 7].rstrip('-')}-{short}"
    return f"{name}{suffix}"


def service_name(resource: Resource) -> str:
    """KServe wants a DNS-1035 label (a letter first) short enough for its derived route names."""
    name = resource.name.replace(".", "-")
    if not name[0].isalpha():
        name = f"aic-{name}"
    return name[:45].rstrip("-")


def seconds_between(earlier: str | None, later: str) -> float:
    if not earlier:
        return float("inf")
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (datetime.strptime(later, fmt) - datetime.strptime(earlier, fmt)).total_seconds()


def build_job_config(obs: Observed, plan: RunPlan, step: Step) -> dict[str, Any]:
    resource = obs.resource
    config = JobConfig(
        kind=resource.kind,
        metadata={
            "name": resource.name,
            "namespace": resource.namespace,
            "uid": resource.metadata.uid,
            "generation": resource.metadata.generation,
        },
        spec=resource.spec.wire(),
        step=step.name,
        shards=getattr(resource.spec, "shards", 1),  # every step: merge needs the count it merges
        run={"uri": plan.run_uri, "inputHash": plan.input_hash},
        inputs=plan.inputs,
        code_version=obs.code_version,
    )
    return config.model_dump(by_alias=True, mode="json", exclude_none=True)


def job_request(obs: Observed, plan: RunPlan, step: Step) -> JobRequest:
    spec = obs.resource.spec
    config = build_job_config(obs, plan, step)
    return JobRequest(
        name=job_name(obs.resource, step.name, plan.input_hash),
        kind=obs.resource.kind,
        step=step,
        shards=config["shards"] if step.sharded else 1,  # pods of this step
        config=config,
        resources=spec.resources,
        run_policy=spec.run_policy,
        input_hash=plan.input_hash,
    )


def merged_progress(resource: Resource, step: Step, docs: list[dict[str, Any]], completed: int) -> Progress:
    steps = len(resource.info.steps)
    fractions = [float(d.get("percent", 0.0)) / 100.0 for d in docs] or [0.0]
    step_fraction = sum(fractions) / max(len(fractions), 1)
    newest = max(docs, key=lambda d: d.get("updated") or "", default={})
    return Progress(
        step=step.name,
        percent=round(100.0 * (completed + step_fraction) / steps, 1),
        current=sum(int(d.get("current", 0)) for d in docs),
        total=sum(int(d.get("total", 0)) for d in docs),
        eta_seconds=max((d["etaSeconds"] for d in docs if d.get("etaSeconds") is not None), default=None),
        metrics=newest.get("metrics") or {},
        updated=newest.get("updated"),
    )


def summary_of(resource: Resource, metrics: dict[str, Any]) -> str | None:
    for name in resource.info.key_metrics:
        value = metrics.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not value.is_integer():
            return f"{name}={value:.3f}"
        return f"{name}={int(value)}"
    return None


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Reconciler:
    """One decision for one resource; a fresh instance per reconcile."""

    def __init__(self, obs: Observed, now: str):
        self.obs = obs
        self.now = now
        self.resource = obs.resource
        old = obs.resource.status
        self.status = OsmfStatus(
            observed_generation=obs.resource.metadata.generation,
            conditions=[c.model_copy() for c in old.conditions],
            stage=old.stage,
            progress=old.progress,
            metrics=dict(old.metrics),
            summary=old.summary,
            artifacts=old.artifacts.model_copy(deep=True),
            children=old.children.model_copy(deep=True),
            run=old.run.model_copy(deep=True) if old.run else None,
        )
        self.conditions = ConditionSet(self.status.conditions, obs.resource.metadata.generation, now)
        self.decision = Decision(status=self.status)

    # -- outcomes -------------------------------------------------------------------------------

    def event(self, type_: str, reason: str, message: str) -> None:
        self.decision.events.append(Event(type_, reason, message))

    def set_stage(self, stage: str) -> None:
        if stage != self.status.stage:
            self.event("Normal", "StageChanged", f"stage {self.status.stage} → {stage}")
        self.status.stage = stage

    def waiting(self, blocked: Blocked) -> Decision:
        c = self.conditions
        if blocked.stalled:
            c.set("Stalled", "True", blocked.reason, blocked.message)
            c.set("Ready", "False", blocked.reason, blocked.message)
            self.set_stage("Stalled")
        else:
            c.set("Stalled", "False", "NotStalled", "")
            c.set("Ready", "False", blocked.reason, blocked.message)
            self.set_stage("Waiting")
        c.set_if_absent("Succeeded", "Unknown", "Pending", "not started")
        c.set("Reconciling", "False", blocked.reason, "")
        c.set("Queued", "False", "NotQueued", "")
        return self.decision

    def invalid(self, message: str) -> Decision:
        c = self.conditions
        c.set("Stalled", "True", "InvalidSpec", message)
        c.set("Ready", "False", "InvalidSpec", message)
        c.set("Succeeded", "False", "InvalidSpec", message)
        c.set("Reconciling", "False", "InvalidSpec", "")
        c.set("Queued", "False", "NotQueued", "")
        self.set_stage("Failed")
        return self.decision

    def succeeded(self, plan: RunPlan, manifest: dict[str, Any], digest: str, cache_hit: bool) -> Decision:
        c = self.conditions
        reason = "CacheHit" if cache_hit else "Succeeded"
        message = "outputs for these inputs already exist; nothing ran" if cache_hit else "all steps completed"
        metrics = numeric_metrics(manifest.get("metrics", {}))
        if c.get_status("Succeeded") != "True":
            self.event("Normal", reason, f"{message}; {summary_of(self.resource, metrics) or ''}".strip("; "))
        self.status.metrics = metrics
        self.status.summary = summary_of(self.resource, metrics)
        self.status.artifacts = Artifacts(
            input_hash=plan.input_hash,
            inputs=[ArtifactRef(name=role, kind=a.kind, uri=a.uri, digest=a.digest) for role, a in sorted(plan.inputs.items())],
            output=ArtifactRef(name="output", kind=self.resource.kind, uri=plan.run_uri, digest=digest),
        )
        run = self.run_state(plan)
        run.completed_steps = [s.name for s in self.resource.info.steps]
        run.completion_time = run.completion_time or manifest.get("endTime") or self.now
        if self.status.progress is not None:
            self.status.progress = self.status.progress.model_copy(update={"percent": 100.0})
        c.set("Succeeded", "True", reason, message)
        c.set("Stalled", "False", "NotStalled", "")
        c.set("Reconciling", "False", reason, "")
        c.set("Queued", "False", "NotQueued", "")
        self.set_stage("Succeeded")
        serving = self.resource.info.serving(self.resource.spec)
        if serving is not None:
            return self.serve(plan, serving)
        self.forget_service()
        c.set("Ready", "True", reason, message)
        return self.decision

    def forget_service(self) -> None:
        """Serving is off (or was turned off): the executor removes the InferenceService, status stops naming it."""
        self.status.children.objects = [o for o in self.status.children.objects if o.kind != "InferenceService"]
        self.status.children.url = None
        if self.conditions.find("ServingReady") is not None:
            self.conditions.set("ServingReady", "False", "ServingDisabled", "spec.serving.enabled is false")

    def serve(self, plan: RunPlan, serving: Any) -> Decision:
        """Campaign images are done; Ready waits for the InferenceService and its pods."""
        c = self.conditions
        name = service_name(self.resource)
        grouping = plan.inputs.get(Role.GROUPING)
        self.decision.apply_service = ServiceRequest(
            name=name, storage_uri=join(plan.run_uri, Campaign.SERVING_DIR),  # campaign.json alone (the job writes it there)
            grouping_uri=grouping.uri if grouping else "", serving=serving,
        )
        self.remember_child("InferenceService", name, None)
        svc = self.obs.service
        if svc is not None and svc.url:
            self.status.children.url = svc.url
        if svc is not None and svc.pod_failure_reason:
            message = f"predictor pod: {svc.pod_failure_reason}: {svc.pod_failure_message}".strip(": ")
            if not c.is_("ServingReady", "False", svc.pod_failure_reason):
                self.event("Warning", svc.pod_failure_reason, message)
            c.set("ServingReady", "False", svc.pod_failure_reason, message)
            c.set("Ready", "False", svc.pod_failure_reason, message)
            self.decision.requeue_after = 30.0
        elif svc is not None and svc.ready:
            c.set("ServingReady", "True", "InferenceServiceReady", svc.url or "")
            c.set("Ready", "True", "Serving", f"images complete; serving at {svc.url}")
        else:
            reason = (svc.reason if svc and svc.reason else "InferenceServiceNotReady")
            message = (svc.message if svc and svc.message else f"waiting for InferenceService {name}")
            c.set("ServingReady", "False", reason, message)
            c.set("Ready", "False", reason, message)
            self.decision.requeue_after = 10.0
        return self.decision

    def failed(self, job: ObservedJob) -> Decision:
        c = self.conditions
        invalid = job.reason in ("PodFailurePolicy", "InvalidInput")
        reason = "InvalidInput" if invalid else (job.reason or "JobFailed")
        message = f"job {job.name} (step {job.step}) failed: {job.message or job.reason}"
        if c.get_status("Stalled") != "True":
            self.event("Warning", reason, message)
        c.set("Succeeded", "False", reason, message)
        c.set("Stalled", "True", reason, message)
        c.set("Ready", "False", reason, message)
        c.set("Reconciling", "False", reason, "")
        c.set("Queued", "False", "NotQueued", "")
        self.set_stage("Failed")
        return self.decision

    # -- running ---------------------------------------------------------------------------------

    def run_state(self, plan: RunPlan) -> RunState:
        run = self.status.run
        if run is None or run.input_hash != plan.input_hash:
            run = RunState(input_hash=plan.input_hash, start_time=self.now)
            self.status.run = run
            self.status.children = Children()
            self.status.progress = None
        return run

    def remember_child(self, kind: str, name: str, step: str | None) -> None:
        if not any(o.kind == kind and o.name == name for o in self.status.children.objects):
            self.status.children.objects.append(ChildRef(kind=kind, name=name, step=step))

    def advance(self, plan: RunPlan) -> Decision:
        c = self.conditions
        run = self.run_state(plan)
        self.status.artifacts = Artifacts(
            input_hash=plan.input_hash,
            inputs=[ArtifactRef(name=role, kind=a.kind, uri=a.uri, digest=a.digest) for role, a in sorted(plan.inputs.items())],
            output=None,
        )
        current = {job.step: job for job in self.obs.jobs if job.input_hash == plan.input_hash}
        self.decision.delete_jobs = [
            job.name for job in self.obs.jobs if job.input_hash != plan.input_hash and job.phase in ("Pending", "Running", "Queued")
        ]
        for step in self.resource.info.steps:
            if step.name in run.completed_steps:
                continue
            job = current.get(step.name)
            if job is not None and job.phase == "Succeeded":
                run.completed_steps.append(step.name)
                self.event("Normal", "StepSucceeded", f"step {step.name} succeeded")
                continue
            if job is not None and job.phase == "Failed":
                return self.failed(job)
            if job is None:
                return self.create(plan, step)
            return self.running(plan, step, job)
        # Every step's Job succeeded but the manifest is not there: the last step broke its contract.
        return self.failed(ObservedJob(
            name=current[self.resource.info.steps[-1].name].name if current else "", step=self.resource.info.steps[-1].name,
            input_hash=plan.input_hash, phase="Failed", reason="MissingManifest",
            message=f"the last step finished without writing {plan.run_uri}/manifest.json",
        ))

    def create(self, plan: RunPlan, step: Step) -> Decision:
        c = self.conditions
        request = job_request(self.obs, plan, step)
        self.decision.create_jobs.append(request)
        self.remember_child("Job", request.name, step.name)
        self.event("Normal", "JobCreated", f"created job {request.name} for step {step.name}")
        c.set("Reconciling", "True", "CreatingJob", f"creating job {request.name} for step {step.name}")
        c.set("Ready", "False", "CreatingJob", f"creating job {request.name}")
        c.set("Stalled", "False", "NotStalled", "")
        c.set("Queued", "False", "NotQueued", "")
        c.set_if_absent("Succeeded", "Unknown", "Running", "")
        if c.get_status("Succeeded") != "Unknown":
            c.set("Succeeded", "Unknown", "Running", f"step {step.name} is starting")
        self.set_stage(f"Running:{step.name}")
        self.decision.requeue_after = 5.0
        return self.decision

    def running(self, plan: RunPlan, step: Step, job: ObservedJob) -> Decision:
        c = self.conditions
        run = self.status.run
        self.remember_child("Job", job.name, step.name)
        c.set("Reconciling", "False", "JobRunning", "")
        c.set("Stalled", "False", "NotStalled", "")
        c.set("Succeeded", "Unknown", "Running", f"step {step.name} is running")
        if job.phase == "Queued":
            c.set("Queued", "True", job.reason or "WaitingForQuota", job.message or "waiting for Kueue to admit the job")
            c.set("Ready", "True", "Queued", f"job {job.name} is queued")
            self.set_stage("Queued")
        elif job.phase == "Pending" and job.pending_reason:
            c.set("Queued", "False", "NotQueued", "")
            c.set("Ready", "True", "PodsPending", f"job {job.name} pods are pending: {job.pending_reason}")
            c.set("Scheduled", "False", "Unschedulable", job.pending_reason)
            self.set_stage(f"Running:{step.name}")
        else:
            c.set("Queued", "False", "NotQueued", "")
            retry = f" (retry after {job.failed_pods} failed pod(s): {job.message})" if job.failed_pods else ""
            c.set("Ready", "True", "JobRunning", f"job {job.name} step {step.name} running{retry}")
            if c.get_status("Scheduled") is not None:
                c.set("Scheduled", "True", "Scheduled", "")
            self.set_stage(f"Running:{step.name}")
        if self.obs.progress:
            last = self.status.progress
            step_changed = last is None or last.step != step.name
            if step_changed or seconds_between(last.updated if last else None, self.now) >= PROGRESS_WRITE_INTERVAL_SECONDS:
                progress = merged_progress(self.resource, step, self.obs.progress, len(run.completed_steps))
                self.status.progress = progress.model_copy(update={"updated": self.now})
        self.decision.requeue_after = PROGRESS_WRITE_INTERVAL_SECONDS
        return self.decision

    # -- entry -----------------------------------------------------------------------------------

    def decide(self) -> Decision:
        obs = self.obs
        if obs.invalid_spec:
            return self.invalid(obs.invalid_spec)
        if isinstance(obs.plan, Blocked):
            return self.waiting(obs.plan)
        plan = obs.plan
        if obs.manifest is not None:
            manifest, digest = obs.manifest
            ran_here = (self.status.run is not None and self.status.run.input_hash == plan.input_hash) or any(
                job.input_hash == plan.input_hash for job in obs.jobs
            )
            already = self.conditions.get_status("Succeeded") == "True" and self.status.artifacts.input_hash == plan.input_hash
            cache_hit = self.conditions.get_reason("Succeeded") == "CacheHit" if already else not ran_here
            return self.succeeded(plan, manifest, digest, cache_hit=cache_hit)
        return self.advance(plan)


CONDITION_ORDER = ("Ready", "Succeeded", "Stalled", "Reconciling", "Queued", "ServingReady", "Scheduled")


def decide(obs: Observed, now: str) -> Decision:
    """The next actions and status for one resource."""
    decision = Reconciler(obs, now).decide()
    decision.status.conditions.sort(
        key=lambda c: (CONDITION_ORDER.index(c.type) if c.type in CONDITION_ORDER else len(CONDITION_ORDER), c.type)
    )
    return decision
