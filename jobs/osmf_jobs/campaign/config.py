"""The campaign job's typed configuration: a job config whose spec is the AdImageCampaign spec
(`osmf_core.api`); `run_job` loads it, so the job takes no other kind. What it writes is
`osmf_core.layout.Campaign`.
"""

from __future__ import annotations

from osmf_core.api import AdImageCampaignSpec, JobConfig


class AdImageCampaignConfig(JobConfig[AdImageCampaignSpec]):
    """The config of an AdImageCampaign step."""
