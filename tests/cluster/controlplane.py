"""A real Kubernetes control plane on loopback for the cluster test tier.

Started like controller-runtime's envtest (docs/cluster-tier.md): etcd, kube-apiserver with RBAC and
token authentication, kube-controller-manager (so Jobs make pods), kube-scheduler (so pods get
nodes) and KWOK, which keeps annotated fake nodes alive and moves pods to Running. Binaries come
from hack/build-control-plane.sh; versions from hack/control-plane-versions.env.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO / "hack" / "control-plane-versions.env"
BUILD_SCRIPT = "hack/build-control-plane.sh"

ADMIN_TOKEN = "osmf-test-admin-token"
#: A user that exists but is bound to nothing: proves that RBAC is enforced at all.
NOBODY_TOKEN = "osmf-test-nobody-token"
KCM_TOKEN = "osmf-test-kcm-token"
SCHEDULER_TOKEN = "osmf-test-scheduler-token"

#: Requests of the service accounts in the operator's namespace go to the audit log.
AUDITED_GROUP = "system:serviceaccounts:osmf-system"

#: KWOK manages only nodes carrying this annotation (never a real node by accident).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")


def read_versions() -> dict[str, str]:
    versions = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key] = value
    return versions


def tools_dir() -> Path:
    return Path(os.environ.get("OSMF_TOOLS_DIR") or Path.home() / ".cache" / "osmf" / "tools")


@dataclasses.dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    etcd: Path
    kwok: Path
    helm: Path

    @classmethod
    def expected(cls) -> Binaries:
        v, tools = read_versions(), tools_dir()
        k8s = tools / f"kubernetes-{v['KUBERNETES_VERSION']}"
        return cls(
            kube_apiserver=k8s / "kube-apiserver",
            kube_controller_manager=k8s / "kube-controller-manager",
            kube_scheduler=k8s / "kube-scheduler",
            kubectl=k8s / "kubectl",
            etcd=tools / f"etcd-{v['ETCD_VERSION']}" / "etcd",
            kwok=tools / f"kwok-{v['KWOK_VERSION']}" / "kwok",
            helm=tools / f"helm-{v['HELM_VERSION']}" / "helm",
        )

    def missing(self) -> list[Path]:
        return [p for p in dataclasses.astuple(self) if not os.access(p, os.X_OK)]


def find_binaries() -> tuple[Binaries | None, str]:
    """The built binaries, or None and the reason to show as the skip message."""
    bins = Binaries.expected()
    missing = bins.missing()
    if not missing:
        return bins, ""
    error_file = tools_dir() / "build-error.txt"
    if error_file.exists():
        return None, " ".join(error_file.read_text().split())
    names = ", ".join(str(p) for p in missing)
    return None, f"control plane binaries not built ({names}): run `make control-plane` ({BUILD_SCRIPT})"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_pki(pki: Path) -> None:
    """A CA, the apiserver's serving cert for 127.0.0.1, and the service-account signing key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    import ipaddress

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(k: rsa.RSAPrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "osmf-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv_key = key()
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(minutes=5))
           .not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
               x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
               x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]), critical=False)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                          critical=False)
           .sign(ca_key, hashes.SHA256()))
    pki.mkdir(parents=True, exist_ok=True)
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.crt").write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.key").write_bytes(pem_key(srv_key))
    (pki / "sa.key").write_bytes(pem_key(key()))


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the process that started it dies (Linux), so a
    killed test run leaves no control plane or job process behind."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


