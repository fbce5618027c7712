"""Peering priorities of operator replicas (osmf_operator.__main__): kopf pauses an operator that sees
a live peer of higher or equal priority, so replicas must differ, and the oldest must win."""

from __future__ import annotations

from osmf_operator.__main__ import parse_args, seniority_priority


def test_the_older_replica_has_the_higher_priority():
    older = seniority_priority(1_700_000_000_000_000_000, tiebreak=999)
    newer = seniority_priority(1_700_000_000_001_000_000, tiebreak=0)  # one millisecond later
    assert older > newer


def test_replicas_started_in_the_same_millisecond_differ():
    at = 1_700_000_000_000_123_456
    assert len({seniority_priority(at, tiebreak) for tiebreak in range(1000)}) == 1000


def test_priorities_stay_exact_as_json_numbers():
    """kopf keeps them in the peering object's status (JSON): beyond 2**53 they would round."""
    far_future = seniority_priority(4_102_444_800 * 10**9, tiebreak=999)  # the year 2100
    assert abs(far_future) < 2**53


def test_peering_and_priority_flags():
    args = parse_args(["--peering", "osmf", "--priority", "7"])
    assert (args.peering, args.priority) == ("osmf", 7)
    assert parse_args([]).peering is None and parse_args([]).priority is None
