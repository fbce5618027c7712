"""Many resources at once (issue 4, item 6): 200 AudienceGroupings applied in one `kubectl apply`
all get their children. bench/operator_cluster.py runs the same with a baseline and prints the
time and the operator's RSS; here the test asserts that nothing is lost and nothing made twice.
"""

from __future__ import annotations

import pytest

from bench.operator_cluster import apply_and_wait, requests_by_kind
from tests.cluster.pipeline import upload_tiny_world

pytestmark = pytest.mark.cluster

COUNT = 200


def test_200_audience_groupings_applied_at_once_all_get_their_children(
        control_plane, operator, s3_server):
    data_uri = upload_tiny_world(s3_server, "scale-world")
    rss_before = operator.rss_bytes()
    result = apply_and_wait(control_plane, "scale", COUNT, data_uri, timeout=900)
    rss_after = operator.rss_bytes()
    print(f"\n{COUNT} AudienceGroupings: children after {result['children_s']:.1f} s; "
          f"operator RSS {rss_before / 2**20:.0f} → {rss_after / 2**20:.0f} MiB")
    assert operator.healthy()
    # Nothing was made twice: a burst of events per resource is one pass, not one each (audit log).
    made = requests_by_kind(control_plane.audit_events(), "scale")
    assert made[("create", "jobs")] == COUNT and made[("create", "configmaps")] == COUNT, made
    control_plane.kubectl("delete", "namespace", "scale", "--wait=false")
