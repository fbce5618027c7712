"""An in-process Kubernetes for the operator tier and the operator benchmark: KMock plus what a real
API server does that the operator relies on, and `Cluster`, the test's hands.

KMock is an in-memory API server (CRUD, merge/JSON patch, finalizers, watch streams, discovery). This
tier adds what the operator relies on and a real API server does: uid, resourceVersion bumps and
preconditions (409 / 422), generation bumps on spec changes, the status subresource and label
selectors on lists. There is
no controller: the tests act as the Job controller, the kubelet, KServe and the jobs themselves.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import attrs
import kmock
import kopf
from kmock._internal import enums, rendering
from tests.operator import kubeobjects as ko

from osmf_core.api import GROUP, KINDS, VERSION
from osmf_core.store import open_store
from osmf_operator.handlers import Operator, register
from osmf_operator.kube import Kube, path_for
from osmf_operator.metrics import OperatorMetrics
from osmf_operator.settings import parse_settings

NAMESPACE = "default"
SUBRESOURCE_KINDS = {"jobs", "inferenceservices", *(info.plural for info in KINDS.values())}
WAIT_S = 30.0  # generous: the 2-core machines are shared


# KMock's object-serving fallbacks by request action; served directly (see _DirectDispatch).
DIRECT = {
    enums.action.LIST: "_serve_list", enums.action.WATCH: "_serve_watch", enums.action.FETCH: "_serve_fetch",
    enums.action.CREATE: "_serve_create", enums.action.UPDATE: "_serve_update", enums.action.DELETE: "_serve_delete",
}


@attrs.define(kw_only=True)
class _DirectDispatch(kmock.RawHandler):
    """Serves object requests with KMock's own fallbacks without its reaction-matching DSL.

    No test here defines reactions, and matching every request against every fallback's criteria
    costs several ms of CPU per request: with an operator's dozens of requests per second on a
    shared 2-core machine that, not the operator, was the bottleneck. It sits between
    KubernetesEmulator (which records the object changes) and RawHandler in the MRO.
    """

    async def _handle(self, request):
        object_request = request.resource is not None and request.resource.plural  # not discovery
        method = DIRECT.get(request.action) if object_request else None
        if method is None:
            return await super()._handle(request)
        return await rendering.Response(payload=getattr(self, method))(request)


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator, _DirectDispatch):
    """KMock plus the API-server semantics the operator depends on (and label selectors on lists)."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(100), init=False)
    # (namespace, pod) → what `GET …/pods/<pod>/log` answers (the kubelet's part; `osmf logs` reads it).
    pod_logs: dict[tuple[str, str], bytes] = attrs.field(factory=dict, init=False)

    def _current(self, request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return json.loads(json.dumps(self.objects[key].raw, default=dict))

    def _prepare(self, request) -> None:
        """Rewrites the request's payload in place (the request itself is frozen)."""
        data = request.data
        new_version = str(next(self._versions))
        if request.action == enums.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            meta["uid"] = str(uuid.uuid4())  # the server's, whatever the client sent
            meta["generation"] = 1
            meta["creationTimestamp"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["resourceVersion"] = new_version
            return
        current = self._current(request)
        if request.action != enums.action.UPDATE or current is None:
            return
        version = current["metadata"].get("resourceVersion")
        if isinstance(data, list):  # JSON patch: its `test` ops are preconditions (422 when they fail)
            for op in data:
                if op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion" and op.get("value") != version:
                    raise kmock.KubernetesError(status=422, reason="Invalid", message="the object has been modified")
            data[:] = [op for op in data if op.get("op") != "test"]
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": new_version})
            return
        if isinstance(data, dict):  # merge patch
            asked = (data.get("metadata") or {}).get("resourceVersion")
            if asked is not None and asked != version:
                raise kmock.KubernetesError(status=409, reason="Conflict",
                                            message="the object has been modified; please apply your changes to the latest version")
            if request.resource.plural in SUBRESOURCE_KINDS:
                if request.subresource == "status":
                    status = data.get("status")
                    data.clear()
                    data["status"] = status
                else:
                    data.pop("status", None)
            meta = data.setdefault("metadata", {})
            meta["resourceVersion"] = new_version
            if "spec" in data and request.subresource != "status":
                meta["generation"] = current["metadata"].get("generation", 1) + 1

    async def _handle(self, request):
        if request.resource is not None and request.resource.plural == "pods" and request.subresource == "log":
            log = self.pod_logs.get((request.namespace, request.name))
            if log is None:
                return await rendering.Response(status=404, payload={"kind": "Status", "message": f"pods \"{request.name}\" not found"})(request)
            return await rendering.Response(payload=log)(request)
        if request.resource is not None and request.action in (enums.action.CREATE, enums.action.UPDATE):
            self._prepare(request)
        return await super()._handle(request)

    async def _serve_list(self, request) -> dict[str, Any]:
        """Equality-based label selectors (`a=b,c=d`), as the API server filters lists."""
        listing = await super()._serve_list(request)
        wanted = dict(term.split("=", 1) for term in (request.params.get("labelSelector") or "").split(",") if "=" in term)
        if wanted:
            listing["items"] = [item for item in listing["items"]
                                if all(((item.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())]
        return listing


def declare_resources(server: ApiServer) -> None:
    server.resources.load_bundled()  # without it kopf never starts watching (NOTES: the KMock trap)
    for info in KINDS.values():
        server.resources[f"{GROUP}/{VERSION}/{info.plural}"] = kmock.ResourceInfo(
            kind=info.kind, singular=info.singular, namespaced=True, shortnames={info.short_name}, categories={"osmf"},
            subresources={"status"}, verbs={"get", "list", "watch", "create", "patch", "update", "delete"})
    server.resources["serving.kserve.io/v1beta1/inferenceservices"] = kmock.ResourceInfo(
        kind="InferenceService", singular="inferenceservice", namespaced=True, shortnames={"isvc"},
        subresources={"status"}, verbs={"get", "list", "watch", "create", "patch", "update", "delete"})
    server.resources["kueue.x-k8s.io/v1beta1/workloads"] = kmock.ResourceInfo(
        kind="Workload", singular="workload", namespaced=True, subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "update", "delete"})


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=dict))


@dataclass
class RunningOperator:
    """kopf in a thread with its own event loop (kopf cancels the tasks of the loop it stops in)."""

    operator: Operator
    thread: threading.Thread
    stop_flag: threading.Event
    errors: list[BaseException]

    async def stop(self) -> None:
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, 30)
        assert not self.thread.is_alive(), "kopf did not stop within 30 s"
        if self.errors:
            raise self.errors[0]


