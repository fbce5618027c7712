"""osmf.dev/v1alpha1: the typed API, source of truth for CRDs, validation and job configs."""

from .common import API_VERSION, GROUP, VERSION, Condition, OsmfStatus, RenderingSpec, Resources, RunPolicy
from .jobconfig import INVALID_INPUT_EXIT_CODE, RETRIABLE_EXIT_CODE, InputArtifact, JobConfig
from .kindspec import Inherit, KindSpec, Ref, RequiredWhen, When
from .kinds import (
    KINDS,
    AdImageCampaignSpec,
    AudienceGroupingSpec,
    GAIPDatasetSpec,
    GMLLMTrainingSpec,
    GroupDPORunSpec,
    Kind,
    KindInfo,
    Reference,
    Step,
)
from .roles import Role
from .resource import Resource, SpecError, parse_resource

__all__ = [
    "API_VERSION", "GROUP", "VERSION", "KINDS", "Condition", "OsmfStatus", "RenderingSpec", "Resources",
    "RunPolicy", "INVALID_INPUT_EXIT_CODE", "RETRIABLE_EXIT_CODE", "InputArtifact", "JobConfig", "Role",
    "AdImageCampaignSpec", "AudienceGroupingSpec", "GAIPDatasetSpec", "GMLLMTrainingSpec", "GroupDPORunSpec",
    "Inherit", "Kind", "KindInfo", "KindSpec", "Ref", "Reference", "RequiredWhen", "Step", "When", "Resource",
    "SpecError", "parse_resource",
]
