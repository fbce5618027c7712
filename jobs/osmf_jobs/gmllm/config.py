"""The GMLLMTraining job's typed configuration: a job config whose spec is the GMLLMTraining spec
(`osmf_core.api`); `run_job` loads it, so the job takes no other kind. One step, `train`.
"""

from __future__ import annotations

from osmf_core.api import GMLLMTrainingSpec, JobConfig


class GMLLMTrainingConfig(JobConfig[GMLLMTrainingSpec]):
    """The config of a GMLLMTraining step."""
