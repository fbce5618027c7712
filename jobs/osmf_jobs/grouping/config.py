"""The AudienceGrouping job's typed configuration: a job config whose spec is the AudienceGrouping
spec (`osmf_core.api`); `run_job` loads it, so the job takes no other kind.

Steps: `train` (fit the preference model, export it, cache encoder features), `cluster` (shard i
of N: its share of products), `merge` (combine shards, metrics, manifest). What it writes is
`osmf_core.layout.Grouping`.
"""

from __future__ import annotations

from osmf_core.api import AudienceGroupingSpec, JobConfig


class AudienceGroupingConfig(JobConfig[AudienceGroupingSpec]):
    """The config of an AudienceGrouping step."""
