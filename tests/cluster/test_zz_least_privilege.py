"""Runs last (file name): after the pipeline, reliability and scheduling tests have driven the
operator through its work, compare the audit log of its requests with its ClusterRole.

- Never forbidden: no request of the operator was denied by RBAC, so the chart grants enough.
- Nothing granted in vain: every (group, resource, verb) the ClusterRole grants was used, except
  the few listed in UNEXERCISED with the reason this session cannot exercise them, and the rights
  an admission plugin checks rather than a request uses (ADMISSION_CHECKED).
"""

from __future__ import annotations

import pytest

from tests.cluster.pipeline import PIPELINE_TIMEOUT_S
from tests.cluster.chartinstall import OPERATOR_NAMESPACE

# The first test here may start the whole pipeline run (session fixture): allow for it.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(PIPELINE_TIMEOUT_S + 600)]

# Rights for code paths of the operator (osmf_operator/kube.py) that this session does not reach.
SUPERSEDED_RUN = ("a result-changing spec edit while a run is in flight: the operator deletes the "
                  "superseded Job with its ConfigMap and Service")
UNEXERCISED: dict[tuple[str, str, str], str] = {
    ("batch", "jobs", "delete"): SUPERSEDED_RUN,
    ("", "configmaps", "delete"): SUPERSEDED_RUN,
    ("", "services", "delete"): SUPERSEDED_RUN,
    ("serving.kserve.io", "inferenceservices", "patch"): "a change of spec.serving on a served campaign",
    ("serving.kserve.io", "inferenceservices", "delete"): "spec.serving.enabled turned off",
}
# Rights never requested but checked by OwnerReferencesPermissionEnforcement (on in this tier, as in
# OpenShift) on every child the operator creates with blockOwnerDeletion: without them the
# pipeline's Jobs would be refused (test_rbac.py shows the plugin refusing).
ADMISSION_CHECKED = {("osmf.dev", f"{kind}/finalizers", "update") for kind in (
    "audiencegroupings", "gaipdatasets", "gmllmtrainings", "groupdporuns", "adimagecampaigns")}


def operator_requests(control_plane, operator) -> list[dict]:
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{operator.service_account}"
    return [e for e in control_plane.audit_events() if e["user"]["username"] == user
            and e.get("objectRef")]


def granted(rendered_chart) -> set[tuple[str, str, str]]:
    role = rendered_chart.one("ClusterRole")
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def used(events: list[dict]) -> set[tuple[str, str, str]]:
    out = set()
    for e in events:
        ref = e["objectRef"]
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.add((ref.get("apiGroup", ""), resource, e["verb"]))
    return out


@pytest.fixture(scope="module")
def session_work(pipeline):
    """The pipeline must have run in this session: it is what exercises the operator's rights."""
    return pipeline


def forbidden_by_policy(event: dict) -> bool:
    """A 403 that a right in the chart would have prevented. Not: admission refusing new objects
    in a namespace a test is deleting while the operator still reconciles there (a race with test
    teardown, allowed by RBAC, which the audit log records as decision "allow")."""
    status = event.get("responseStatus", {})
    if status.get("code") != 403:
        return False
    if event.get("annotations", {}).get("authorization.k8s.io/decision") == "forbid":
        return True
    causes = status.get("details", {}).get("causes", [])
    return not causes or any(c.get("reason") != "NamespaceTerminating" for c in causes)


def test_the_operator_was_never_forbidden(control_plane, operator, session_work):
    denied = [(e["verb"], e["objectRef"], e["responseStatus"].get("message", ""))
              for e in operator_requests(control_plane, operator) if forbidden_by_policy(e)]
    assert not denied, denied


def test_every_granted_right_was_used(control_plane, operator, rendered_chart, session_work):
    unused = granted(rendered_chart) - used(operator_requests(control_plane, operator))
    unexplained = sorted(unused - set(UNEXERCISED) - ADMISSION_CHECKED)
    assert not unexplained, f"granted but never used (drop them from the chart): {unexplained}"
