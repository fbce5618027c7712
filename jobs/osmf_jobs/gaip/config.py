"""The GAIPDataset job's typed configuration: a job config whose spec is the GAIPDataset spec
(`osmf_core.api`); `run_job` loads it, so the job takes no other kind.

Steps: `aggregate` (shard i of N: its share of products) and `merge`. What it writes is
`osmf_core.layout.GAIP`.
"""

from __future__ import annotations

from osmf_core.api import GAIPDatasetSpec, JobConfig


class GAIPDatasetConfig(JobConfig[GAIPDatasetSpec]):
    """The config of a GAIPDataset step."""
