"""The kopf operator: thin handlers for the five kinds over one reconcile function.

One reconcile = parse (typed models; a bad spec becomes Stalled/InvalidSpec naming the field) →
fetch the referenced resources → plan the run → list the children → read the manifest and progress
from the artifact store (children first: a Job that succeeded always has its manifest visible) →
decide (the shared core) → create/delete children → write status once, only if it changed, with a
resourceVersion precondition → post the decision's Events.

Triggers: create or spec change / resume of each kind; events of owned Jobs and InferenceServices
(re-reconcile the owner); an outcome of a resource (re-reconcile the ones that consume it); and a
timer every `requeueSeconds` while a resource is not settled (progress, pods, Kueue).
Handlers return None: kopf never writes handler results into `status`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable

import kopf
from pydantic import ValidationError

from osmf_core.api import API_VERSION, GROUP, KINDS, VERSION, OsmfStatus, Resource, SpecError, Step, parse_resource
from osmf_core.api.resource import Metadata
from .builders import BuildError, build_inference_service, build_job_objects, config_map_name, owner_of, rendezvous_service_name, spec_problems
from .builders.pod import KUEUE_QUEUE_LABEL, MANAGED_BY
from .reconcile import Blocked, Decision, Observed, ObservedJob, ObservedService, decide, plan_run, references, service_name
from .reconcile.plan import Reference, RunPlan
from .kube import CONNECTIONS, JOBSET_API, Conflict, Kube, KubeError, WorkloadUnavailable, owned_by, rfc3339
from .metrics import OperatorMetrics
from .observe import job_is_suspended, job_needs_pods, observe_job, observe_jobset, observe_service
from .settings import OperatorSettings
from osmf_core.layout import progress_files
from osmf_core.store import ArtifactStore, S3Credentials, StoreError, open_store, read_manifest
from .tenancy import URI_NOT_ALLOWED, credentials_from_secret, uri_problems

LOG = logging.getLogger("osmf.operator")
Key = tuple[str, str, str]  # kind, namespace, name
# A tenant's credentials Secret is read again after this long (rotation reaches the operator's reads).
CREDENTIALS_TTL_SECONDS = 60.0
# A data listing is reused this long (its digest is the data's part of the input hash).
FINGERPRINT_TTL_SECONDS = 5.0
# A watched body is used instead of a GET unless this resource's status was written this recently
# (the watch may not have delivered that write yet; a body that is behind still only costs a retry).
WATCH_LAG_SECONDS = 10.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def status_patch(old: Any, new: Any) -> Any:
    """RFC 7386 merge patch that turns `old` into `new` (None deletes; lists are replaced whole)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = status_patch(old[key], value)
    return patch


def status_of(body: dict[str, Any]) -> OsmfStatus:
    """The status as last written; one this operator cannot read counts as empty (it is rewritten)."""
    try:
        return OsmfStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return OsmfStatus()


def parse(body: dict[str, Any]) -> tuple[Resource, str | None]:
    """The typed resource, or (a resource without spec, the problems naming their fields)."""
    try:
        resource = parse_resource({key: value for key, value in body.items() if key != "status"})
        problems = None
    except SpecError as error:
        meta = body.get("metadata") or {}
        metadata = Metadata.model_validate({k: meta[k] for k in ("name", "namespace", "uid", "generation") if k in meta})
        resource = Resource(info=KINDS[body["kind"]], metadata=metadata, spec=None, status=OsmfStatus(), body=body)
        problems = "; ".join(error.problems)
    resource.status = status_of(body)
    return resource, problems


def outcome_known(body: dict[str, Any]) -> bool:
    conditions = {c.get("type"): c.get("status") for c in (body.get("status") or {}).get("conditions") or []}
    return conditions.get("Succeeded") in ("True", "False") or conditions.get("Stalled") == "True"


def settled(body: dict[str, Any]) -> bool:
    """Nothing will change without an event: the outcome is known for this generation (and nothing is served)."""
    status = body.get("status") or {}
    meta = body.get("metadata") or {}
    if status.get("observedGeneration") != meta.get("generation", 1) or not outcome_known(body):
        return False
    info = KINDS.get(body.get("kind"))
    return not (info is not None and info.serves_wire(body.get("spec")))


def seconds_since(moment: str | None, now: datetime) -> float:
    if not moment:
        return float("inf")
    try:
        then = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return float("inf")
    return (now - then).total_seconds()


