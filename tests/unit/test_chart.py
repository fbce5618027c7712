"""The Helm chart (charts/osmf): values schema, settings, security and least-privilege RBAC, CRDs
that upgrade with the release, peering, disruption budget and monitoring.

Rendering needs `helm` (built by hack/build-control-plane.sh into the tools cache, or on PATH);
those tests skip without it. The schema and settings tests need nothing but Python.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from osmf_operator.settings import OperatorSettings, SettingsError, parse_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "osmf"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
OSMF_KINDS = {"audiencegroupings", "gaipdatasets", "gmllmtrainings", "groupdporuns",
              "adimagecampaigns"}


def find_helm() -> str | None:
    versions = dict(line.split("=", 1) for line in
                    (REPO / "hack" / "control-plane-versions.env").read_text().splitlines()
                    if line and not line.startswith("#"))
    tools = Path(os.environ.get("OSMF_TOOLS_DIR") or Path.home() / ".cache" / "osmf" / "tools")
    built = tools / f"helm-{versions['HELM_VERSION']}" / "helm"
    return str(built) if os.access(built, os.X_OK) else shutil.which("helm")


HELM = find_helm()
needs_helm = pytest.mark.skipif(HELM is None, reason="helm not built: run make control-plane "
                                                     "(hack/build-control-plane.sh)")


def render(tmp_path: Path, values: dict[str, Any] | None = None, *, check: bool = True,
           namespace: str = "osmf-system") -> list[dict[str, Any]] | subprocess.CompletedProcess:
    argv = [HELM, "template", "osmf", str(CHART), "--namespace", namespace]
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        argv += ["-f", str(values_file)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if not check:
        return result
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


# --- values and settings (no helm needed) ------------------------------------------------------

def test_default_values_satisfy_the_schema_and_the_operator_settings_model():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(VALUES, SCHEMA)
    settings = parse_settings(VALUES["settings"])
    assert settings.node_pools["h100"].gpu_resource == "nvidia.com/gpu"


def test_schema_settings_keys_match_the_settings_model():
    """values.schema.json mirrors OperatorSettings: a field added on one side fails here."""
    settings_schema = SCHEMA["properties"]["settings"]["properties"]
    assert set(settings_schema) == aliases(OperatorSettings)
    for key, field in OperatorSettings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            assert set(settings_schema[field.alias]["properties"]) == aliases(annotation), key
    pool = settings_schema["nodePools"]["additionalProperties"]
    node_pool_model = OperatorSettings.model_fields["node_pools"].annotation.__args__[1]
    assert set(pool["properties"]) == aliases(node_pool_model)


@pytest.mark.parametrize("mutate, schema_words", [
    (lambda s: s.update(nodePool={}), "Additional properties"),
    (lambda s: s["nodePools"]["h100"].update(gpu="nvidia.com/gpu"), "Additional properties"),
    (lambda s: s.update(progressIntervalSeconds=0), "less than the minimum"),
    (lambda s: s["kueue"].update(enabled="maybe"), "is not of type 'boolean'"),
])
def test_bad_settings_are_rejected_by_the_schema_and_by_the_operator(mutate, schema_words):
    values = copy.deepcopy(VALUES)
    mutate(values["settings"])
    with pytest.raises(jsonschema.ValidationError, match=schema_words):
        jsonschema.validate(values, SCHEMA)
    with pytest.raises(SettingsError, match=r"^settings\."):
        parse_settings(values["settings"])


# --- rendered chart -----------------------------------------------------------------------------

@needs_helm
def test_default_render_has_the_operator_objects_and_they_are_valid_kubernetes(tmp_path):
    import kubernetes_validate

    docs = render(tmp_path)
    assert sorted(d["kind"] for d in docs) == sorted([
        "ClusterKopfPeering", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment",
        "PodDisruptionBudget", "Service", "ServiceAccount", *["CustomResourceDefinition"] * 5])
    for doc in docs:
        if doc["apiVersion"] != "kopf.dev/v1":  # kopf's own kind: no upstream schema
            kubernetes_validate.validate(doc, "1.34.0", strict=True)
    assert all(d["metadata"].get("namespace", "osmf-system") == "osmf-system" for d in docs)


@needs_helm
def test_deployment_is_non_root_read_only_with_resources_probes_and_metrics(tmp_path):
    docs = render(tmp_path)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": VALUES["healthPort"], "metrics": VALUES["metrics"]["port"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert f"--liveness=http://0.0.0.0:{VALUES['healthPort']}/healthz" in container["args"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/osmf", "/tmp"} <= mounts, "a read-only root filesystem needs a writable /tmp"
    service = only(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


@needs_helm
def test_settings_configmap_is_what_the_operator_reads(tmp_path):
    values = copy.deepcopy(VALUES)
    values["image"]["tag"] = "1.2.3"
    values["settings"]["artifacts"]["credentialsSecret"] = "osmf-s3"
    docs = render(tmp_path, values)
    settings = parse_settings(yaml.safe_load(only(docs, "ConfigMap")["data"]["settings.yaml"]))
    assert settings.images.operator == "osmf/operator:1.2.3"
    assert settings.artifacts.credentials_secret == "osmf-s3"
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "osmf/operator:1.2.3"
    assert {"name": "OSMF_SETTINGS_FILE", "value": "/etc/osmf/settings.yaml"} in container["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "osmf-s3"}}]


@needs_helm
def test_the_operator_gets_the_artifact_endpoint_the_jobs_get(tmp_path):
    values = copy.deepcopy(VALUES)
    values["settings"]["artifacts"].update(endpointUrl="http://minio.storage:9000",
                                           region="eu-west-1")
    docs = render(tmp_path, values)
    env = {e["name"]: e.get("value") for e in
           only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    plain = {e["name"] for e in
             only(render(tmp_path), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "AWS_ENDPOINT_URL" not in plain


@needs_helm
def test_a_settings_change_rolls_the_operator_pod(tmp_path):
    def checksum(values):
        deployment = only(render(tmp_path, values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]

    changed = copy.deepcopy(VALUES)
    changed["settings"]["progressIntervalSeconds"] = 60
    assert checksum(VALUES) != checksum(changed)


@needs_helm
def test_cluster_role_grants_only_what_the_operator_uses(tmp_path):
    rules = only(render(tmp_path), "ClusterRole")["rules"]
    granted = {(g, r): set(rule["verbs"]) for rule in rules
               for g in rule["apiGroups"] for r in rule["resources"]}
    for (group, resource), verbs in granted.items():
        assert "*" not in verbs and resource != "*" and group != "*"
        assert not verbs & {"escalate", "bind", "impersonate", "deletecollection"}
        assert resource != "secrets", "the operator never reads Secrets"
    assert {r for g, r in granted if g == "osmf.dev"} == (
        OSMF_KINDS | {f"{k}/status" for k in OSMF_KINDS} | {f"{k}/finalizers" for k in OSMF_KINDS})
    for kind in OSMF_KINDS:
        assert not granted[("osmf.dev", kind)] & {"create", "update", "delete"}, \
            "users own the custom resources; the operator only patches them"
        # blockOwnerDeletion on its children: OwnerReferencesPermissionEnforcement (OpenShift)
        # admits it only for who may update the owner's finalizers.
        assert granted[("osmf.dev", f"{kind}/finalizers")] == {"update"}
    assert granted[("", "pods")] == {"list"}, "pods are only listed, to say why a Job waits"
    assert ("kueue.x-k8s.io", "workloads") not in granted


@needs_helm
def test_kueue_adds_read_access_to_workloads(tmp_path):
    values = copy.deepcopy(VALUES)
    values["settings"]["kueue"]["enabled"] = True
    rules = only(render(tmp_path, values), "ClusterRole")["rules"]
    assert {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"],
            "verbs": ["list"]} in rules


@needs_helm
def test_watched_namespaces_bind_the_role_only_there(tmp_path):
    values = copy.deepcopy(VALUES)
    values["settings"]["watchedNamespaces"] = ["team-a", "team-b"]
    docs = render(tmp_path, values)
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "osmf"} and
               b["subjects"][0]["namespace"] == "osmf-system" for b in bindings)
    # Cluster-wide only what kopf reads cluster-wide even for some namespaces: CRDs and namespaces.
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "osmf-cluster-scope"
    roles = {d["metadata"]["name"]: d["rules"] for d in docs if d["kind"] == "ClusterRole"}
    assert roles["osmf-cluster-scope"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]
    assert not [r for r in roles["osmf"] if "apiextensions.k8s.io" in r["apiGroups"]]


@needs_helm
@pytest.mark.parametrize("set_value, message", [
    ("settings.nodePool.h100.gpuResource=nvidia.com/gpu", "additional properties 'nodePool'"),
    ("healthPort=0", "minimum"),
    ("logLevel=verbose", "value must be one of"),
])
def test_helm_refuses_values_outside_the_schema(tmp_path, set_value, message):
    result = subprocess.run([HELM, "template", "osmf", str(CHART), "--set", set_value],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@needs_helm
def test_helm_lint_is_clean():
    result = subprocess.run([HELM, "lint", "--strict", str(CHART)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- CRDs: templates that upgrade with the release ---------------------------------------------

class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 floats (`2e-06`), as the API server and helm's toYaml write them; PyYAML's 1.1
    resolver would read them as strings."""


Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))


