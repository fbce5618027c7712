"""Upgrading a 0.1.0 install, and two peered operator replicas (issue 14, points 2 and 7).

On a control plane of its own (the session's holds the current CRDs and other tests' resources; an
old schema there would prune their fields), with the real helm:

1. `helm install` of the previous chart, tests/cluster/fixtures/osmf-0.1.0.tgz (`helm package` of
   charts/osmf at b604a7d): CRDs from its crds/, which Helm never upgrades, and one standalone
   operator. It reconciles a resource in its watched namespace; it cannot create a run's
   children (ConfigMap, Job), because 0.1.0 lacks the finalizers rights that blockOwnerDeletion
   needs here (as on OpenShift); a spec field that the current CRDs have and 0.1.0's lack is
   pruned when written.
2. The upgrade procedure of docs/decisions.md, command for command: kopf's peering CRDs from the
   chart's crds/, the CRDs adopted by the release, `helm upgrade` (refused before the adoption).
   0.1.0's CRDs hold every field of today's, so a copy of the current chart with one field added
   to the AudienceGrouping CRD stands for "a release that adds a field".
3. After it: the field is kept, the resources from before reconcile under the new operator (the
   AudienceGrouping now gets its Job), and `helm uninstall` leaves the CRDs and the resources.

The upgraded release runs the chart's default, two peered replicas (a KopfPeering in the watched
namespace): only the oldest reconciles, and the other takes over when it is deleted (at once: kopf
removes itself from the peering on the way out) or killed (when its keep-alive expires, within
kopf's 60 s peering lifetime). Which replica reconciles is read from each one's own /metrics (the
pod bridge gives the second replica other ports) and from kopf's log.
"""

from __future__ import annotations

import copy
import datetime
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.chartinstall import CHART, OPERATOR_NAMESPACE, RELEASE, s3_secret, tier_chart_values
from tests.cluster.controlplane import ControlPlane, fake_nodes, find_binaries, tier_values, wait_for
from tests.cluster.pipeline import cluster_pipeline, condition, upload_tiny_world
from tests.cluster.podbridge import PodBridge

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]

HERE = Path(__file__).parent
OLD_CHART = HERE / "fixtures" / "osmf-0.1.0.tgz"
WATCHED = "upgrade-watched"      # the release's settings.watchedNamespaces
UNWATCHED = "upgrade-unwatched"  # schema checks, out of the operator's reach
PROBE_FIELD = "upgradeProbe"
CRD_NAMES = [f"{plural}.osmf.dev" for plural in
             ("audiencegroupings", "gaipdatasets", "gmllmtrainings", "groupdporuns", "adimagecampaigns")]
PEERING_LIFETIME_S = 60  # kopf's default (settings.peering.lifetime)


# --- the cluster and helm ------------------------------------------------------------------------

