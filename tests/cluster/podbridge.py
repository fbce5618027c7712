"""Test-only kubelet stand-in: runs each pod that lands on a fake node as a local process.

KWOK marks a scheduled pod Running; the bridge then runs its container's real command on this
machine with the pod's environment (values, fieldRefs such as the Job completion index, ConfigMap
and Secret references) and its ConfigMap/Secret/emptyDir volumes materialised in a temporary
folder (mount paths in the command, args and env are rewritten to that folder). When the process
exits, the bridge writes the real exit code into the pod's status (Succeeded on 0, else Failed),
which is what the Job controller, its podFailurePolicy and the operator then act on. A pod deleted
while running has its process killed.

Like the kubelet's service-account token projection, a pod that mounts its token gets a
kubeconfig (KUBECONFIG) holding a real token of its ServiceAccount from the TokenRequest API, so
a pod that talks to the API (the operator's own Deployment) does so as its ServiceAccount, with
exactly the RBAC bound to it.

Pods share this machine's network. Where a pod declares a containerPort that another running pod
of the bridge holds (two replicas of one Deployment), the bridge moves it to a free port in the
command, args and env, as a container runtime maps ports; `ports_of` tells a test where each pod
listens.

This is deliberately small: one main container per pod (init containers run first), `python` in
a command means this interpreter, and nothing that needs a real container runtime.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.controlplane import ControlPlane, die_with_parent
from tests.cluster.kubeletlogs import KubeletLogServer

POLL_SECONDS = 0.5
_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class BridgeError(RuntimeError):
    """The pod uses something the bridge cannot reproduce locally (reported as a failed pod)."""


@dataclass
class Run:
    pod: dict[str, Any]
    started: str
    process: subprocess.Popen | None = None
    thread: threading.Thread | None = None
    log_path: Path | None = None
    exit_code: int | None = None
    killed: bool = False
    kubeconfig: Path | None = None
    restarts: int = 0
    ports: dict[int, int] = field(default_factory=dict)  # containerPort → port on this machine


class PodBridge:
    def __init__(self, cp: ControlPlane, workdir: Path, python: str = sys.executable,
                 extra_env: dict[str, str] | None = None):
        from kubernetes import client, config

        self.cp = cp
        self.workdir = workdir
        self.python = python
        self.extra_env = extra_env or {}
        self.api = client.CoreV1Api(config.new_client_from_config(str(cp.admin_kubeconfig)))
        self.fake_nodes: set[str] = set()
        self.runs: dict[str, Run] = {}  # by pod uid
        # Only pods of these namespaces run (others stay as KWOK leaves them: Running, no process).
        self.namespaces: set[str] = set()
        self.ignored: set[tuple[str, str]] = set()  # (namespace, osmf.dev/name) never run
        self.finished: list[dict[str, Any]] = []  # {namespace, name, exit_code, command}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._logs: KubeletLogServer | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._logs = KubeletLogServer(self.cp.kubelet_port, self.cp.pki / "apiserver.crt",
                                      self.cp.pki / "apiserver.key", self.log_of).start()
        self._thread = threading.Thread(target=self._loop, name="pod-bridge", daemon=True)
        self._thread.start()

    def log_of(self, namespace: str, name: str):
        """The newest run of pod `name`: its output file and whether it still runs (the log endpoint)."""
        with self._lock:
            runs = [r for r in self.runs.values() if r.pod["metadata"]["namespace"] == namespace
                    and r.pod["metadata"]["name"] == name and r.log_path is not None]
        if not runs:
            return None
        run = runs[-1]
        return run.log_path, lambda: run.exit_code is None and not run.killed

    def stop(self) -> None:
        if self._logs is not None:
            self._logs.stop()
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        with self._lock:
            for run in self.runs.values():
                self._kill(run, graceful=False)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as error:  # noqa: BLE001 - an API hiccup must not end the bridge
                (self.workdir / "bridge-errors.log").open("a").write(f"{now()} {error!r}\n")
            self._stop.wait(POLL_SECONDS)

    def _sync(self) -> None:
        nodes = self.api.list_node().items
        self.fake_nodes = {n.metadata.name for n in nodes
                           if (n.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake"}
        # Only the namespaces it serves: listing every pod twice a second costs the API server (and
        # this process) more than the operator under test when a benchmark makes a thousand of them.
        pods = [pod for namespace in sorted(self.namespaces) for pod in self.api.list_namespaced_pod(namespace).items]
        alive = set()
        for pod_obj in pods:
            pod = self.api.api_client.sanitize_for_serialization(pod_obj)
            uid = pod["metadata"]["uid"]
            alive.add(uid)
            deleting = pod["metadata"].get("deletionTimestamp")
            with self._lock:
                run = self.runs.get(uid)
            if run is not None:
                if deleting:
                    self._kill(run)
                continue
            owner = (pod["metadata"]["namespace"],
                     (pod["metadata"].get("labels") or {}).get("osmf.dev/name", ""))
            if (not deleting and pod["metadata"]["namespace"] in self.namespaces
                    and owner not in self.ignored
                    and pod["spec"].get("nodeName") in self.fake_nodes
                    and pod.get("status", {}).get("phase") == "Running"):
                self._launch(pod)
        with self._lock:
            for uid, run in list(self.runs.items()):
                if uid not in alive:
                    self._kill(run)

    # --- running one pod ----------------------------------------------------------------------
    def _launch(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        run = Run(pod=pod, started=now())
        with self._lock:
            self.runs[meta["uid"]] = run
        run.thread = threading.Thread(target=self._run_pod, args=(run,), daemon=True,
                                      name=f"pod-{meta['namespace']}-{meta['name']}")
        run.thread.start()

    def _run_pod(self, run: Run) -> None:
        pod = run.pod
        meta = pod["metadata"]
        root = self.workdir / meta["namespace"] / f"{meta['name']}-{meta['uid'][:8]}"
        root.mkdir(parents=True, exist_ok=True)
        run.log_path = root / "output.log"
        exit_code, message = 1, ""
        try:
            mounts = self._volumes(pod, root)
            if pod["spec"].get("automountServiceAccountToken", True):
                run.kubeconfig = self._service_account_kubeconfig(pod, root)
            if len(pod["spec"]["containers"]) != 1:
                raise BridgeError("the pod bridge runs pods with exactly one container")
            self._allocate_ports(run)
            exit_code = 0
            for container in pod["spec"].get("initContainers", []):
                exit_code = self._run_container(run, container, mounts, root)
                if exit_code != 0 or run.killed:
                    break
            if exit_code == 0 and not run.killed:
                exit_code = self._run_main(run, mounts, root)
        except BridgeError as error:
            message = f"pod bridge: {error}"
            run.log_path.write_text(message + "\n")
        run.exit_code = exit_code
        if run.killed:
            return
        if exit_code != 0 and not message and pod["spec"]["containers"][0].get(
                "terminationMessagePolicy") == "FallbackToLogsOnError":
            message = log_tail_message(run.log_path)
        self.finished.append({"namespace": meta["namespace"], "name": meta["name"],
                              "exit_code": exit_code, "log": str(run.log_path)})
        self._report(pod, exit_code, run.started, message)

    def _run_main(self, run: Run, mounts: dict[str, Path], root: Path) -> int:
        """The main container; restarted in place as the kubelet does (restartPolicy, backoff)."""
        pod = run.pod
        policy = pod["spec"].get("restartPolicy", "Always")
        while True:
            exit_code = self._run_container(run, pod["spec"]["containers"][0], mounts, root)
            if run.killed or policy == "Never" or (policy == "OnFailure" and exit_code == 0):
                return exit_code
            run.restarts += 1
            meta = pod["metadata"]
            self.finished.append({"namespace": meta["namespace"], "name": meta["name"],
                                  "exit_code": exit_code, "log": str(run.log_path),
                                  "restarted": True})
            self._report_restart(pod, exit_code, run.restarts)
            if self._stop.wait(min(2 ** run.restarts, 10)) or run.killed:
                return exit_code

    def _report_restart(self, pod: dict[str, Any], exit_code: int, restarts: int) -> None:
        container = pod["spec"]["containers"][0]
        body = {"status": {"containerStatuses": [{
            "name": container["name"], "image": container.get("image", ""), "imageID": "",
            "ready": False, "restartCount": restarts, "started": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": f"exited with {exit_code}; restarting"}},
            "lastState": {"terminated": {"exitCode": exit_code,
                                         "reason": "Completed" if exit_code == 0 else "Error",
                                         "finishedAt": now()}}}]}}
        try:
            self.api.patch_namespaced_pod_status(pod["metadata"]["name"],
                                                 pod["metadata"]["namespace"], body)
        except Exception as error:  # noqa: BLE001 - the pod may be gone already
            if getattr(error, "status", None) != 404:
                raise

    def _allocate_ports(self, run: Run) -> None:
        """Each declared containerPort as is, unless another live pod of the bridge holds it."""
        from tests.cluster.controlplane import free_port

        declared = [p["containerPort"] for c in run.pod["spec"]["containers"]
                    for p in c.get("ports", [])]
        with self._lock:
            held = {port for other in self.runs.values() if other is not run and not other.killed
                    and other.exit_code is None for port in other.ports.values()}
            run.ports = {port: (free_port() if port in held else port) for port in declared}

    def _run_container(self, run: Run, container: dict[str, Any], mounts: dict[str, Path],
                       root: Path) -> int:
        env = self._env(run.pod, container)
        rewrite = self._rewriter(mounts, run.ports)
        env = {k: rewrite(v) for k, v in env.items()}
        argv = [*container.get("command", []), *container.get("args", [])]
        if not argv:
            raise BridgeError(f"container {container['name']} has no command; the bridge cannot "
                              "know the image's entrypoint")
        argv = [rewrite(_expand(a, env)) for a in argv]
        if argv[0] in ("python", "python3"):
            argv[0] = self.python
        workdir = Path(rewrite(container["workingDir"])) if container.get("workingDir") else root
        workdir.mkdir(parents=True, exist_ok=True)
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root),
                    "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **self.extra_env, **env}
        if run.kubeconfig is not None:
            full_env["KUBECONFIG"] = str(run.kubeconfig)
        timeout = run.pod["spec"].get("activeDeadlineSeconds")
        if run.killed:
            return 137
        with open(run.log_path, "ab") as log:
            log.write(f"--- {now()} start {' '.join(argv)[:300]}\n".encode())
            log.flush()
            run.process = subprocess.Popen(argv, env=full_env, cwd=workdir, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True, preexec_fn=die_with_parent)
            try:
                return run.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill(run)
                return 137

    def _kill(self, run: Run, graceful: bool = True) -> None:
        """As the kubelet does: SIGTERM, then SIGKILL after the grace period (at most 10 s here)."""
        if run.killed and graceful:
            return
        run.killed = True
        proc = run.process
        if proc is None or proc.poll() is not None:
            return
        grace = min(float(run.pod["spec"].get("terminationGracePeriodSeconds", 30)), 10.0)
        if not graceful:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return

        def terminate() -> None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        threading.Thread(target=terminate, daemon=True).start()

    def _service_account_kubeconfig(self, pod: dict[str, Any], root: Path) -> Path:
        from kubernetes import client

        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=24 * 3600))
        token = self.api.create_namespaced_service_account_token(
            account, meta["namespace"], request).status.token
        return self.cp.write_kubeconfig(root / "kubeconfig", token, namespace=meta["namespace"])

    def process_of(self, namespace: str, name_prefix: str) -> subprocess.Popen | None:
        """The live process of a pod whose name starts with `name_prefix` (e.g. the operator)."""
        with self._lock:
            for run in self.runs.values():
                meta = run.pod["metadata"]
                if (meta["namespace"] == namespace and meta["name"].startswith(name_prefix)
                        and not run.killed and run.process is not None
                        and run.process.poll() is None):
                    return run.process
        return None

    def _report(self, pod: dict[str, Any], exit_code: int, started: str, message: str) -> None:
        meta = pod["metadata"]
        finished = now()
        statuses = [{
            "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
            "restartCount": 0, "started": False,
            "state": {"terminated": {
                "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                "message": message or None, "startedAt": started, "finishedAt": finished}},
        } for c in pod["spec"]["containers"]]
        body = {"status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": statuses,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted",
                 "lastTransitionTime": finished},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted",
                 "lastTransitionTime": finished},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            ],
        }}
        try:
            self.api.patch_namespaced_pod_status(meta["name"], meta["namespace"], body)
        except Exception as error:  # noqa: BLE001 - the pod may be gone already
            if getattr(error, "status", None) != 404:
                raise

    # --- environment and volumes -------------------------------------------------------------
    def _env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._configmap(ns, source["configMapRef"])
            elif "secretRef" in source:
                data = self._secret(ns, source["secretRef"])
            else:
                raise BridgeError(f"unsupported envFrom {source}")
            env.update({prefix + k: v for k, v in data.items()})
        for var in container.get("env", []):
            if "valueFrom" not in var:
                env[var["name"]] = _expand(var.get("value", ""), env)
                continue
            ref = var["valueFrom"]
            if "fieldRef" in ref:
                env[var["name"]] = _field(pod, ref["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in ref:
                key = ref["configMapKeyRef"]
                value = self._configmap(ns, key).get(key["key"])
                if value is not None:
                    env[var["name"]] = value
            elif "secretKeyRef" in ref:
                key = ref["secretKeyRef"]
                value = self._secret(ns, key).get(key["key"])
                if value is not None:
                    env[var["name"]] = value
            elif "resourceFieldRef" in ref:
                res = ref["resourceFieldRef"]["resource"]
                kind, _, name = res.partition(".")
                env[var["name"]] = str(container.get("resources", {}).get(kind, {}).get(name, "0"))
            else:
                raise BridgeError(f"unsupported env valueFrom {ref}")
        return env

    def _configmap(self, ns: str, ref: dict[str, Any]) -> dict[str, str]:
        try:
            return self.api.read_namespaced_config_map(ref["name"], ns).data or {}
        except Exception:
            if ref.get("optional"):
                return {}
            raise BridgeError(f"ConfigMap {ns}/{ref['name']} not found") from None

    def _secret(self, ns: str, ref: dict[str, Any]) -> dict[str, str]:
        name = ref.get("name") or ref.get("secretName")
        try:
            data = self.api.read_namespaced_secret(name, ns).data or {}
        except Exception:
            if ref.get("optional"):
                return {}
            raise BridgeError(f"Secret {ns}/{name} not found") from None
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def _volumes(self, pod: dict[str, Any], root: Path) -> dict[str, Path]:
        """Materialise the pod's volumes; return mountPath → local folder (or file, for subPath)."""
        ns = pod["metadata"]["namespace"]
        local: dict[str, Path] = {}
        for volume in pod["spec"].get("volumes", []):
            target = root / "volumes" / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                self._write_items(target, self._configmap(ns, volume["configMap"]),
                                  volume["configMap"].get("items"))
            elif "secret" in volume:
                self._write_items(target, self._secret(ns, volume["secret"]),
                                  volume["secret"].get("items"))
            elif "emptyDir" in volume:
                pass
            elif "projected" in volume:
                pass  # the service-account token: jobs need no Kubernetes API access
            elif "downwardAPI" in volume:
                for item in volume["downwardAPI"].get("items", []):
                    (target / item["path"]).write_text(_field(pod, item["fieldRef"]["fieldPath"]))
            else:
                raise BridgeError(f"volume {volume['name']}: only configMap, secret, emptyDir, "
                                  "projected and downwardAPI volumes run locally")
            local[volume["name"]] = target
        mounts: dict[str, Path] = {}
        for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in local:
                    continue
                path = local[mount["name"]]
                mounts[mount["mountPath"]] = path / mount["subPath"] if mount.get("subPath") else path
        return mounts

    @staticmethod
    def _write_items(target: Path, data: dict[str, str], items: list[dict[str, str]] | None):
        if items:
            data = {i["path"]: data[i["key"]] for i in items if i["key"] in data}
        for key, value in data.items():
            path = target / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value)

    @staticmethod
    def _rewriter(mounts: dict[str, Path], ports: dict[int, int] | None = None):
        ordered = sorted(mounts.items(), key=lambda kv: -len(kv[0]))
        moved = {str(a): str(b) for a, b in (ports or {}).items() if a != b}
        # A moved port where a program takes one: `host:PORT`, `--flag=PORT` or a value of its own.
        port_pattern = re.compile(r"(?:(?<=[:=])|^)(" + "|".join(moved) + r")\b") if moved else None

        def rewrite(value: str) -> str:
            for mount_path, local in ordered:
                if mount_path in ("/dev/shm", "/tmp"):
                    continue  # the host's own are fine and paths there are not passed around
                value = value.replace(mount_path.rstrip("/"), str(local))
            if port_pattern is not None:
                value = port_pattern.sub(lambda m: moved[m.group(1)], value)
            return value

        return rewrite

    # --- what tests use ------------------------------------------------------------------------
    def serve(self, namespace: str) -> None:
        """Run the pods of this namespace from now on."""
        self.namespaces.add(namespace)

    def ignore(self, namespace: str, resource_name: str) -> None:
        """Leave the pods of this OSMF resource alone (KWOK keeps them Running, nothing runs)."""
        self.ignored.add((namespace, resource_name))

    def disrupt(self, namespace: str, pod_name: str) -> None:
        """End a running pod as an eviction does: process killed, pod Failed with DisruptionTarget."""
        with self._lock:
            run = next((r for r in self.runs.values()
                        if (r.pod["metadata"]["namespace"], r.pod["metadata"]["name"])
                        == (namespace, pod_name)), None)
        if run is None:
            raise KeyError(f"pod {namespace}/{pod_name} is not running under the bridge")
        self._kill(run, graceful=False)
        at = now()
        body = {"status": {"phase": "Failed", "reason": "Evicted",
                           "message": "evicted by the test (node drain)",
                           "conditions": [{"type": "DisruptionTarget", "status": "True",
                                           "reason": "EvictionByEvictionAPI",
                                           "message": "Eviction API: evicting",
                                           "lastTransitionTime": at}],
                           "containerStatuses": [{
                               "name": c["name"], "image": c.get("image", ""), "imageID": "",
                               "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 137, "reason": "Error",
                                                        "startedAt": run.started,
                                                        "finishedAt": at}}}
                               for c in run.pod["spec"]["containers"]]}}
        self.api.patch_namespaced_pod_status(pod_name, namespace, body)

    def _run_of(self, namespace: str, pod_name: str) -> Run:
        with self._lock:
            for run in self.runs.values():
                if (run.pod["metadata"]["namespace"], run.pod["metadata"]["name"]) == (namespace, pod_name):
                    return run
        raise KeyError(f"pod {namespace}/{pod_name} has not run under the bridge")

    def ports_of(self, namespace: str, pod_name: str) -> dict[int, int]:
        """containerPort → the port the pod's process listens on here."""
        return dict(self._run_of(namespace, pod_name).ports)

    def log_of(self, namespace: str, pod_name: str) -> str:
        path = self._run_of(namespace, pod_name).log_path
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def running_pods(self, namespace: str) -> list[str]:
        with self._lock:
            return [r.pod["metadata"]["name"] for r in self.runs.values()
                    if r.pod["metadata"]["namespace"] == namespace and not r.killed
                    and r.process is not None and r.process.poll() is None]

    def exits(self, namespace: str) -> list[dict[str, Any]]:
        return [f for f in self.finished if f["namespace"] == namespace]

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def log_tail_message(path: Path) -> str:
    """What the kubelet keeps with FallbackToLogsOnError: the log's last 80 lines, at most 2 KiB."""
    lines = [line for line in path.read_text(errors="replace").splitlines()
             if not line.startswith("--- ")]  # the bridge's own start markers
    return "\n".join(lines[-80:])[-2048:]


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (unknown variables stay as written)."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _field(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    simple = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
              "metadata.uid": meta["uid"], "spec.nodeName": pod["spec"].get("nodeName", ""),
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
              "status.podIP": pod.get("status", {}).get("podIP", "127.0.0.1"),
              "status.hostIP": pod.get("status", {}).get("hostIP", "127.0.0.1")}
    if path in simple:
        return simple[path]
    match = _FIELD.match(path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise BridgeError(f"unsupported fieldRef {path}")
