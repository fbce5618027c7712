"""Pure builders: a JobRequest or ServiceRequest plus settings → Kubernetes manifests (dicts)."""

from .jobs import build_job_objects, config_map_name, rendezvous_service_name
from .pod import BuildError, owner_of, spec_problems
from .serving import build_inference_service

__all__ = [
    "BuildError", "build_inference_service", "build_job_objects", "config_map_name", "owner_of",
    "rendezvous_service_name", "spec_problems",
]