@dataclass
class Cluster:
    cp: ControlPlane
    bridge: PodBridge
    workdir: Path

    def helm(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        home = self.workdir / "helm"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
               "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
        result = subprocess.run([str(self.cp.bins.helm), "--kubeconfig", str(self.cp.admin_kubeconfig),
                                 *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args[:2])} failed: {result.stderr.strip()}")
        return result

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.cp.get_json(kind, name, *(["-n", namespace] if namespace else []))


@pytest.fixture(scope="module")
def cluster(request):
    bins, reason = find_binaries()
    if bins is None:
        pytest.skip(reason)
    workdir = Path(tempfile.mkdtemp(prefix="osmf-upgrade-"))
    cp = ControlPlane(bins, workdir)
    try:
        cp.start(kwok_config=HERE / "kwok-stages.yaml")
        cp.add_nodes(fake_nodes(tier_values()["settings"]))
    except Exception as error:
        cp.stop()
        raise RuntimeError(f"control plane did not start: {error}\n{cp.log_tails()}") from None
    bridge = PodBridge(cp, workdir / "pods")
    bridge.start()
    yield Cluster(cp, bridge, workdir)
    bridge.stop()
    cp.stop()
    if request.session.testsfailed == 0:
        shutil.rmtree(workdir, ignore_errors=True)


# --- what the scenario needs ------------------------------------------------------------------------

def release_values(s3_server, ports: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tier's values for this release: its own watched namespace, the chart's replica default."""
    base = tier_values()
    base.pop("replicaCount", None)  # 0.1.0's schema has no such key; the current default is 2
    # Nor these (its schema refuses unknown keys); this test needs no Kueue.
    base["settings"].pop("stuckPodGraceSeconds", None)
    base["settings"]["kueue"] = {"enabled": False}
    values = tier_chart_values(base, s3_server.endpoint, s3_server.bucket)
    values["settings"]["watchedNamespaces"] = [WATCHED]
    if ports:
        values.update(copy.deepcopy(ports))
    return values


def spec_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for name, sub in schema.get("properties", {}).items():
        out.add(prefix + name)
        out |= spec_paths(sub, f"{prefix}{name}.")
        if "items" in sub:
            out |= spec_paths(sub["items"], f"{prefix}{name}[].")
    return out


def crd_spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def old_chart_crds() -> dict[str, dict[str, Any]]:
    with tarfile.open(OLD_CHART) as archive:
        return {d["metadata"]["name"]: d for m in archive.getmembers()
                if m.name.startswith("osmf/crds/") and m.name.endswith(".yaml")
                for d in [yaml.safe_load(archive.extractfile(m).read())]}


def current_chart_with_a_new_field(workdir: Path) -> Path:
    """The current chart, its AudienceGrouping CRD given one spec field more (a later release's)."""
    chart = workdir / "chart" / "osmf"
    shutil.copytree(CHART, chart)
    path = chart / "files" / "crds" / "audiencegroupings.osmf.dev.yaml"
    crd = yaml.safe_load(path.read_text())
    spec = crd_spec_schema(crd)
    assert PROBE_FIELD not in spec["properties"]
    spec["properties"][PROBE_FIELD] = {
        "type": "string", "maxLength": 63,
        "description": "A field 0.1.0's CRD lacks (added by tests/cluster/test_upgrade.py)."}
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def grouping(name: str, data_uri: str, **extra: Any) -> dict[str, Any]:
    (example,) = [d for d in cluster_pipeline(data_uri) if d["kind"] == "AudienceGrouping"]
    spec = {"data": {"uri": data_uri}, "userAttributes": example["spec"]["userAttributes"],
            "model": {"epochs": 1}, "privacy": {"minGroupSize": 5}, **extra}
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": "AudienceGrouping",
            "metadata": {"name": name}, "spec": spec}


def waiting_dataset(name: str, min_impressions: int) -> dict[str, Any]:
    """A GAIPDataset whose grouping does not exist: reconciled to DependencyNotFound, no children."""
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": "GAIPDataset", "metadata": {"name": name},
            "spec": {"groupingRef": {"name": "not-created"}, "minImpressions": min_impressions}}


def observed(c: Cluster, kind: str, name: str) -> int | None:
    return c.get(kind, name, WATCHED).get("status", {}).get("observedGeneration")


def wait_observed(c: Cluster, kind: str, name: str, generation: int, what: str,
                  timeout: float = 90) -> dict[str, Any]:
    def check():
        obj = c.get(kind, name, WATCHED)
        return obj if obj.get("status", {}).get("observedGeneration") == generation else None

    return wait_for(f"{kind}/{name} generation {generation} observed ({what})", check,
                    timeout=timeout, interval=0.5, processes=c.cp.processes.values())


def bump(c: Cluster, name: str, min_impressions: int) -> int:
    c.cp.kubectl("patch", "gaipdataset", name, "-n", WATCHED, "--type=merge",
                 "-p", f'{{"spec": {{"minImpressions": {min_impressions}}}}}')
    return c.get("gaipdataset", name, WATCHED)["metadata"]["generation"]


def operator_pods(c: Cluster) -> list[dict[str, Any]]:
    pods = c.cp.get_json("pods", "-n", OPERATOR_NAMESPACE, "-l",
                         f"app.kubernetes.io/instance={RELEASE}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") == "Running"]


