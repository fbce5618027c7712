"""Kueue and JobSet, the real controllers, beside the tier's apiserver.

Both are controller-runtime managers with admission webhooks (and Kueue with conversion webhooks
for its v1beta1 ↔ v1beta2 CRDs). hack/build-control-plane.sh builds each from its Go module and
copies that module's CRDs and webhook configurations next to the binary. Here each runs as a process
on loopback with the admin kubeconfig, its webhook serving certificate issued by the tier's CA, and
the module's webhook configurations rewritten to call `https://127.0.0.1:<port><path>` (instead of
an in-cluster Service) with the CA as caBundle. Only the webhooks of what the manager actually serves
are installed (Kueue's for Jobs, JobSets and its own kinds): an installed webhook for a framework the
manager does not run would refuse every pod or Deployment in the cluster.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import os
import shutil
import socket
import ssl
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

from tests.cluster.controlplane import (ControlPlane, Process, free_port, issue_serving_cert,
                                        read_versions, tools_dir, wait_for)

#: Kueue manages Jobs and JobSets only in namespaces with this label (its webhooks and
#: managedJobsNamespaceSelector), so the rest of the tier never waits on it.
KUEUE_NAMESPACE_LABEL = ("osmf.test/kueue", "managed")


@dataclasses.dataclass(frozen=True)
class ControllerBuild:
    name: str
    directory: Path

    @property
    def binary(self) -> Path:
        return self.directory / self.name

    @property
    def crds(self) -> list[Path]:
        return sorted((self.directory / "crds").glob("*.yaml"))

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all((self.directory / "webhooks.yaml").read_text()) if d]


def find_controller(name: str) -> tuple[ControllerBuild | None, str]:
    """The built controller (`kueue`, `jobset`), or None and the reason to skip with."""
    version = read_versions()[f"{name.upper()}_VERSION"]
    build = ControllerBuild(name, tools_dir() / f"{name}-{version}")
    if build.binary.exists() and build.crds and (build.directory / "webhooks.yaml").exists():
        return build, ""
    error = tools_dir() / "build-error.txt"
    if error.exists():
        return None, " ".join(error.read_text().split())
    return None, f"{build.directory} not built: run `make control-plane` (hack/build-control-plane.sh)"


class Controller:
    """One manager process, its CRDs and its webhook configurations on the tier's apiserver."""

    def __init__(self, cp: ControlPlane, build: ControllerBuild, config: Callable[[dict[str, Any]], dict[str, Any]],
                 webhook: Callable[[dict[str, Any]], dict[str, Any] | None], extra_args: tuple[str, ...] = (),
                 etc_files: dict[str, Path] | None = None, converted: frozenset[str] = frozenset()):
        """`webhook` shapes each of the module's webhooks as its release installs it (selectors), or drops it (None).
        `etc_files`: files the manager reads at fixed paths under /etc (path relative to /etc → source); it
        then runs in a private mount namespace whose /etc holds them (and the host's resolver files)."""
        self.cp, self.build, self.webhook = cp, build, webhook
        self.extra_args, self.etc_files, self.converted = extra_args, etc_files or {}, converted
        self.workdir = cp.workdir / build.name
        self.webhook_port, self.health_port = free_port(), free_port()
        self.cert_dir = self.workdir / "certs"
        self.config = config({"webhook": {"port": self.webhook_port, "host": "127.0.0.1", "certDir": str(self.cert_dir)},
                              "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
                              "metrics": {"bindAddress": "0"}, "leaderElection": {"leaderElect": False},
                              "internalCertManagement": {"enable": False}})
        self.process: Process | None = None
        self.webhook_configurations: list[str] = []
        self.crd_names: list[str] = []

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode((self.cp.pki / "ca.crt").read_bytes()).decode()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.webhook_port}{path}"

    # --- CRDs, with conversion through the manager for those its release converts ----------------
    def crds(self) -> list[dict[str, Any]]:
        out = []
        for path in self.build.crds:
            crd = yaml.safe_load(path.read_text())
            if crd["metadata"]["name"] in self.converted:
                crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                    "clientConfig": {"url": self.url("/convert"), "caBundle": self.ca_bundle},
                    "conversionReviewVersions": ["v1"]}}
            out.append(crd)
        return out

    def install_crds(self) -> None:
        folder = self.workdir / "crds"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for crd in self.crds():
            path = folder / f"{crd['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(crd))
            paths.append(path)
        self.crd_names = self.cp.install_crds(paths, timeout=120)

    # --- webhooks -----------------------------------------------------------------------------------
    def webhook_documents(self) -> list[dict[str, Any]]:
        docs = []
        for doc in self.build.webhooks:
            doc = copy.deepcopy(doc)
            doc["metadata"] = {"name": f"{self.build.name}-{doc['metadata']['name']}"}
            hooks = []
            for hook in doc["webhooks"]:
                hook = self.webhook(hook)
                if hook is None:
                    continue
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": self.url(path), "caBundle": self.ca_bundle}
                hooks.append(hook)
            doc["webhooks"] = hooks
            if hooks:
                docs.append(doc)
        return docs

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self, timeout: float = 180) -> None:
        issue_serving_cert(self.cp.pki, self.cert_dir, f"{self.build.name}-webhook")
        config_file = self.workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(self.config))
        self.install_crds()
        argv = [str(self.build.binary), f"--config={config_file}", f"--kubeconfig={self.cp.admin_kubeconfig}",
                *self.extra_args, "--zap-log-level=info"]
        self.process = self.cp._spawn(self.build.name, self.with_etc(argv))
        wait_for(f"{self.build.name} to be ready (healthz/readyz and its webhook server)", self.ready,
                 timeout=timeout, interval=0.5, processes=[self.process, *self.cp.processes.values()])
        docs = self.webhook_documents()
        self.cp.apply(docs)
        self.webhook_configurations = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs]

    def with_etc(self, argv: list[str]) -> list[str]:
        """argv run with its own /etc (a bind mount in a private mount namespace) when it needs fixed paths there."""
        if not self.etc_files:
            return argv
        etc = self.workdir / "etc"
        for name in ("hosts", "resolv.conf", "nsswitch.conf"):
            if Path("/etc", name).exists():
                (etc / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(Path("/etc", name), etc / name)
        for relative, source in self.etc_files.items():
            (etc / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, etc / relative)
        unshare = ["unshare", "--mount", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
        return [*unshare, "sh", "-c", 'mount --bind "$0" /etc && exec "$@"', str(etc), *argv]

    def ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as response:
            if response.status != 200:
                return False
        context = ssl.create_default_context(cafile=str(self.cp.pki / "ca.crt"))
        with socket.create_connection(("127.0.0.1", self.webhook_port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return True

    def stop(self, uninstall: bool = False) -> None:
        """Stop the manager; with `uninstall`, remove its webhook configurations and CRDs first
        (a webhook whose server is gone refuses what it intercepts)."""
        if uninstall:
            for name in self.webhook_configurations:
                self.cp.kubectl("delete", name, "--ignore-not-found")
        if self.process is not None:
            self.process.stop()
            self.cp.processes.pop(self.build.name, None)
            self.process = None
        if uninstall and self.crd_names:
            self.cp.kubectl("delete", *self.crd_names, "--ignore-not-found", "--wait=true", timeout=180)
            wait_for(f"{self.build.name}'s CRDs to be gone", lambda: all(
                self.cp.kubectl("get", n, check=False).returncode != 0 for n in self.crd_names), timeout=120)


def kueue(cp: ControlPlane, build: ControllerBuild) -> Controller:
    """Kueue managing Jobs and JobSets (only in namespaces labelled KUEUE_NAMESPACE_LABEL)."""
    key, value = KUEUE_NAMESPACE_LABEL
    selector = {"matchLabels": {key: value}}

    def config(base: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration", "namespace": "kueue-system",
                **base, "manageJobsWithoutQueueName": False, "managedJobsNamespaceSelector": selector,
                "integrations": {"frameworks": ["batch/job", "jobset.x-k8s.io/jobset"]}}

    def webhook(hook: dict[str, Any]) -> dict[str, Any] | None:
        groups = {group for rule in hook["rules"] for group in rule["apiGroups"]}
        if not groups <= {"kueue.x-k8s.io", "batch", "jobset.x-k8s.io"}:
            return None  # a framework this Kueue does not run
        if groups & {"batch", "jobset.x-k8s.io"}:
            hook["namespaceSelector"] = selector
        return hook

    cp.kubectl("create", "namespace", "kueue-system", check=False)
    # Without its own certificate management, Kueue v0.17 reads a metrics serving certificate from the
    # fixed path /etc/kueue/metrics/certs (cmd/kueue/main.go) even when metrics are off: it gets one
    # issued by the tier's CA in a private /etc. The visibility API is an aggregated apiserver of its
    # own; the tier does not use it.
    certs = cp.workdir / "kueue" / "metrics-certs"
    issue_serving_cert(cp.pki, certs, "kueue-metrics")
    # The CRDs whose versions differ and which Kueue converts (config/components/crd/kustomization.yaml's
    # webhook_in_* patches); the others serve identical versions with the API server's own conversion.
    converted = frozenset(f"{plural}.kueue.x-k8s.io" for plural in
                          ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters"))
    return Controller(cp, build, config, webhook, extra_args=("--feature-gates=VisibilityOnDemand=false",),
                      etc_files={f"kueue/metrics/certs/{f}": certs / f for f in ("tls.crt", "tls.key")},
                      converted=converted)


def jobset(cp: ControlPlane, build: ControllerBuild) -> Controller:
    def config(base: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "config.jobset.x-k8s.io/v1alpha1", "kind": "Configuration", **base}

    def webhook(hook: dict[str, Any]) -> dict[str, Any]:
        # As JobSet's release installs them (config/components/webhook/patches): its pod webhooks
        # (exclusive placement) see only pods of JobSets.
        if any("pods" in rule["resources"] for rule in hook["rules"]):
            hook["objectSelector"] = {"matchExpressions": [{"key": "jobset.sigs.k8s.io/jobset-name", "operator": "Exists"}]}
        return hook

    return Controller(cp, build, config, webhook)
