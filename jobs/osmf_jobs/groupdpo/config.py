"""The GroupDPORun job's typed configuration: a job config whose spec is the GroupDPORun spec
(`osmf_core.api`); `run_job` loads it, so the job takes no other kind. One step, `train`.
"""

from __future__ import annotations

from osmf_core.api import GroupDPORunSpec, JobConfig


class GroupDPORunConfig(JobConfig[GroupDPORunSpec]):
    """The config of a GroupDPORun step."""