def stamp(event: dict[str, Any]) -> datetime.datetime:
    return datetime.datetime.fromisoformat(event["stageTimestamp"].replace("Z", "+00:00"))


def forbidden_requests(c: Cluster) -> list[dict[str, Any]]:
    return [e for e in c.cp.audit_events() if e.get("responseStatus", {}).get("code") == 403
            and e.get("objectRef")]


# --- metrics and logs of each replica ---------------------------------------------------------------

def reconciles(c: Cluster, pod: str, metrics_port: int) -> float:
    """osmf_reconcile_total of one replica, all kinds together, from its own /metrics."""
    port = c.bridge.ports_of(OPERATOR_NAMESPACE, pod)[metrics_port]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("osmf_reconcile_total{"))


def peers(c: Cluster) -> dict[str, int]:
    """Live replicas in the peering object: identity (pod name) → priority."""
    status = c.get("kopfpeering", RELEASE, WATCHED).get("status") or {}
    return {identity: info["priority"] for identity, info in status.items() if info}


PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


def working(c: Cluster, pod: str) -> bool:
    """Whether kopf's log says this replica works: a peered kopf starts paused, so it works once it
    has resumed and not paused since."""
    log = c.bridge.output_of(OPERATOR_NAMESPACE, pod)
    return log.rfind(RESUMED) > log.rfind(PAUSED)


# --- the upgrade -----------------------------------------------------------------------------------

