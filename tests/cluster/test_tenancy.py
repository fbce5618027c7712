"""Tenancy on the real control plane (issue 14, point 3): two tenant namespaces, one data prefix each.

The chart is installed with two tenants (tests/cluster/chartinstall.py `tenant_settings`): tenant-a
reads with its own Secret, tenant-b's pods run as a ServiceAccount (workload identity); both reach S3
through a recording proxy (tests/cluster/s3recorder.py), so every request made with a tenant's
identity is seen. Tenant A's resources pointing at tenant B's prefix are Stalled naming the field,
and nothing under that prefix is listed or read; its own resource is read with its own key.
"""

from __future__ import annotations

import pytest

from tests.cluster.chartinstall import (OPERATOR_NAMESPACE, TENANT_A, TENANT_A_SECRET, TENANT_B,
                                        TENANT_B_SERVICE_ACCOUNT, settle)
from tests.cluster.controlplane import wait_for
from tests.cluster.pipeline import condition, upload_tiny_world

pytestmark = pytest.mark.cluster

TENANT_A_KEY = "tenant-a-key"


def grouping(name: str, data_uri: str) -> dict:
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": "AudienceGrouping", "metadata": {"name": name},
            "spec": {"data": {"uri": data_uri}, "userAttributes": ["age_band"], "resources": {"gpusPerNode": 0}}}


def pretrain(name: str, model_uri: str) -> dict:
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": "GMLLMTraining", "metadata": {"name": name},
            "spec": {"task": "pretrain", "datasetRef": {"name": "gaip"}, "baseModel": {"uri": model_uri},
                     "resources": {"gpusPerNode": 0}}}


def stalled(cp, namespace: str, kind: str, name: str) -> dict | None:
    obj = cp.get_json(kind, name, "-n", namespace)
    c = condition(obj, "Stalled")
    return c if c and c["status"] == "True" else None


def job_pod_spec(cp, namespace: str, name: str) -> dict | None:
    jobs = cp.get_json("jobs", "-n", namespace, "-l", f"osmf.dev/name={name}")["items"]
    return jobs[0]["spec"]["template"]["spec"] if jobs else None


def env_of(pod: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}


@pytest.fixture(scope="module")
def tenant_data(s3_server):
    return {tenant: upload_tiny_world(s3_server, f"{tenant}-data/world") for tenant in (TENANT_A, TENANT_B)}


def test_a_tenant_cannot_name_another_tenants_data_and_nothing_there_is_read(
        control_plane, operator, s3_server, s3_recorder, tenant_data):
    cp = control_plane
    cp.apply([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": TENANT_A_SECRET, "namespace": TENANT_A},
               "stringData": {"AWS_ACCESS_KEY_ID": TENANT_A_KEY, "AWS_SECRET_ACCESS_KEY": "tenant-a-secret"}}])
    cp.apply([grouping("steal", tenant_data[TENANT_B]), pretrain("steal-model", f"{tenant_data[TENANT_B]}/model"),
              grouping("own", tenant_data[TENANT_A])], namespace=TENANT_A)

    data = wait_for("tenant A's grouping of B's data to stall", lambda: stalled(cp, TENANT_A, "audiencegroupings", "steal"),
                    timeout=300, processes=cp.processes.values())
    assert data["reason"] == "UriNotAllowed"
    assert data["message"].startswith(f"spec.data.uri: {tenant_data[TENANT_B]} is outside what namespace {TENANT_A} may read "
                                      f"(s3://{s3_server.bucket}/{TENANT_A}-data/")
    model = wait_for("tenant A's training on B's model to stall", lambda: stalled(cp, TENANT_A, "gmllmtrainings", "steal-model"),
                     timeout=300, processes=cp.processes.values())
    assert model["reason"] == "UriNotAllowed" and model["message"].startswith("spec.baseModel.uri: ")
    pod = wait_for("tenant A's own grouping to get its Job", lambda: job_pod_spec(cp, TENANT_A, "own"), timeout=300)
    assert env_of(pod)["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": TENANT_A_SECRET, "key": "AWS_ACCESS_KEY_ID"}}
    assert env_of(pod)["AWS_ENDPOINT_URL"] == s3_recorder.endpoint
    settle(3)  # a stalled resource is settled: nothing more will be tried for it
    assert job_pod_spec(cp, TENANT_A, "steal") is None

    seen = s3_recorder.seen()
    assert not [r for r in seen if r.touches(f"{TENANT_B}-data")], "tenant B's prefix was read"
    own = [r for r in seen if r.touches(f"{TENANT_A}-data/world")]
    assert own and {r.access_key for r in own} == {TENANT_A_KEY}, own  # listed with tenant A's own Secret


def test_a_workload_identity_tenant_gets_its_service_account_and_no_platform_keys(
        control_plane, operator, s3_recorder, tenant_data):
    cp = control_plane
    cp.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": TENANT_B_SERVICE_ACCOUNT, "namespace": TENANT_B}}])
    cp.apply([grouping("own", tenant_data[TENANT_B])], namespace=TENANT_B)
    pod = wait_for("tenant B's grouping to get its Job", lambda: job_pod_spec(cp, TENANT_B, "own"), timeout=300,
                   processes=cp.processes.values())
    assert pod["serviceAccountName"] == TENANT_B_SERVICE_ACCOUNT
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env_of(pod))
    assert [r for r in s3_recorder.seen() if r.touches(f"{TENANT_B}-data/world")]  # the operator listed it there


def test_the_operator_may_read_exactly_each_tenants_secret(control_plane, operator):
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{operator.service_account}"

    def can(*args: str) -> str:
        return control_plane.kubectl("auth", "can-i", *args, f"--as={user}", check=False).stdout.strip()

    assert can("get", f"secret/{TENANT_A_SECRET}", "-n", TENANT_A) == "yes"
    assert can("get", "secret/other", "-n", TENANT_A) == "no"
    assert can("list", "secrets", "-n", TENANT_A) == "no"
    assert can("get", f"secret/{TENANT_A_SECRET}", "-n", TENANT_B) == "no"
    assert can("get", "secrets", "-n", TENANT_B) == "no"


@pytest.fixture(scope="module", autouse=True)
def stop_tenant_work(control_plane):
    """The tenants' running groupings would be requeued for the rest of the session: remove them."""
    yield
    for namespace in (TENANT_A, TENANT_B):
        for kind in ("audiencegroupings", "gmllmtrainings"):
            control_plane.kubectl("delete", kind, "--all", "-n", namespace, "--wait=false", check=False)
