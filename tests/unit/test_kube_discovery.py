"""kube.py's discovery: the Workload version Kueue serves, JobSet's API, and a 404 that is not "none".

The transport (`Kube.request`) is replaced by a table of what an API server answers; the real one
answers in the cluster tier (tests/cluster/test_kueue.py, test_jobset.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from osmf_operator.kube import Kube, KubeError, WorkloadUnavailable


class FakeServer(Kube):
    """Answers GETs from `paths` (a path → document, or an int HTTP status to raise); records every path asked."""

    def __init__(self, paths: dict[str, Any]):
        super().__init__(api_client=None)
        self.paths, self.asked = paths, []

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> Any:
        self.asked.append(path)
        answer = self.paths.get(path, 404)
        if isinstance(answer, int):
            raise KubeError(answer, f"the server could not find the requested resource ({path})")
        return answer() if callable(answer) else answer


def group(*versions: str, preferred: str | None = None) -> dict[str, Any]:
    return {"kind": "APIGroup", "name": "kueue.x-k8s.io",
            "versions": [{"groupVersion": f"kueue.x-k8s.io/{v}", "version": v} for v in versions],
            "preferredVersion": {"version": preferred or versions[0]}}


def workloads(uid: str) -> dict[str, Any]:
    return {"items": [{"metadata": {"name": "job-x", "labels": {"kueue.x-k8s.io/job-uid": uid}}}]}


WL = "/apis/kueue.x-k8s.io/{}/namespaces/ns/workloads"


@pytest.mark.parametrize("served, expect", [
    (group("v1beta2", "v1beta1"), "v1beta2"),
    (group("v1beta1", "v1beta2", preferred="v1beta1"), "v1beta2"),  # the newest we read, whatever is preferred
    (group("v1beta1"), "v1beta1"),  # an older Kueue
])
def test_workloads_are_read_at_the_newest_version_served(served, expect):
    server = FakeServer({"/apis/kueue.x-k8s.io": served, WL.format(expect): workloads("uid-1")})
    assert server.workload_for_job("ns", "uid-1")["metadata"]["name"] == "job-x"
    assert server.asked == ["/apis/kueue.x-k8s.io", WL.format(expect)]
    server.workload_for_job("ns", "uid-1")
    assert server.asked.count("/apis/kueue.x-k8s.io") == 1, "discovery is cached"


def test_no_workload_yet_is_none():
    server = FakeServer({"/apis/kueue.x-k8s.io": group("v1beta2"), WL.format("v1beta2"): {"items": []}})
    assert server.workload_for_job("ns", "uid-1") is None


def test_kueue_not_installed_is_an_error_that_says_what_to_do():
    with pytest.raises(WorkloadUnavailable, match="install Kueue or set kueue.enabled=false"):
        FakeServer({}).workload_for_job("ns", "uid-1")


def test_a_404_from_a_served_version_is_an_error_after_one_fresh_discovery():
    server = FakeServer({"/apis/kueue.x-k8s.io": group("v1beta2", "v1beta1"), WL.format("v1beta2"): 404})
    with pytest.raises(WorkloadUnavailable, match="answer 404 although the API server lists that version"):
        server.workload_for_job("ns", "uid-1")
    assert server.asked.count("/apis/kueue.x-k8s.io") == 2


def test_a_version_dropped_since_discovery_is_found_again():
    server = FakeServer({"/apis/kueue.x-k8s.io": group("v1beta1"), WL.format("v1beta1"): workloads("u")})
    server._workload_version = "v1beta2"  # what an earlier discovery found; the server no longer has it
    server.paths[WL.format("v1beta2")] = 404
    assert server.workload_for_job("ns", "u") is not None
    assert server.asked[-1] == WL.format("v1beta1")


def test_other_errors_are_not_hidden():
    server = FakeServer({"/apis/kueue.x-k8s.io": group("v1beta2"), WL.format("v1beta2"): 403})
    with pytest.raises(KubeError) as error:
        server.workload_for_job("ns", "uid-1")
    assert error.value.status == 403 and not isinstance(error.value, WorkloadUnavailable)


def test_the_jobset_api_is_found_by_its_resource_list():
    served = {"/apis/jobset.x-k8s.io/v1alpha2": {"resources": [{"name": "jobsets"}, {"name": "jobsets/status"}]}}
    assert FakeServer(served).serves("jobset.x-k8s.io/v1alpha2", "jobsets")
    assert not FakeServer({}).serves("jobset.x-k8s.io/v1alpha2", "jobsets")
