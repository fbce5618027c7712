"""Least privilege, proven on the real API server (issue 4, items 2 and 8).

The operator runs as the chart's ServiceAccount (the pod bridge hands its pod a real token of it),
so everything it does in this session is done with the chart's RBAC and nothing else. Here: the
account's rights as the API server's authorizer answers them, the identity in the audit log, and
that this API server refuses blockOwnerDeletion to who may not update the owner's finalizers (as
OpenShift's does), so every child the operator creates in this tier proves the chart grants that.
What the operator used versus what it was granted is compared at the end of the session
(test_zz_least_privilege.py).
"""

from __future__ import annotations

import pytest

from tests.cluster.chartinstall import OPERATOR_NAMESPACE

pytestmark = pytest.mark.cluster

# (verb, resource, subresource, allowed) as `kubectl auth can-i` asks them.
RIGHTS = [
    ("patch", "audiencegroupings.osmf.dev", "", True),
    ("patch", "adimagecampaigns.osmf.dev", "status", True),
    ("update", "adimagecampaigns.osmf.dev", "status", False),
    ("watch", "gmllmtrainings.osmf.dev", "", True),
    ("create", "jobs.batch", "", True),
    ("list", "pods", "", True),
    ("create", "inferenceservices.serving.kserve.io", "", True),
    ("create", "audiencegroupings.osmf.dev", "", False),
    ("delete", "groupdporuns.osmf.dev", "", False),
    ("update", "gaipdatasets.osmf.dev", "", False),
    ("get", "secrets", "", False),
    ("list", "secrets", "", False),
    ("get", "configmaps", "", False),
    ("get", "pods", "", False),
    ("get", "pods", "log", False),
    ("delete", "pods", "", False),
    ("create", "pods", "", False),
    ("delete", "nodes", "", False),
    ("create", "clusterroles.rbac.authorization.k8s.io", "", False),
    ("create", "rolebindings.rbac.authorization.k8s.io", "", False),
    ("create", "serviceaccounts", "token", False),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", "", False),
    ("update", "audiencegroupings.osmf.dev", "finalizers", True),
    ("update", "adimagecampaigns.osmf.dev", "finalizers", True),
    ("patch", "audiencegroupings.osmf.dev", "finalizers", False),
    ("patch", "clusterkopfpeerings.kopf.dev", "", True),
    ("create", "clusterkopfpeerings.kopf.dev", "", False),
    ("delete", "clusterkopfpeerings.kopf.dev", "", False),
]


def service_account_user(operator) -> str:
    return f"system:serviceaccount:{OPERATOR_NAMESPACE}:{operator.service_account}"


@pytest.mark.parametrize(
    "verb, resource, subresource, allowed", RIGHTS,
    ids=[f"{'can' if a else 'cannot'}-{v}-{r}{'/' + sub if sub else ''}" for v, r, sub, a in RIGHTS])
def test_the_operator_account_has_only_the_charts_rights(control_plane, operator, verb, resource,
                                                         subresource, allowed):
    result = control_plane.kubectl("auth", "can-i", verb, resource, "--all-namespaces",
                                   *([f"--subresource={subresource}"] if subresource else []),
                                   f"--as={service_account_user(operator)}", check=False)
    assert result.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, result.stderr)


def test_the_operator_talks_to_the_api_as_its_service_account(control_plane, operator):
    users = {e["user"]["username"] for e in control_plane.audit_events()}
    assert service_account_user(operator) in users, users


def owned_config_map(name: str, block: bool) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "osmf.dev/v1alpha1", "kind": "AudienceGrouping", "name": "owner",
        "uid": "00000000-0000-0000-0000-000000000001", "controller": True,
        "blockOwnerDeletion": block}]}}


def test_block_owner_deletion_needs_the_owners_finalizers_here_as_on_openshift(control_plane,
                                                                             workload_ns):
    """OwnerReferencesPermissionEnforcement is on in this tier: a user who may create ConfigMaps but
    not update AudienceGrouping finalizers cannot create one that blocks its owner's deletion."""
    import yaml

    account = "creates-configmaps"
    user = f"system:serviceaccount:{workload_ns}:{account}"

    def role(*extra: dict) -> dict:
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": account},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
                          *extra]}

    control_plane.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        role(),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": account},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": workload_ns}]},
    ], namespace=workload_ns)

    def create(doc: dict):
        return control_plane.kubectl("create", "-n", workload_ns, "-f", "-", f"--as={user}",
                                     input=yaml.safe_dump(doc), check=False)

    plain = create(owned_config_map("not-blocking", block=False))
    assert plain.returncode == 0, plain.stderr
    refused = create(owned_config_map("blocking", block=True))
    assert refused.returncode != 0
    assert "cannot set blockOwnerDeletion" in refused.stderr, refused.stderr
    control_plane.apply([role({"apiGroups": ["osmf.dev"], "resources": ["audiencegroupings/finalizers"],
                               "verbs": ["update"]})], namespace=workload_ns)
    allowed = create(owned_config_map("blocking", block=True))
    assert allowed.returncode == 0, allowed.stderr