def going_step(resource: Resource, plan: RunPlan, jobs: list[ObservedJob]) -> Step | None:
    """The first step of this run whose Job is Pending or Running, else None."""
    current = {job.step: job for job in jobs if job.input_hash == plan.input_hash}
    return next((s for s in resource.info.steps if s.name in current and current[s.name].phase in ("Running", "Pending")), None)


class Operator:
    """Reconciles OSMF resources against the Kubernetes API and the artifact store. No kopf in here."""

    def __init__(self, settings: OperatorSettings, kube: Kube, metrics: OperatorMetrics | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.kube = kube
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self._locks: dict[Key, threading.Lock] = {}
        self._guard = threading.Lock()
        # (namespace, kind, name) of a resource → the (kind, name)s in that namespace that consume it.
        self._consumers: dict[Key, set[tuple[str, str]]] = {}
        self._consumes: dict[Key, set[Key]] = {}
        self._credentials: dict[str, tuple[float, S3Credentials | None]] = {}
        # Event-driven passes waiting for a resource's lock (at most one each: it reads fresh state when
        # it starts, so it covers every event that arrived while it waited).
        self._waiting: set[Key] = set()
        self._last_pass: dict[Key, float] = {}  # monotonic time of each resource's last pass
        self._last_write: dict[Key, float] = {}  # monotonic time of each resource's last status write
        self._fingerprints: dict[tuple[str, S3Credentials | None], tuple[float, threading.Lock, str | None]] = {}
        self._jobset_api: bool | None = None

    @property
    def jobset_api(self) -> bool:
        """Whether the cluster serves JobSets (multi-node gangs become JobSets): discovered once per start."""
        if self._jobset_api is None:
            self._jobset_api = self.kube.serves(*JOBSET_API)
            LOG.info("JobSet API %s: multi-node steps run as %s", JOBSET_API[0],
                     "JobSets" if self._jobset_api else "Indexed Jobs with a headless Service")
        return self._jobset_api

    # -- bookkeeping ------------------------------------------------------------------------------

    def _lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def remember_references(self, resource: Resource) -> None:
        me = (resource.kind, resource.namespace, resource.name)
        wanted = {(ref.kind, resource.namespace, ref.name) for ref in references(resource)}
        with self._guard:
            for dep in self._consumes.get(me, set()) - wanted:
                self._consumers.get(dep, set()).discard((resource.kind, resource.name))
            for dep in wanted:
                self._consumers.setdefault(dep, set()).add((resource.kind, resource.name))
            self._consumes[me] = wanted

    def consumers_of(self, kind: str, namespace: str, name: str) -> list[tuple[str, str]]:
        with self._guard:
            return sorted(self._consumers.get((kind, namespace, name), set()))

    def forget(self, kind: str, namespace: str, name: str) -> None:
        me = (kind, namespace, name)
        with self._guard:
            for dep in self._consumes.pop(me, set()):
                self._consumers.get(dep, set()).discard((kind, name))
            self._locks.pop(me, None)
            self._last_pass.pop(me, None)
            self._last_write.pop(me, None)
        self.metrics.forget(kind, namespace, name)

    # -- the reconcile ----------------------------------------------------------------------------

    def due(self, kind: str, namespace: str, name: str) -> bool:
        """For the timer: not passed over (by any trigger) within the last requeueSeconds."""
        with self._guard:
            last = self._last_pass.get((kind, namespace, name))
        return last is None or time.monotonic() - last >= 0.9 * self.settings.requeue_seconds

    def written_lately(self, key: Key) -> bool:
        with self._guard:
            last = self._last_write.get(key)
        return last is not None and time.monotonic() - last < WATCH_LAG_SECONDS

    def reconcile(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None = None) -> Decision | None:
        """One pass for one resource; None when it is gone or going. Raises KubeError/StoreError to retry.

        `body`: the resource as the caller's watch last saw it (kopf's create/update/resume and timer
        handlers have it), read fresh when not given. A body older than the server's only costs a retry:
        the status write is guarded by its resourceVersion."""
        start = time.monotonic()
        try:
            with self._lock((kind, namespace, name)):
                with self._guard:
                    self._waiting.discard((kind, namespace, name))
                    self._last_pass[(kind, namespace, name)] = time.monotonic()
                return self._reconcile(kind, namespace, name, body)
        except Exception as error:
            self.metrics.errors.labels(kind, type(error).__name__).inc()
            raise
        finally:
            self.metrics.reconciles.labels(kind).inc()
            self.metrics.duration.labels(kind).observe(time.monotonic() - start)

    def reconcile_quietly(self, kind: str, namespace: str, name: str) -> None:
        """For event-driven passes: a failure is logged; the timer or the next event tries again.

        A burst of events (a new Job's ADDED and its first status updates) costs one pass, not one each:
        when a pass of this resource is already waiting for its lock, that one will see this change too."""
        with self._guard:
            if (kind, namespace, name) in self._waiting:
                return
            self._waiting.add((kind, namespace, name))
        try:
            self.reconcile(kind, namespace, name)
        except (KubeError, OSError) as error:
            LOG.info("reconcile of %s %s/%s deferred: %s", kind, namespace, name, error)

    def _reconcile(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None) -> Decision | None:
        if body is not None and self.written_lately((kind, namespace, name)):
            body = None  # the watch may not have brought our own last write back yet
        try:
            return self._pass(kind, namespace, name, body)
        except Conflict:
            if body is None:
                raise
            return self._pass(kind, namespace, name, None)  # the watch's body was behind the server's

    def _pass(self, kind: str, namespace: str, name: str, body: dict[str, Any] | None) -> Decision | None:
        if body is None:
            body = self.kube.get(kind, namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            self.forget(kind, namespace, name)
            return None
        now = self.clock()
        resource, invalid = parse(body)
        if invalid is None:
            invalid = "; ".join(spec_problems(resource, self.settings)) or None
        forbidden = "; ".join(uri_problems(resource, self.settings.artifacts_for(namespace))) if invalid is None else None
        if forbidden:  # checked before anything is read for this resource: outside the allow-list, nothing is
            observed = Observed(resource=resource, plan=Blocked(URI_NOT_ALLOWED, forbidden, stalled=True),
                                code_version=self.settings.code_version)
        elif invalid is None:
            self.remember_references(resource)
            try:
                observed = self.observe(resource, now)
            except StoreError as error:
                self.report_unreachable_store(body, resource, error, now)
                raise
        else:
            observed = Observed(resource=resource, plan=Blocked("InvalidSpec", invalid, stalled=True),
                                invalid_spec=invalid, code_version=self.settings.code_version)
        decision = decide(observed, rfc3339(now))
        try:
            self.apply(resource, observed, decision)
        except BuildError as error:  # spec_problems catches these first; this keeps a surprise readable
            decision = decide(replace(observed, invalid_spec=str(error)), rfc3339(now))
        self.write_status(body, decision)
        self.post_events(body, decision, now)
        self.metrics.set_stage(kind, namespace, name, decision.status.stage)
        return decision

    def report_unreachable_store(self, body: dict[str, Any], resource: Resource, error: StoreError, now: datetime) -> None:
        """A resource this generation has never been reported for says why it waits (the caller retries).
        One already reported keeps its last status: a store blip must not flip a running stage."""
        if resource.status.observed_generation == resource.metadata.generation:
            return
        blocked = Blocked("ArtifactStoreUnreachable", f"artifact store: {' '.join(str(error).split())}; retrying")
        observed = Observed(resource=resource, plan=blocked, code_version=self.settings.code_version)
        self.write_status(body, decide(observed, rfc3339(now)))

    # -- the artifact store, as the namespace's identity ----------------------------------------------

    def credentials(self, namespace: str) -> S3Credentials | None:
        """The identity the operator reads a namespace's artifacts with: its tenant's Secret, else the
        process-wide environment (None) at the tenant's endpoint."""
        if namespace not in self.settings.tenants:
            return None
        with self._guard:
            cached = self._credentials.get(namespace)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        artifacts = self.settings.artifacts_for(namespace)
        tenant = self.settings.tenants[namespace]
        if tenant.credentials_secret is not None:
            where = f"{namespace}/{tenant.credentials_secret}"
            try:
                credentials = credentials_from_secret(self.kube.secret_data(namespace, tenant.credentials_secret), artifacts, where)
            except LookupError as error:
                raise StoreError(str(error)) from None
            except KubeError as error:
                raise StoreError(f"Secret {where} with the namespace's artifact credentials cannot be read: {error}") from None
        elif (artifacts.endpoint_url, artifacts.region) != (self.settings.artifacts.endpoint_url, self.settings.artifacts.region):
            credentials = S3Credentials(endpoint_url=artifacts.endpoint_url, region=artifacts.region)
        else:
            credentials = None
        with self._guard:
            self._credentials[namespace] = (time.monotonic() + CREDENTIALS_TTL_SECONDS, credentials)
        return credentials

    def store(self, namespace: str, uri: str) -> ArtifactStore:
        return open_store(uri, self.credentials(namespace))

    def fingerprint(self, namespace: str, uri: str) -> str:
        """The data listing's digest, listed once per FINGERPRINT_TTL_SECONDS per URI and identity: a
        thousand resources applied at once over one dataset list it once, not a thousand times."""
        credentials = self.credentials(namespace)
        key = (uri, credentials)
        with self._guard:
            expires, lock, digest = self._fingerprints.get(key) or (0.0, threading.Lock(), None)
            self._fingerprints[key] = (expires, lock, digest)
        with lock:  # the first caller lists; the others wait for its answer
            with self._guard:
                expires, _, digest = self._fingerprints[key]
            if digest is not None and expires > time.monotonic():
                return digest
            digest = open_store(uri, credentials).fingerprint()
            with self._guard:
                self._fingerprints[key] = (time.monotonic() + FINGERPRINT_TTL_SECONDS, lock, digest)
            return digest

    # -- observe ----------------------------------------------------------------------------------

    def dependency(self, ref: Reference, namespace: str) -> Resource | None:
        body = self.kube.get(ref.kind, namespace, ref.name)
        return None if body is None else parse(body)[0]

    def observe(self, resource: Resource, now: datetime) -> Observed:
        found = {ref.role: self.dependency(ref, resource.namespace) for ref in references(resource)}
        data_uri = resource.info.raw_data_uri(resource.spec)
        fingerprint = self.fingerprint(resource.namespace, data_uri) if data_uri is not None else None
        plan = plan_run(resource, found, self.settings.artifacts_for(resource.namespace).root_uri, fingerprint)
        observed = Observed(resource=resource, plan=plan, code_version=self.settings.code_version,
                            stuck_pod_grace_seconds=self.settings.stuck_pod_grace_seconds)
        if isinstance(plan, Blocked):
            return observed
        observed.jobset_api = self.jobset_api
        observed.jobs = self.observe_jobs(resource)  # children first, then the manifest
        store = self.store(resource.namespace, plan.run_uri)
        # While a step of this run is still going the manifest cannot be there yet (the last step writes
        # it before it exits): the store is not asked on every pass of a running resource.
        if going_step(resource, plan, observed.jobs) is None:
            observed.manifest = read_manifest(store)
        if observed.manifest is None:
            observed.progress = self.read_progress(resource, plan, observed.jobs, store, now)
        elif resource.info.serving(resource.spec) is not None:
            observed.service = self.observe_serving(resource)
        return observed

    def observe_jobs(self, resource: Resource) -> list[ObservedJob]:
        """Owned Jobs and (where the API is served) JobSets, with the pods and Kueue Workload that explain them."""
        namespace, args = resource.namespace, (resource.kind, resource.namespace, resource.name, resource.metadata.uid)
        children = [(job, observe_job, self.kube.job_pods) for job in self.kube.owned_jobs(*args)]
        if self.jobset_api:
            children += [(js, observe_jobset, self.kube.jobset_pods) for js in self.kube.owned_jobsets(*args)]
        out = []
        for child, observe_child, pods_of in children:
            meta = child["metadata"]
            pods = pods_of(namespace, meta["name"]) if job_needs_pods(child) else None
            workload, workload_error = None, None
            if job_is_suspended(child) and KUEUE_QUEUE_LABEL in (meta.get("labels") or {}) and meta.get("uid"):
                try:
                    workload = self.kube.workload_for_job(namespace, meta["uid"])
                except WorkloadUnavailable as error:
                    workload_error = str(error)
            observed = observe_child(child, pods, workload, workload_error)
            if observed is not None:
                out.append(observed)
        return out

    def read_progress(self, resource: Resource, plan: RunPlan, jobs: list[ObservedJob], store: Any, now: datetime) -> list[dict]:
        """progress.json of the running step, read at most every progressIntervalSeconds (best effort)."""
        step = going_step(resource, plan, jobs)
        if step is None:
            return []
        last = resource.status.progress
        if last is not None and last.step == step.name and seconds_since(last.updated, now) < self.settings.progress_interval_seconds:
            return []
        rels = progress_files(step.sharded, getattr(resource.spec, "shards", 1))
        docs = []
        for rel in rels:
            try:
                doc = store.read_json(rel)
            except StoreError:
                return []
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("step") == step.name:
                docs.append(doc)
        return docs

    def observe_serving(self, resource: Resource) -> ObservedService | None:
        name = service_name(resource)
        isvc = self.kube.get("InferenceService", resource.namespace, name)
        if isvc is not None and not owned_by(isvc, resource.metadata.uid):
            return ObservedService(name=name, ready=False, reason="InferenceServiceNameTaken",
                                   message=f"InferenceService {name} exists and belongs to someone else; delete or rename it")
        pods = self.kube.predictor_pods(resource.namespace, name) if isvc is not None else []
        return observe_service(isvc, pods)

    # -- act --------------------------------------------------------------------------------------

    def apply(self, resource: Resource, observed: Observed, decision: Decision) -> None:
        namespace = resource.namespace
        owner = owner_of(resource)
        kinds = {job.name: job.kind for job in observed.jobs}
        for job in decision.delete_jobs:
            kind = kinds.get(job, "Job")
            LOG.info("%s %s/%s: deleting %s %s of an earlier run", resource.kind, namespace, resource.name, kind, job)
            self.kube.delete_job(namespace, job, config_map_name(job), rendezvous_service_name(job) if kind == "Job" else None, kind)
        for request in decision.create_jobs:
            for obj in build_job_objects(request, owner, self.settings):
                if self.kube.create(obj):
                    self.metrics.children.labels(obj["kind"]).inc()
        if not resource.info.can_serve or resource.spec is None:
            return
        service = decision.apply_service
        if service is not None and not (observed.service and observed.service.reason == "InferenceServiceNameTaken"):
            if self.kube.apply(build_inference_service(service, owner, self.settings)) == "created":
                self.metrics.children.labels("InferenceService").inc()
        elif resource.info.serving(resource.spec) is None and any(o.kind == "InferenceService" for o in resource.status.children.objects):
            isvc = self.kube.get("InferenceService", namespace, service_name(resource))
            if isvc is not None and owned_by(isvc, resource.metadata.uid):
                self.kube.delete("InferenceService", namespace, service_name(resource))

    def write_status(self, body: dict[str, Any], decision: Decision, attempts: int = 3) -> None:
        """One status write, only if something changed, guarded by the resourceVersion that was read.

        A conflict caused by metadata alone (kopf's annotations, a label) is retried against the fresh
        resourceVersion; a conflict on spec or status means the decision is stale: Conflict is raised.
        """
        new = decision.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        meta = body["metadata"]
        for attempt in range(attempts):
            patch = status_patch(body.get("status") or {}, new)
            if not patch:
                return
            try:
                self.kube.patch_status(body["kind"], meta["namespace"], meta["name"], patch, meta.get("resourceVersion"))
                with self._guard:
                    self._last_write[(body["kind"], meta["namespace"], meta["name"])] = time.monotonic()
                return
            except Conflict:
                fresh = self.kube.get(body["kind"], meta["namespace"], meta["name"])
                if (attempt == attempts - 1 or fresh is None or fresh.get("status") != body.get("status")
                        or fresh["metadata"].get("generation") != meta.get("generation")):
                    raise
                body, meta = fresh, fresh["metadata"]

    def post_events(self, body: dict[str, Any], decision: Decision, now: datetime) -> None:
        meta = body["metadata"]
        involved = {"apiVersion": body.get("apiVersion", API_VERSION), "kind": body["kind"], "name": meta["name"],
                    "namespace": meta["namespace"], "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion")}
        for event in decision.events:
            try:
                self.kube.post_event(involved, event.type, event.reason, event.message, now)
            except KubeError as error:  # an Event is a courtesy; status already tells the truth
                LOG.warning("event %s for %s/%s not posted: %s", event.reason, meta["namespace"], meta["name"], error)


# ---- kopf ---------------------------------------------------------------------------------------


class ObservedGenerationDiffBase(kopf.DiffBaseStorage):
    """kopf's "last handled" state, read from the status the reconcile writes anyway.

    kopf's default keeps a copy of the spec in an annotation and patches it after every handled
    change: one more write and one more watch event per resource, for what `status.observedGeneration`
    already says (the spec's generation this operator has acted on). Unobserved → kopf sees a new
    object and calls `reconcile-create` (a spec change too: the handler is the same); observed → no
    change, or a resume on the operator's first listing."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        observed = (body.get("status") or {}).get("observedGeneration")
        if observed is None or observed != body.get("metadata", {}).get("generation"):
            return None
        return self.build(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None  # the reconcile's own status write is the record


def controller_owner(body: dict[str, Any]) -> tuple[str, str] | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("apiVersion") == API_VERSION and ref.get("kind") in KINDS:
            return ref["kind"], ref["name"]
    return None


def register(registry: kopf.OperatorRegistry, operator: Operator) -> kopf.OperatorRegistry:
    """Every handler on `registry`; the caller adds the login handler (the kubernetes client's, or a test's)."""
    settings = operator.settings

    def run(kind: str, namespace: str, name: str, body: kopf.Body) -> None:
        try:
            # A snapshot of the watch's latest body (saves a GET per pass); kopf replaces, never edits, it.
            operator.reconcile(kind, namespace, name, dict(body))
        except Conflict:
            raise kopf.TemporaryError(f"{kind} {namespace}/{name} changed while it was reconciled; again", delay=1)
        except (KubeError, OSError) as error:
            raise kopf.TemporaryError(str(error), delay=min(10.0, settings.requeue_seconds))
        return None

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.diffbase_storage = ObservedGenerationDiffBase()
        settings.posting.level = logging.WARNING  # our own Events say what happened; kopf's would be noise
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.execution.max_workers = CONNECTIONS
        # A deleted resource waits for its timer to stop before kopf releases the finalizer: a timer
        # that is asleep stops at once; one inside a reconcile is polled again after a few seconds.
        settings.background.instant_exit_timeout = 0.5
        settings.background.cancellation_polling = 5

    for info in KINDS.values():
        group_version_plural = (GROUP, VERSION, info.plural)

        def on_change(namespace: str, name: str, body: kopf.Body, _kind: str = info.kind, **_: Any) -> None:
            return run(_kind, namespace, name, body)

        def on_timer(namespace: str, name: str, body: kopf.Body, _kind: str = info.kind, **_: Any) -> None:
            if operator.due(_kind, namespace, name):  # an event-driven pass may just have looked
                return run(_kind, namespace, name, body)
            return None

        def on_event(type: str | None, namespace: str, name: str, _kind: str = info.kind, **_: Any) -> None:
            if type == "DELETED":
                operator.forget(_kind, namespace, name)
                return
            for consumer_kind, consumer in operator.consumers_of(_kind, namespace, name):
                operator.reconcile_quietly(consumer_kind, namespace, consumer)

        # A spec change reaches reconcile-create too (ObservedGenerationDiffBase): no on.update is needed.
        kopf.on.create(*group_version_plural, id="reconcile-create", registry=registry)(on_change)
        kopf.on.resume(*group_version_plural, id="reconcile-resume", registry=registry)(on_change)
        kopf.timer(*group_version_plural, id="requeue", interval=settings.requeue_seconds,
                   initial_delay=settings.requeue_seconds, when=lambda body, **_: not settled(body),
                   registry=registry)(on_timer)
        # Filters run in kopf's event loop: most events never reach the thread pool.
        kopf.on.event(*group_version_plural, id="consumers", registry=registry,
                      when=lambda type, body, **_: type == "DELETED" or (type is not None and outcome_known(body)))(on_event)

    def on_child(body: dict[str, Any], namespace: str, **_: Any) -> None:
        kind, name = controller_owner(body)
        operator.reconcile_quietly(kind, namespace, name)

    def is_owned_change(type: str | None, body: dict[str, Any], **_: Any) -> bool:
        # The initial listing is on.resume's; a child without status yet (the echo of our own create)
        # says nothing the pass that created it did not know: its controller's first status write does.
        return type is not None and controller_owner(body) is not None and (type == "DELETED" or bool(body.get("status")))

    # Kinds that are not installed (KServe, JobSet) are watched once their CRDs appear (kopf watches CRDs).
    owned = (("batch", "v1", "jobs"), ("serving.kserve.io", "v1beta1", "inferenceservices"), (*JOBSET_API[0].split("/"), JOBSET_API[1]))
    for group, version, plural in owned:
        kopf.on.event(group, version, plural, id=f"owned-{plural}", labels=dict(MANAGED_BY), when=is_owned_change,
                      registry=registry)(on_child)
    return registry