def load12(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=Yaml12Loader) if d]


def render_text(tmp_path: Path, values: dict[str, Any] | None = None, *extra: str) -> str:
    argv = [HELM, "template", "osmf", str(CHART), "--namespace", "osmf-system", *extra]
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        argv += ["-f", str(values_file)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_helm
def test_the_chart_renders_the_generated_crds_kept_on_uninstall(tmp_path):
    rendered = {d["metadata"]["name"]: d for d in load12(render_text(tmp_path))
                if d["kind"] == "CustomResourceDefinition"}
    generated = {p.name: yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))}
    chart_copy = {p.name: yaml.safe_load(p.read_text())
                  for p in sorted((CHART / "files" / "crds").glob("*.yaml"))}
    assert chart_copy == generated, "make generate writes both; make verify checks both"
    assert sorted(rendered) == sorted(d["metadata"]["name"] for d in generated.values())
    assert {n.split(".")[0] for n in rendered} == OSMF_KINDS
    for crd in generated.values():
        out = rendered[crd["metadata"]["name"]]
        meta = out.pop("metadata")
        assert meta["annotations"] == {"helm.sh/resource-policy": "keep"}, \
            "helm uninstall must not delete the CRDs (and with them every resource)"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        expected = dict(crd)
        expected.pop("metadata")
        assert out == expected, f"{meta['name']}: the template changed the CRD"