@dataclass
class UpgradeRecord:
    old_crd_has_probe: bool
    pruned_before: dict[str, Any]
    old_operator_forbidden: list[str]
    old_grouping_jobs: int
    refused_upgrade: str
    new_crds: dict[str, dict[str, Any]]
    added_since_0_1_0: set[str]
    kept_after: dict[str, Any]
    dataset_before: dict[str, Any]
    dataset_after: dict[str, Any]
    grouping_after: dict[str, Any]
    grouping_jobs_after: list[str]
    forbidden_after_upgrade: list[str]
    values: dict[str, Any]
    chart: Path
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def upgrade(cluster: Cluster, s3_server) -> UpgradeRecord:
    c, cp = cluster, cluster.cp
    start = time.monotonic()
    data_uri = upload_tiny_world(s3_server, "upgrade-world")
    for ns in (OPERATOR_NAMESPACE, WATCHED, UNWATCHED):
        cp.create_namespace(ns)
        cp.apply([s3_secret(ns)])
    c.bridge.serve(OPERATOR_NAMESPACE)  # the operator's pods run; the Jobs' pods stay as KWOK has them

    # 1. 0.1.0 as its users installed it.
    values = release_values(s3_server)
    values_file = c.workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    c.helm("install", RELEASE, str(OLD_CHART), "-n", OPERATOR_NAMESPACE, "-f", str(values_file))
    health = f"http://127.0.0.1:{values['healthPort']}/healthz"
    wait_for("the 0.1.0 operator to answer its health probe",
             lambda: urllib.request.urlopen(health, timeout=2).status == 200, timeout=120,
             processes=cp.processes.values())
    cp.apply([waiting_dataset("waiting", 10), grouping("grouping", data_uri)], namespace=WATCHED)
    dataset_before = wait_observed(c, "gaipdataset", "waiting", 1, "by the 0.1.0 operator")
    wait_for("the 0.1.0 operator's children to be refused",
             lambda: [e for e in forbidden_requests(c)
                      if "blockOwnerDeletion" in e["responseStatus"].get("message", "")],
             timeout=90, processes=cp.processes.values())
    old_forbidden = sorted({e["responseStatus"].get("message", "") for e in forbidden_requests(c)})
    old_jobs = len(cp.get_json("jobs", "-n", WATCHED)["items"])
    old_crd = c.get("crd", "audiencegroupings.osmf.dev")
    # What `kubectl apply` of a later release's manifest does to an old schema (without strict
    # field validation): the field is dropped without a word.
    with_probe = grouping("probe-before", data_uri, **{PROBE_FIELD: "kept?"})
    cp.kubectl("create", "-n", UNWATCHED, "--validate=false", "-f", "-", input=yaml.safe_dump(with_probe))
    pruned_before = c.get("audiencegrouping", "probe-before", UNWATCHED)
    seconds = {"0.1.0 installed and reconciling": time.monotonic() - start}

    # 2. The upgrade, as docs/decisions.md says.
    chart = current_chart_with_a_new_field(c.workdir)
    shown = c.helm("show", "crds", str(chart)).stdout
    cp.apply(shown)  # kopf's peering CRDs (the chart's crds/): `helm upgrade` never installs crds/
    refused = c.helm("upgrade", RELEASE, str(chart), "-n", OPERATOR_NAMESPACE, "-f", str(values_file),
                     check=False)
    assert refused.returncode != 0, "helm upgrade took over CRDs it does not own without adoption"
    cp.kubectl("label", "crd", *CRD_NAMES, "app.kubernetes.io/managed-by=Helm", "--overwrite")
    cp.kubectl("annotate", "crd", *CRD_NAMES, f"meta.helm.sh/release-name={RELEASE}",
               f"meta.helm.sh/release-namespace={OPERATOR_NAMESPACE}", "--overwrite")
    upgrade_start = time.monotonic()
    c.helm("upgrade", RELEASE, str(chart), "-n", OPERATOR_NAMESPACE, "-f", str(values_file))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
               *[f"crd/{n}" for n in CRD_NAMES], timeout=70)
    shutil.rmtree(cp.kubectl_cache, ignore_errors=True)  # discovery: the new schema
    # Until the rollout ends the 0.1.0 pod still runs (standalone, outside the peering); what
    # reconciles from here on must be the new operator.
    cp.kubectl("rollout", "status", f"deployment/{RELEASE}", "-n", OPERATOR_NAMESPACE,
               "--timeout=180s", timeout=190)
    wait_for("the 0.1.0 operator process to end", lambda: not [
        p for p in operator_pods(c) if not any(a.startswith("--peering=") for a in
                                               p["spec"]["containers"][0]["args"])]
        and len(c.bridge.running_pods(OPERATOR_NAMESPACE)) == len(operator_pods(c)),
        timeout=60, processes=cp.processes.values())
    rolled_out = datetime.datetime.now(datetime.timezone.utc)

    # 3. After it.
    new_crds = {n: c.get("crd", n) for n in CRD_NAMES}
    old_paths = {n: spec_paths(crd_spec_schema(d)) for n, d in old_chart_crds().items()}
    added = {f"{n}: spec.{p}" for n, d in new_crds.items()
             for p in spec_paths(crd_spec_schema(d)) - old_paths[n]}
    probe_after = grouping("probe-after", data_uri, **{PROBE_FIELD: "kept"})
    cp.apply([probe_after], namespace=UNWATCHED)  # server-side apply: strict, against the new schema
    kept_after = c.get("audiencegrouping", "probe-after", UNWATCHED)
    generation = bump(c, "waiting", 11)
    dataset_after = wait_observed(c, "gaipdataset", "waiting", generation, "after the upgrade",
                                  timeout=180)
    grouping_after = wait_observed(c, "audiencegrouping", "grouping", 1, "its Job created at last",
                                   timeout=180)
    jobs_after = [j["metadata"]["name"] for j in cp.get_json("jobs", "-n", WATCHED)["items"]]
    forbidden_after = [f"{e['verb']} {e['objectRef'].get('resource')}: {e['responseStatus'].get('message')}"
                       for e in forbidden_requests(c) if stamp(e) > rolled_out]
    seconds["upgrade to reconciled"] = time.monotonic() - upgrade_start
    return UpgradeRecord(
        old_crd_has_probe=PROBE_FIELD in crd_spec_schema(old_crd)["properties"],
        pruned_before=pruned_before, old_operator_forbidden=old_forbidden,
        old_grouping_jobs=old_jobs, refused_upgrade=refused.stderr, new_crds=new_crds,
        added_since_0_1_0=added, kept_after=kept_after, dataset_before=dataset_before,
        dataset_after=dataset_after, grouping_after=grouping_after, grouping_jobs_after=jobs_after,
        forbidden_after_upgrade=forbidden_after, values=values, chart=chart, seconds=seconds)


