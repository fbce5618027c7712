"""Least privilege, proven on the real API server (issue 4, items 2 and 8).

The operator runs as the chart's ServiceAccount (the pod bridge hands its pod a real token of it),
so everything it does in this session is done with the chart's RBAC and nothing else. Here: the
account's rights as the API server's authorizer answers them (26 checks), and the identity in the
audit log.
What the operator used versus what it was granted is compared at the end of the session
(test_zz_least_privilege.py).
"""

from __future__ import annotations

import json

import pytest

from tests.cluster.chartinstall import OPERATOR_NAMESPACE

pytestmark = pytest.mark.cluster

# (verb, resource.group, subresource, allowed).
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
    ("patch", "jobs.batch", "", False),  # spec.suspend is Kueue's alone
    ("create", "jobsets.jobset.x-k8s.io", "", True),
    ("list", "workloads.kueue.x-k8s.io", "", True),
    ("update", "workloads.kueue.x-k8s.io", "", False),
]


def service_account_user(operator) -> str:
    return f"system:serviceaccount:{OPERATOR_NAMESPACE}:{operator.service_account}"


@pytest.mark.parametrize(
    "verb, resource, subresource, allowed", RIGHTS,
    ids=[f"{'can' if a else 'cannot'}-{v}-{r}{'/' + sub if sub else ''}" for v, r, sub, a in RIGHTS])
def test_the_operator_account_has_only_the_charts_rights(control_plane, operator, verb, resource,
                                                         subresource, allowed):
    """As `kubectl auth can-i` asks it, but as a SubjectAccessReview: can-i needs the resource to be
    served to resolve it (JobSet is installed for test_jobset.py only), RBAC does not."""
    plural, _, group = resource.partition(".")
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
        "user": service_account_user(operator),
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{OPERATOR_NAMESPACE}", "system:authenticated"],
        "resourceAttributes": {"verb": verb, "group": group, "resource": plural, "subresource": subresource}}}
    answer = json.loads(control_plane.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout)
    assert answer["status"].get("allowed", False) is allowed, (verb, resource, answer["status"])


def test_the_operator_talks_to_the_api_as_its_service_account(control_plane, operator):
    users = {e["user"]["username"] for e in control_plane.audit_events()}
    assert service_account_user(operator) in users, users