class Process:
    """One component, its output in <workdir>/logs/<name>.log."""

    def __init__(self, name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None):
        self.name, self.argv = name, argv
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                      preexec_fn=die_with_parent)

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}: "
                               f"{tail(self.log_path, 5)}")

    def stop(self, grace: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class GiveUp(RuntimeError):
    """Raised by a `wait_for` check when waiting longer cannot help (e.g. a crash loop)."""


def wait_for(what: str, check, timeout: float, interval: float = 0.2, processes=()) -> Any:
    """Poll `check` until it returns a truthy value; raise with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for p in processes:
            p.check_alive()
        try:
            result = check()
            if result:
                return result
        except GiveUp:
            raise
        except Exception as e:  # noqa: BLE001 - retried until the deadline, then reported
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


@dataclasses.dataclass
class FakeNode:
    name: str
    labels: dict[str, str]
    taints: list[dict[str, str]]
    capacity: dict[str, str]

    def manifest(self) -> dict[str, Any]:
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "type": "kwok", **self.labels}
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": labels,
                         "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1],
                                         "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"taints": self.taints},
            "status": {"capacity": self.capacity, "allocatable": self.capacity},
        }


TIER_VALUES = Path(__file__).parent / "values-test.yaml"
H100_NODES = ("h100-0", "h100-1")
CPU_NODE = "cpu-0"
GPUS_PER_H100_NODE = 8


def tier_values() -> dict[str, Any]:
    """The chart values the tier installs with (operator settings under `settings`)."""
    return yaml.safe_load(TIER_VALUES.read_text())


def fake_nodes(settings: dict[str, Any]) -> list[FakeNode]:
    """H100 nodes that the settings' default GPU pool selects and tolerates, and one CPU node."""
    pool = settings["nodePools"][settings.get("defaultGpuPool", "h100")]
    gpu = pool.get("gpuResource", "nvidia.com/gpu")
    taints = [{"key": t["key"], "value": t.get("value") or "present",
               "effect": t.get("effect") or "NoSchedule"}
              for t in pool.get("tolerations", []) if t.get("key")]
    labels = {**pool.get("nodeSelector", {}), "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    nodes = [FakeNode(name, labels, taints, {"cpu": "96", "memory": "1Ti", "pods": "110",
                                             gpu: str(GPUS_PER_H100_NODE)})
             for name in H100_NODES]
    nodes.append(FakeNode(CPU_NODE, dict(settings.get("cpuNodeSelector", {})), [],
                          {"cpu": "32", "memory": "128Gi", "pods": "110"}))
    return nodes


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + KWOK on 127.0.0.1."""

    def __init__(self, bins: Binaries, workdir: Path):
        self.bins, self.workdir = bins, workdir
        self.logdir = workdir / "logs"
        self.pki = workdir / "pki"
        self.processes: dict[str, Process] = {}
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        # Where the fake nodes' "kubelet" serves pod logs (the pod bridge, tests/cluster/kubeletlogs.py).
        self.kubelet_port = free_port()
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        self.audit_log = workdir / "logs" / "audit.jsonl"
        # kubectl's discovery cache, per session; cleared when CRDs are installed.
        self.kubectl_cache = workdir / "kubectl-cache"

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, kwok_config: Path | None = None) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        _write_pki(self.pki)
        self._start_etcd()
        self._start_apiserver()
        self.write_kubeconfig(self.admin_kubeconfig, ADMIN_TOKEN)
        kcm_kubeconfig = self.write_kubeconfig(self.workdir / "kcm.kubeconfig", KCM_TOKEN)
        sched_kubeconfig = self.write_kubeconfig(self.workdir / "scheduler.kubeconfig",
                                                 SCHEDULER_TOKEN)
        self._spawn("kube-controller-manager", [
            str(self.bins.kube_controller_manager),
            f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}",
            f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            "--node-monitor-grace-period=60s",
            "--v=1",
        ])
        self._spawn("kube-scheduler", [
            str(self.bins.kube_scheduler),
            f"--kubeconfig={sched_kubeconfig}",
            f"--authentication-kubeconfig={sched_kubeconfig}",
            f"--authorization-kubeconfig={sched_kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--v=1",
        ])
        kwok_argv = [
            str(self.bins.kwok),
            f"--kubeconfig={self.admin_kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
            f"--server-address=127.0.0.1:{free_port()}",
            "--node-lease-duration-seconds=40",
        ]
        if kwok_config is not None:
            kwok_argv.append(f"--config={kwok_config}")
        self._spawn("kwok", kwok_argv)
        # The service account controller creates `default` in every namespace; pods need it.
        wait_for("the default ServiceAccount (kube-controller-manager running)",
                 lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default",
                                      check=False).returncode == 0,
                 timeout=60, processes=self.processes.values())

    def stop(self) -> None:
        for name in ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver",
                     "etcd"]:
            proc = self.processes.pop(name, None)
            if proc is not None:
                proc.stop()
        shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)

    def _spawn(self, name: str, argv: list[str]) -> Process:
        proc = Process(name, argv, self.logdir)
        self.processes[name] = proc
        return proc

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            str(self.bins.etcd),
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                return json.load(r).get("health") == "true"

        wait_for("etcd /health", healthy, timeout=30, processes=[self.processes["etcd"]])

    def _start_apiserver(self) -> None:
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(
            f'{ADMIN_TOKEN},osmf-test-admin,1,"system:masters"\n'
            f"{NOBODY_TOKEN},osmf-test-nobody,2\n"
            f"{KCM_TOKEN},system:kube-controller-manager,3\n"
            f"{SCHEDULER_TOKEN},system:kube-scheduler,4\n")
        # Audit every request of the operator's namespace's service accounts (the chart's operator):
        # tests compare what the operator did with what its ClusterRole grants.
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump({
            "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata", "userGroups": [AUDITED_GROUP]}, {"level": "None"}]}))
        self._spawn("kube-apiserver", [
            str(self.bins.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={self.pki / 'apiserver.crt'}",
            f"--tls-private-key-file={self.pki / 'apiserver.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            # As OpenShift: an owner reference with blockOwnerDeletion needs the right to update
            # the owner's finalizers (the operator's children carry one).
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            f"--token-auth-file={tokens}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki / 'sa.key'}",
            f"--service-account-signing-key-file={self.pki / 'sa.key'}",
            f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--allow-privileged=true",
            # Pod logs: the fake nodes' kubelet endpoint is the pod bridge, on 127.0.0.1, with a
            # certificate of the tier's CA.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={self.pki / 'ca.crt'}",
            # The kubernetes Service cannot point at loopback; nothing in the tier dials it.
            "--endpoint-reconciler-type=none",
            "--v=1",
        ])
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))

        def ready() -> bool:
            req = urllib.request.Request(f"{self.server}/readyz",
                                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                return r.status == 200

        wait_for("kube-apiserver /readyz", ready, timeout=120, interval=0.5,
                 processes=[self.processes["etcd"], self.processes["kube-apiserver"]])

    # --- clients ---------------------------------------------------------------------------
    def write_kubeconfig(self, path: Path, token: str, namespace: str = "default") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "osmf-test",
            "clusters": [{"name": "osmf-test", "cluster": {
                "server": self.server, "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "osmf-test", "context": {
                "cluster": "osmf-test", "user": "user", "namespace": namespace}}],
        }))
        return path

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [str(self.bins.kubectl), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
                f"--cache-dir={self.kubectl_cache}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}): "
                               f"{result.stderr.strip()}")
        return result

    def apply(self, manifests: list[dict[str, Any]] | str, *, namespace: str | None = None,
              kubeconfig: Path | None = None, server_side: bool = True, timeout: float = 60
              ) -> subprocess.CompletedProcess:
        text = manifests if isinstance(manifests, str) else yaml.safe_dump_all(manifests)
        args = ["apply", "-f", "-"] + (["--server-side", "--field-manager=osmf-tests"]
                                       if server_side else [])
        if namespace:
            args += ["-n", namespace]
        return self.kubectl(*args, kubeconfig=kubeconfig, input=text, timeout=timeout)

    def get_json(self, *args: str, kubeconfig: Path | None = None) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def install_crds(self, paths: list[Path], timeout: float = 60) -> list[str]:
        """Apply CRDs from files, wait until they are Established, and drop kubectl's discovery cache."""
        return self.establish_crds([yaml.safe_load(p.read_text()) for p in paths], timeout)

    def establish_crds(self, docs: list[dict[str, Any]], timeout: float = 60) -> list[str]:
        """Apply CRDs, wait until they are Established, and drop kubectl's discovery cache."""
        self.apply(docs)
        names = [f"crd/{d['metadata']['name']}" for d in docs]
        self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s", *names,
                     timeout=timeout + 10)
        shutil.rmtree(self.kubectl_cache, ignore_errors=True)
        return names

    def create_namespace(self, name: str) -> None:
        """A namespace whose `default` ServiceAccount exists (pods are refused until it does)."""
        self.kubectl("create", "namespace", name)
        wait_for(f"ServiceAccount default in namespace {name}",
                 lambda: self.kubectl("get", "serviceaccount", "default", "-n", name,
                                      check=False).returncode == 0,
                 timeout=60, processes=self.processes.values())

    def add_nodes(self, nodes: list[FakeNode], timeout: float = 60) -> None:
        self.apply([n.manifest() for n in nodes], server_side=False)
        for node in nodes:  # pod logs go to the pod bridge; KWOK keeps addresses it finds
            self.kubectl("patch", "node", node.name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": node.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}}}}))

        def all_ready() -> bool:
            # Ready, and the node lifecycle controller has lifted its not-ready taint (set on
            # every new node until it reports Ready), so the scheduler may use the node.
            items = self.get_json("nodes")["items"]
            ready = {n["metadata"]["name"] for n in items
                     if any(c["type"] == "Ready" and c["status"] == "True"
                            for c in n.get("status", {}).get("conditions", []))
                     and not any(t["key"].startswith("node.kubernetes.io/")
                                 for t in n["spec"].get("taints", []))}
            return all(n.name in ready for n in nodes)

        wait_for("KWOK to mark the fake nodes Ready (and untainted)", all_ready, timeout=timeout,
                 interval=0.5, processes=self.processes.values())

    def audit_events(self) -> list[dict[str, Any]]:
        """Audited requests (the operator's), oldest first."""
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line]

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for log in sorted(self.logdir.glob("*.log")):  # not the audit log: it is JSON for tests
            parts.append(f"----- {log.name} (last {lines} lines) -----\n{tail(log, lines)}")
        return "\n".join(parts)
