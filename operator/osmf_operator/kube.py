"""The only module that talks to the Kubernetes API (the official `kubernetes` client, synchronous).

Objects go in and come out as plain dicts (the builders' shapes); nothing is deserialised into the
client's model classes. kopf runs the sync calls in its thread pool.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from osmf_core.api import API_VERSION, KINDS

from .builders.pod import LABEL_KIND, LABEL_NAME, label_value

COMPONENT = "osmf-operator"
# Concurrent API calls: kopf's worker threads (handlers.py sizes its pool to this) share one client.
CONNECTIONS = 16
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
SPEC_HASH_ANNOTATION = "osmf.dev/spec-hash"

# apiVersion → kind → plural, for everything the operator reads or writes.
PLURALS: dict[str, dict[str, str]] = {
    API_VERSION: {kind: info.plural for kind, info in KINDS.items()},
    "batch/v1": {"Job": "jobs"},
    "v1": {"ConfigMap": "configmaps", "Service": "services", "Pod": "pods", "Event": "events", "Secret": "secrets"},
    "serving.kserve.io/v1beta1": {"InferenceService": "inferenceservices"},
    "kueue.x-k8s.io/v1beta1": {"Workload": "workloads"},
}
KIND_API_VERSION = {kind: api for api, kinds in PLURALS.items() for kind in kinds}


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


class Conflict(KubeError):
    """409 on a write with a resourceVersion precondition: someone wrote first; re-read and retry."""


def path_for(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    api_version = KIND_API_VERSION[kind]
    plural = PLURALS[api_version][kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def matches(obj: dict[str, Any], labels: dict[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def spec_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj.get("spec"), sort_keys=True).encode()).hexdigest()[:16]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    def __init__(self, api_client: k8s.ApiClient):
        self.api = api_client

    @classmethod
    def from_config(cls) -> "Kube":
        """In-cluster credentials, else the local kubeconfig (the client library finds them)."""
        try:
            k8s_config.load_incluster_config()
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()
        configuration = k8s.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = CONNECTIONS
        return cls(k8s.ApiClient(configuration))

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> tuple["Kube", str]:
        """For the CLI: the kubeconfig kubectl would use (KUBECONFIG, ~/.kube/config; else in-cluster),
        and the namespace of its current context."""
        try:
            k8s_config.load_kube_config(config_file=path, context=context)
            contexts, active = k8s_config.list_kube_config_contexts(config_file=path)
            active = next((c for c in contexts if c["name"] == context), active) if context else active
            namespace = ((active or {}).get("context") or {}).get("namespace") or "default"
        except (k8s_config.ConfigException, OSError) as error:
            try:
                k8s_config.load_incluster_config()
            except k8s_config.ConfigException:
                raise KubeError(0, f"no cluster to talk to: {' '.join(str(error).split())}; set KUBECONFIG or pass --kubeconfig") from None
            namespace = "default"
        configuration = k8s.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = CONNECTIONS
        return cls(k8s.ApiClient(configuration)), namespace

    @classmethod
    def for_server(cls, host: str, token: str | None = None, verify_ssl: bool = True) -> "Kube":
        configuration = k8s.Configuration()
        configuration.host = host.rstrip("/")
        configuration.verify_ssl = verify_ssl
        configuration.connection_pool_maxsize = CONNECTIONS
        if token:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return cls(k8s.ApiClient(configuration))

    # -- transport --------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> Any:
        data = self._call(method, path, body, query, content_type).data
        return json.loads(data) if data else None

    def _call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
              content_type: str = "application/json", timeout: Any = REQUEST_TIMEOUT, accept: str = "application/json") -> Any:
        try:
            return self.api.call_api(
                path, method, query_params=list((query or {}).items()),
                header_params={"Accept": accept, "Content-Type": content_type},
                body=body, auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout,
            )
        except k8s.ApiException as error:
            message = error.reason or ""
            try:
                message = json.loads(error.body).get("message") or message
            except (TypeError, ValueError, AttributeError):
                pass
            kind = Conflict if error.status == 409 and method in ("PATCH", "PUT") else KubeError
            raise kind(error.status or 0, message) from None
        except Exception as error:  # noqa: BLE001 - connection refused, timeouts, TLS: all "not reached"
            raise KubeError(0, f"{method} {path}: {error}") from None

    # -- generic verbs ----------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", path_for(kind, namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Objects with these labels (also filtered here: selectors are the server's, trust is ours)."""
        try:
            listing = self.request("GET", path_for(kind, namespace), query={"labelSelector": selector(labels)})
        except KubeError as error:
            if error.status == 404:  # the resource type is not installed (no Kueue, no KServe)
                return []
            raise
        return [item for item in (listing or {}).get("items") or [] if matches(item, labels)]

    def create(self, obj: dict[str, Any]) -> bool:
        """Create; an object that already exists is fine (names are deterministic). True when created."""
        meta = obj["metadata"]
        try:
            self.request("POST", path_for(obj["kind"], meta.get("namespace")), body=obj)
            return True
        except KubeError as error:
            if error.status == 409:
                return False
            raise

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete in the background (dependents such as a Job's pods are collected too); gone already is fine."""
        try:
            self.request("DELETE", path_for(kind, namespace, name),
                         body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"})
            return True
        except KubeError as error:
            if error.status == 404:
                return False
            raise

    def merge_patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        return self.request("PATCH", path_for(kind, namespace, name, subresource), body=patch,
                            content_type="application/merge-patch+json")

    # -- what the operator does -------------------------------------------------------------------

    def owned_jobs(self, kind: str, namespace: str, name: str, uid: str) -> list[dict[str, Any]]:
        jobs = self.list("Job", namespace, {LABEL_KIND: kind, LABEL_NAME: label_value(name)})
        return [job for job in jobs if owned_by(job, uid)]

    def delete_job(self, namespace: str, name: str, config_map: str | None = None, service: str | None = None) -> None:
        self.delete("Job", namespace, name)
        if config_map:
            self.delete("ConfigMap", namespace, config_map)
        if service:
            self.delete("Service", namespace, service)

    def patch_status(self, kind: str, namespace: str, name: str, status_patch: dict[str, Any], resource_version: str | None) -> None:
        """A merge patch of /status; with a resourceVersion the API server answers 409 if the object moved on."""
        body: dict[str, Any] = {"status": status_patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self.merge_patch(kind, namespace, name, body, subresource="status")

    def apply(self, obj: dict[str, Any]) -> str:
        """Create, or bring the spec in line when ours changed: 'created', 'updated' or 'unchanged'."""
        meta = obj["metadata"]
        desired = json.loads(json.dumps(obj))
        desired["metadata"].setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = spec_hash(obj)
        if self.create(desired):
            return "created"
        existing = self.get(obj["kind"], meta["namespace"], meta["name"]) or {}
        if ((existing.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION) == spec_hash(obj):
            return "unchanged"
        patch = {"metadata": {"labels": meta["labels"], "annotations": {SPEC_HASH_ANNOTATION: spec_hash(obj)}},
                 "spec": desired["spec"]}
        self.merge_patch(obj["kind"], meta["namespace"], meta["name"], patch)
        return "updated"

    def pod_log(self, namespace: str, pod: str, container: str, follow: bool = False) -> Iterator[bytes]:
        """A container's log as it arrives (`follow`: until the container ends or the caller stops)."""
        query = {"container": container, **({"follow": "true"} if follow else {})}
        response = self._call("GET", path_for("Pod", namespace, pod, "log"), query=query, accept="*/*",
                              timeout=(REQUEST_TIMEOUT[0], None) if follow else REQUEST_TIMEOUT)
        try:
            yield from response.stream(4096, decode_content=True)
        finally:
            response.release_conn()

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's `data` (values base64, as the API returns them); None when it does not exist."""
        secret = self.get("Secret", namespace, name)
        return None if secret is None else secret.get("data") or {}

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return self.list("Pod", namespace, {"batch.kubernetes.io/job-name": job})

    def predictor_pods(self, namespace: str, isvc: str) -> list[dict[str, Any]]:
        return self.list("Pod", namespace, {"serving.kserve.io/inferenceservice": isvc})

    def workload_for_job(self, namespace: str, job_uid: str) -> dict[str, Any] | None:
        workloads = self.list("Workload", namespace, {"kueue.x-k8s.io/job-uid": job_uid})
        return workloads[0] if workloads else None

    def post_event(self, involved: dict[str, Any], type_: str, reason: str, message: str, now: datetime | None = None) -> None:
        """A core/v1 Event on the resource (what `kubectl describe` shows)."""
        moment = rfc3339(now or datetime.now(timezone.utc))
        namespace = involved["namespace"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{involved['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": involved["name"],
                "namespace": namespace, "uid": involved["uid"],
                **({"resourceVersion": involved["resourceVersion"]} if involved.get("resourceVersion") else {}),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": moment,
            "lastTimestamp": moment,
            "count": 1,
        }
        self.create(event)
