"""The reconcile core (pure): plan a run, then decide actions and status. Shared by operator and local runtime."""

from .plan import Blocked, RunPlan, input_hash, plan_run, references
from .decide import (
    Decision,
    Event,
    JobRequest,
    Observed,
    ObservedJob,
    ObservedService,
    ServiceRequest,
    decide,
    job_name,
    service_name,
)

__all__ = [
    "Blocked", "RunPlan", "input_hash", "plan_run", "references", "Decision", "Event",
    "JobRequest", "Observed", "ObservedJob", "ObservedService", "ServiceRequest", "decide", "job_name", "service_name",
]
