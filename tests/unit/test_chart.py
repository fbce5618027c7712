"""The Helm chart (charts/osmf): values schema, settings, security and least-privilege RBAC.

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
    (lambda s: s["kueue"].update(priorityClasses={"Training": "high"}), "'Training' is not one of"),
    (lambda s: s["kserve"].update(deploymentMode="Knativ"), "'Knativ' is not one of"),
    (lambda s: s.update(stuckPodGraceSeconds=-1), "less than the minimum"),
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
    assert sorted(d["kind"] for d in docs) == ["ClusterRole", "ClusterRoleBinding", "ConfigMap",
                                               "Deployment", "Service", "ServiceAccount"]
    for doc in docs:
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
    assert settings.images.operator == "ghcr.io/osmf/operator:1.2.3"
    assert settings.artifacts.credentials_secret == "osmf-s3"
    container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/osmf/operator:1.2.3"
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
        OSMF_KINDS | {f"{k}/status" for k in OSMF_KINDS})
    for kind in OSMF_KINDS:
        assert not granted[("osmf.dev", kind)] & {"create", "update", "delete"}, \
            "users own the custom resources; the operator only patches them"
    assert granted[("", "pods")] == {"list"}, "pods are only listed, to say why a Job waits"
    assert ("kueue.x-k8s.io", "workloads") not in granted
    assert granted[("jobset.x-k8s.io", "jobsets")] == {"list", "watch", "create", "delete"}, \
        "JobSets are handled like Jobs: created, watched, deleted when superseded"


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
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["roleRef"]["kind"] == "ClusterRole" and
               b["subjects"][0]["namespace"] == "osmf-system" for b in bindings)


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