@needs_helm
def test_crds_install_off_leaves_the_osmf_crds_out(tmp_path):
    values = copy.deepcopy(VALUES)
    values["crds"]["install"] = False
    assert not [d for d in render(tmp_path, values) if d["kind"] == "CustomResourceDefinition"]


@needs_helm
def test_crds_dir_holds_only_kopfs_shared_peering_crds(tmp_path):
    """crds/ is installed once and never upgraded: right for kopf's stable, shared peering CRDs and
    wrong for ours, which are templates."""
    with_crds = load12(render_text(tmp_path, None, "--include-crds"))
    names = sorted(d["metadata"]["name"] for d in with_crds if d["kind"] == "CustomResourceDefinition")
    assert names == sorted(["clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev",
                            *[f"{k}.osmf.dev" for k in OSMF_KINDS]])
    in_crds_dir = [yaml.safe_load_all(p.read_text()) for p in (CHART / "crds").glob("*.yaml")]
    assert sorted(d["spec"]["group"] for docs in in_crds_dir for d in docs) == ["kopf.dev", "kopf.dev"]


# --- replicas, peering, disruption budget --------------------------------------------------------

def deployment_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return only(docs, "Deployment")["spec"]["template"]["spec"]


def rules_for(docs: list[dict[str, Any]], group: str) -> dict[str, set[str]]:
    """The operator role's rules for one API group (the role every binding of the chart names)."""
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "osmf"]
    return {r: set(rule["verbs"]) for rule in role["rules"]
            if group in rule["apiGroups"] for r in rule["resources"]}