@dataclass
class Cluster:
    """The test's hands: kubectl, the Job controller, KServe, the kubelet and the jobs."""

    server: ApiServer
    url: str
    artifacts: Path
    operators: list[RunningOperator] = field(default_factory=list)

    # -- settings and operators ---------------------------------------------------------------

    def settings(self, **extra: Any):
        return parse_settings({"artifacts": {"rootUri": self.artifacts.as_uri()}, "requeueSeconds": 1,
                               "progressIntervalSeconds": 1, **extra})

    async def start_operator(self, **settings: Any) -> Operator:
        operator = Operator(self.settings(**settings), Kube.for_server(self.url), OperatorMetrics())
        registry = register(kopf.OperatorRegistry(), operator)

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=self.url, insecure=True)

        stop, ready, errors = threading.Event(), threading.Event(), []

        def serve() -> None:
            try:
                asyncio.run(kopf.operator(registry=registry, standalone=True, clusterwide=True, stop_flag=stop, ready_flag=ready))
            except asyncio.CancelledError:
                pass
            except BaseException as error:  # noqa: BLE001 - reported by stop()
                errors.append(error)
                ready.set()

        thread = threading.Thread(target=serve, name="kopf", daemon=True)
        thread.start()
        started = await asyncio.to_thread(ready.wait, 20)
        assert started and not errors, f"kopf did not start: {errors}"
        self.operators.append(RunningOperator(operator, thread, stop, errors))
        return operator

    async def stop_operators(self) -> None:
        while self.operators:
            await self.operators.pop().stop()

    # -- kubectl --------------------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any = None, content_type: str = "application/merge-patch+json") -> Any:
        async with self.server.request(method, path, json=body, headers={"Content-Type": content_type}) as response:
            payload = await response.json()
            assert response.status < 300, f"{method} {path}: {response.status} {payload}"
            return payload

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", path_for(obj["kind"], obj["metadata"].get("namespace", NAMESPACE)), obj, "application/json")

    async def patch(self, kind: str, name: str, patch: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        return await self.call("PATCH", path_for(kind, NAMESPACE, name, subresource), patch)

    async def delete(self, kind: str, name: str) -> None:
        await self.call("DELETE", path_for(kind, NAMESPACE, name), {"propagationPolicy": "Background"}, "application/json")

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        for (resource, namespace, obj_name), obj in self.server.objects.items():
            if resource.plural == plural_of(kind) and namespace == NAMESPACE and obj_name == name and not obj.deleted:
                return plain(obj.raw)
        return None

    def list(self, kind: str) -> list[dict[str, Any]]:
        out = [plain(obj.raw) for (resource, namespace, _), obj in self.server.objects.items()
               if resource.plural == plural_of(kind) and namespace == NAMESPACE and not obj.deleted]
        return sorted(out, key=lambda o: o["metadata"]["name"])

    def created(self, kind: str) -> list[str]:
        """Names of every successful POST of this kind, duplicates included (what 'no duplicates' counts)."""
        return [r.data["metadata"]["name"] for r in self.server
                if r.method == "POST" and r.resource is not None and r.resource.plural == plural_of(kind)
                and isinstance(r.data, dict)]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.list("Event") if e["involvedObject"]["name"] == name]

    async def wait_event(self, name: str, reason: str, type_: str = "Warning") -> dict[str, Any]:
        """Events follow the status write they explain."""
        return await self.wait_for(f"a {type_} event {reason} on {name}", lambda: next(
            (e for e in self.events(name) if e["reason"] == reason and e["type"] == type_), None))

    async def wait_for(self, what: str, check: Callable[[], Any], timeout: float = WAIT_S, interval: float = 0.05) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = check()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            await asyncio.sleep(interval)

    def condition(self, kind: str, name: str, type_: str) -> tuple[str, str, str] | None:
        body = self.get(kind, name) or {}
        for c in (body.get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return c["status"], c["reason"], c.get("message", "")
        return None

    async def wait_condition(self, kind: str, name: str, type_: str, status: str, reason: str | None = None,
                             timeout: float = WAIT_S) -> tuple[str, str, str]:
        def check():
            got = self.condition(kind, name, type_)
            return got if got and got[0] == status and (reason is None or got[1] == reason) else None
        try:
            return await self.wait_for(f"{kind}/{name} {type_}={status} {reason or ''}", check, timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}; status is {json.dumps((self.get(kind, name) or {}).get('status'), indent=1)}") from None

    # -- the Job controller and the jobs ---------------------------------------------------------

    def jobs_of(self, kind: str, name: str, step: str | None = None) -> list[dict[str, Any]]:
        jobs = [j for j in self.list("Job") if j["metadata"]["labels"].get("osmf.dev/kind") == kind
                and j["metadata"]["labels"].get("osmf.dev/name") == name]
        return [j for j in jobs if step is None or j["metadata"]["labels"]["osmf.dev/step"] == step]

    async def wait_job(self, kind: str, name: str, step: str, input_hash: str | None = None) -> dict[str, Any]:
        def check():
            jobs = [j for j in self.jobs_of(kind, name, step)
                    if input_hash is None or j["metadata"]["annotations"]["osmf.dev/input-hash"] == input_hash]
            return jobs[-1] if jobs else None
        return await self.wait_for(f"{kind}/{name} job for step {step}", check)

    def job_config(self, job: dict[str, Any]) -> dict[str, Any]:
        volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
        config_map = self.get("ConfigMap", volume["configMap"]["name"])
        return json.loads(config_map["data"]["config.json"])

    async def set_job_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        await self.patch("Job", job["metadata"]["name"], {"status": status}, subresource="status")

    def write_manifest(self, config: dict[str, Any], metrics: dict[str, Any]) -> str:
        """What a job's last step writes: files first, manifest.json last."""
        store = open_store(config["run"]["uri"])
        store.write_json("metrics.json", metrics)
        manifest = {
            "apiVersion": config["apiVersion"], "kind": config["kind"], "name": config["metadata"]["name"],
            "namespace": config["metadata"]["namespace"], "uid": config["metadata"]["uid"],
            "generation": config["metadata"]["generation"], "inputHash": config["run"]["inputHash"],
            "inputs": [{"name": role, **art} for role, art in sorted(config.get("inputs", {}).items())],
            "codeVersion": config["codeVersion"], "metrics": metrics, "startTime": ko.T0, "endTime": ko.T0,
            "files": [{"path": "metrics.json", "size": len(json.dumps(metrics)), "sha256": "0" * 64}],
        }
        store.write_json("manifest.json", manifest)
        return config["run"]["uri"]

    async def run_steps(self, kind: str, name: str, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Play every step's Job to success (the last one writes the manifest); returns the last config."""
        config: dict[str, Any] = {}
        steps = KINDS[kind].steps
        for index, step in enumerate(steps):
            job = await self.wait_job(kind, name, step.name)
            config = self.job_config(job)
            await self.set_job_status(job, ko.job_running())
            if index == len(steps) - 1:
                self.write_manifest(config, metrics if metrics is not None else {KINDS[kind].key_metrics[0]: 0.5})
            await self.set_job_status(job, ko.job_succeeded(job["spec"].get("completions", 1)))
        await self.wait_condition(kind, name, "Succeeded", "True")
        return config

    def collect_garbage(self) -> int:
        """What the garbage collector does: remove objects whose controller owner is gone."""
        uids = {plain(o.raw)["metadata"].get("uid") for o in self.server.objects.values() if not o.deleted}
        removed = 0
        for obj in list(self.server.objects.values()):
            if obj.deleted:
                continue
            refs = plain(obj.raw)["metadata"].get("ownerReferences") or []
            if any(ref.get("controller") and ref["uid"] not in uids for ref in refs):
                obj.delete()
                removed += 1
        return removed


def plural_of(kind: str) -> str:
    from osmf_operator.kube import KIND_API_VERSION, PLURALS

    return PLURALS[KIND_API_VERSION[kind]][kind]


async def serve(port: int = 0) -> None:
    """Run the emulator until cancelled; print its URL first (for the benchmark's separate process)."""
    async with ApiServer() as server, kmock.Server(server, port=port or None) as http:
        declare_resources(server)
        print(str(http.url).rstrip("/"), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    try:
        asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    except KeyboardInterrupt:
        pass