def test_the_old_crds_prune_a_field_added_since(upgrade):
    assert not upgrade.old_crd_has_probe
    assert PROBE_FIELD not in upgrade.pruned_before["spec"], "0.1.0's schema should have pruned it"


def test_the_old_chart_cannot_give_children_blockOwnerDeletion(upgrade):
    assert upgrade.old_grouping_jobs == 0
    assert any("cannot set blockOwnerDeletion" in m for m in upgrade.old_operator_forbidden), \
        upgrade.old_operator_forbidden


def test_helm_refuses_to_upgrade_before_the_crds_are_adopted(upgrade):
    assert "invalid ownership metadata" in upgrade.refused_upgrade, upgrade.refused_upgrade


def test_the_upgrade_upgrades_the_crds_and_keeps_the_new_field(upgrade):
    print(f"spec fields the current CRDs have and 0.1.0's lack: {sorted(upgrade.added_since_0_1_0)}")
    assert f"audiencegroupings.osmf.dev: spec.{PROBE_FIELD}" in upgrade.added_since_0_1_0
    assert upgrade.kept_after["spec"][PROBE_FIELD] == "kept"
    for name, crd in upgrade.new_crds.items():
        meta = crd["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep", name
        assert meta["annotations"]["meta.helm.sh/release-name"] == RELEASE, name
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", name
        # The whole current schema is on the server, not only the probe.
        current = yaml.safe_load((upgrade.chart / "files" / "crds" / f"{name}.yaml").read_text())
        assert spec_paths(crd_spec_schema(crd)) == spec_paths(crd_spec_schema(current)), name


def test_resources_from_before_the_upgrade_reconcile_under_the_new_operator(upgrade):
    print(f"timings: {upgrade.seconds}")
    assert upgrade.dataset_before["status"]["observedGeneration"] == 1
    assert condition(upgrade.dataset_before, "Ready")["reason"] == "DependencyNotFound"
    assert upgrade.dataset_after["metadata"]["generation"] == 2
    assert condition(upgrade.dataset_after, "Ready")["reason"] == "DependencyNotFound"
    assert upgrade.grouping_after["status"]["observedGeneration"] == 1
    assert len(upgrade.grouping_jobs_after) == 1, upgrade.grouping_jobs_after


def test_the_new_operator_watching_some_namespaces_is_never_forbidden(upgrade):
    """0.1.0 bound its role per watched namespace only, so kopf's cluster-wide reads (CRDs,
    namespaces) were refused and retried for about a minute at each start."""
    assert upgrade.forbidden_after_upgrade == []


# --- two peered replicas ------------------------------------------------------------------------------

@dataclass
class PeeringRecord:
    first: dict[str, Any] = field(default_factory=dict)
    deleted: dict[str, Any] = field(default_factory=dict)
    killed: dict[str, Any] = field(default_factory=dict)


def two_peered_replicas(c: Cluster, timeout: float = 180) -> tuple[str, str]:
    """(active, standby) once the Deployment runs two peered pods, both keep alive in the peering
    object, and the younger waits: a peered kopf starts paused and resumes only when it sees no
    peer of higher priority, so the younger either never resumed or paused again."""

    def check():
        pods = [p["metadata"]["name"] for p in operator_pods(c)
                if any(a.startswith("--peering=") for a in p["spec"]["containers"][0]["args"])]
        running = [p for p in pods if p in c.bridge.running_pods(OPERATOR_NAMESPACE)]
        if len(running) != 2 or len(operator_pods(c)) != 2:
            return None
        seen = peers(c)
        if set(running) - set(seen):
            return None
        active, standby = sorted(running, key=lambda p: seen[p], reverse=True)
        return (active, standby) if working(c, active) and not working(c, standby) else None

    return wait_for("two peered operator replicas, the younger paused", check, timeout=timeout,
                    interval=1, processes=c.cp.processes.values())


def reconciled_by(c: Cluster, pods: list[str], metrics_port: int, new_min: int,
                  timeout: float) -> dict[str, Any]:
    """Change the dataset's spec; how long until it is observed, and each replica's reconciles."""
    before = {p: reconciles(c, p, metrics_port) for p in pods}
    start = time.monotonic()
    generation = bump(c, "waiting", new_min)
    wait_observed(c, "gaipdataset", "waiting", generation, "by the active replica", timeout=timeout)
    seconds = time.monotonic() - start
    time.sleep(2)  # a reconcile by a second replica would show by now
    after = {p: reconciles(c, p, metrics_port) for p in pods}
    return {"seconds": seconds, "delta": {p: after[p] - before[p] for p in pods}}


@pytest.fixture(scope="module")
def peering(cluster: Cluster, upgrade: UpgradeRecord) -> PeeringRecord:
    c = cluster
    metrics_port = upgrade.values["metrics"]["port"]
    record = PeeringRecord()

    active, standby = two_peered_replicas(c)
    record.first = {"active": active, "standby": standby, "peers": peers(c),
                    **reconciled_by(c, [active, standby], metrics_port, 12, timeout=60)}

    # A rollout or a drain: the pod is deleted, kopf leaves the peering on its way out.
    start = time.monotonic()
    c.cp.kubectl("delete", "pod", active, "-n", OPERATOR_NAMESPACE, "--wait=false")
    wait_for("the standby to resume", lambda: working(c, standby), timeout=60,
             interval=0.5, processes=c.cp.processes.values())
    took_over = time.monotonic() - start
    new_active, new_standby = two_peered_replicas(c)
    record.deleted = {"old": active, "active": new_active, "standby": new_standby,
                      "took_over_seconds": took_over,
                      **reconciled_by(c, [new_active, new_standby], metrics_port, 13, timeout=60)}

    # A crash: no goodbye; the standby waits for the dead replica's keep-alive to expire.
    c.bridge.disrupt(OPERATOR_NAMESPACE, new_active)
    record.killed = {"old": new_active, "active": new_standby,
                     **reconciled_by(c, [new_standby], metrics_port, 14,
                                     timeout=PEERING_LIFETIME_S + 60)}
    record.killed["resumed"] = working(c, new_standby)
    return record


def test_two_peered_replicas_only_the_oldest_reconciles(peering):
    first = peering.first
    print(f"peering: {first}")
    assert set(first["peers"]) == {first["active"], first["standby"]}
    assert first["peers"][first["active"]] > first["peers"][first["standby"]]
    assert first["delta"][first["active"]] >= 1
    assert first["delta"][first["standby"]] == 0


def test_the_standby_takes_over_at_once_when_the_active_replica_is_deleted(peering):
    deleted = peering.deleted
    print(f"deleted: {deleted}")
    assert deleted["active"] == peering.first["standby"], "the former standby must reconcile now"
    assert deleted["standby"] != deleted["old"], "the Deployment's new pod waits as the standby"
    assert deleted["took_over_seconds"] < 30
    assert deleted["delta"][deleted["active"]] >= 1 and deleted["delta"][deleted["standby"]] == 0


def test_the_standby_takes_over_within_the_peering_lifetime_when_the_active_replica_dies(peering):
    killed = peering.killed
    print(f"killed: {killed}")
    assert killed["resumed"]
    assert killed["delta"][killed["active"]] >= 1
    assert killed["seconds"] <= PEERING_LIFETIME_S + 15


def test_uninstall_keeps_the_crds_and_the_resources(cluster: Cluster, upgrade, peering):
    cluster.helm("uninstall", RELEASE, "-n", OPERATOR_NAMESPACE)
    for name in CRD_NAMES:
        cluster.get("crd", name)  # raises if gone
    assert cluster.get("audiencegrouping", "grouping", WATCHED)["spec"]
    assert cluster.get("audiencegrouping", "probe-after", UNWATCHED)["spec"][PROBE_FIELD] == "kept"
    assert not cluster.cp.get_json("deployments", "-n", OPERATOR_NAMESPACE)["items"]