@needs_helm
def test_default_is_two_peered_replicas_in_a_cluster_peering(tmp_path):
    docs = render(tmp_path)
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    (container,) = deployment_pod(docs)["containers"]
    assert "--peering=osmf" in container["args"]
    assert {"name": "POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    peering = only(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "osmf" and "namespace" not in peering["metadata"]
    assert rules_for(docs, "kopf.dev") == {"clusterkopfpeerings": {"list", "watch", "patch"}}


@needs_helm
def test_namespaced_operators_peer_in_each_watched_namespace(tmp_path):
    values = copy.deepcopy(VALUES)
    values["settings"]["watchedNamespaces"] = ["team-a", "team-b"]
    values["peering"]["name"] = "osmf-peers"
    docs = render(tmp_path, values)
    assert not [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings) == [
        ("team-a", "osmf-peers"), ("team-b", "osmf-peers")]
    assert "--peering=osmf-peers" in deployment_pod(docs)["containers"][0]["args"]
    assert rules_for(docs, "kopf.dev") == {"kopfpeerings": {"list", "watch", "patch"}}


@needs_helm
def test_peering_off_is_one_standalone_replica_and_more_are_refused(tmp_path):
    values = copy.deepcopy(VALUES)
    values["peering"]["enabled"] = False
    values["replicaCount"] = 1
    docs = render(tmp_path, values)
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment_pod(docs)["containers"][0]
    assert not [a for a in container["args"] if a.startswith("--peering")]
    assert "POD_ID" not in {e["name"] for e in container["env"]}
    assert not [d for d in docs if d["apiVersion"] == "kopf.dev/v1"]
    assert not rules_for(docs, "kopf.dev")
    values["replicaCount"] = 2
    result = render(tmp_path, values, check=False)
    assert result.returncode != 0
    assert "replicaCount > 1 needs peering.enabled" in result.stderr


@needs_helm
def test_a_disruption_budget_lets_drains_take_one_operator_pod_at_a_time(tmp_path):
    docs = render(tmp_path)
    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    values = copy.deepcopy(VALUES)
    values["podDisruptionBudget"]["enabled"] = False
    assert not [d for d in render(tmp_path, values) if d["kind"] == "PodDisruptionBudget"]


# --- monitoring ----------------------------------------------------------------------------------

def exported_metric_names() -> set[str]:
    """Every sample name the operator's /metrics can show (with one resource in one stage)."""
    from prometheus_client import generate_latest

    from osmf_operator.metrics import OperatorMetrics

    metrics = OperatorMetrics()
    metrics.reconciles.labels("AudienceGrouping").inc()
    metrics.errors.labels("AudienceGrouping", "KubeError").inc()
    metrics.duration.labels("AudienceGrouping").observe(0.1)
    metrics.children.labels("Job").inc()
    metrics.set_stage("AudienceGrouping", "ns", "g", "Queued")
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


@needs_helm
def test_monitoring_is_off_by_default(tmp_path):
    assert not [d for d in render(tmp_path)
                if d["apiVersion"].startswith("monitoring.coreos.com/")]


@needs_helm
def test_service_monitor_scrapes_the_metrics_service_and_alerts_use_exported_metrics(tmp_path):
    import re

    values = copy.deepcopy(VALUES)
    values["metrics"]["serviceMonitor"].update(enabled=True, labels={"release": "prom"})
    values["metrics"]["prometheusRule"].update(enabled=True, queueWaitSeconds=1800)
    docs = render(tmp_path, values)
    monitor, service = only(docs, "ServiceMonitor"), only(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["osmf-system"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service["spec"]["ports"][0]["name"]]
    rules = {r["alert"]: r for g in only(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert set(rules) == {"OSMFStageFailed", "OSMFQueueWaitTooLong", "OSMFReconcileErrors"}
    assert rules["OSMFQueueWaitTooLong"]["expr"].endswith("> 1800")
    exported = exported_metric_names()
    for name, rule in rules.items():
        used = set(re.findall(r"\bosmf_[a-z_]+", rule["expr"]))
        assert used and used <= exported, (name, used - exported)
        # Prometheus' own templating survives Helm's.
        assert "{{ $labels.kind }}" in rule["annotations"]["summary"], rule["annotations"]
    values["metrics"]["service"]["enabled"] = False
    result = render(tmp_path, values, check=False)
    assert result.returncode != 0 and "needs metrics.service.enabled" in result.stderr


# --- security: OpenShift's restricted SCC ---------------------------------------------------------

RESTRICTED_VOLUMES = {"configMap", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_scc_problems(pod: dict[str, Any]) -> list[str]:
    """What OpenShift's restricted-v2 SCC refuses or overrides, for a pod spec: a fixed UID, GID or
    fsGroup (it assigns them from the namespace's range), privilege escalation, capabilities kept,
    host namespaces, volume types outside its list, root."""
    problems = []
    sc = pod.get("securityContext", {})
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        if key in sc:
            problems.append(f"pod securityContext.{key} is fixed")
    if sc.get("runAsNonRoot") is not True:
        problems.append("pod is not runAsNonRoot")
    if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("no RuntimeDefault seccomp profile")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(key)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        csc = c.get("securityContext", {})
        if "runAsUser" in csc:
            problems.append(f"container {c['name']}: runAsUser is fixed")
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {c['name']}: allowPrivilegeEscalation not false")
        if csc.get("capabilities", {}).get("drop") != ["ALL"] or csc.get("capabilities", {}).get("add"):
            problems.append(f"container {c['name']}: capabilities not dropped")
        if csc.get("privileged"):
            problems.append(f"container {c['name']}: privileged")
    return problems


@needs_helm
def test_default_operator_pod_and_its_jobs_fit_openshifts_restricted_scc(tmp_path):
    from osmf_core.api import parse_resource
    from osmf_operator.render import render_resources

    docs = render(tmp_path)
    assert restricted_scc_problems(deployment_pod(docs)) == []
    settings = parse_settings(yaml.safe_load(only(docs, "ConfigMap")["data"]["settings.yaml"]))
    assert settings.run_as_user is None
    examples = REPO / "examples" / "h100-pipeline"
    resources = [parse_resource(d) for p in sorted(examples.glob("*.yaml"))
                 for d in yaml.safe_load_all(p.read_text()) if d]
    pods = []
    for _, obj in render_resources(resources, settings):
        if obj.get("kind") == "Job":
            pods.append(obj["spec"]["template"]["spec"])
        elif obj.get("kind") == "InferenceService":
            pods.append(obj["spec"]["predictor"])
    assert {bool(p) for p in pods} == {True} and len(pods) >= 5
    for pod in pods:
        assert restricted_scc_problems(pod) == [], pod["containers"][0]["name"]


@needs_helm
def test_a_configured_uid_goes_to_the_operator_pod_and_the_jobs(tmp_path):
    values = copy.deepcopy(VALUES)
    values["settings"]["runAsUser"] = 4242
    docs = render(tmp_path, values)
    sc = deployment_pod(docs)["securityContext"]
    assert sc == {"runAsNonRoot": True, "runAsUser": 4242, "runAsGroup": 4242, "fsGroup": 4242,
                  "seccompProfile": {"type": "RuntimeDefault"}}
    settings = parse_settings(yaml.safe_load(only(docs, "ConfigMap")["data"]["settings.yaml"]))
    assert settings.run_as_user == 4242
