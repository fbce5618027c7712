"""The one JSON document a Job receives (docs/contracts.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .common import API_VERSION, ApiModel
from .kinds import KINDS
from .roles import Role
from .resource import SpecError, format_errors

INVALID_INPUT_EXIT_CODE = 65  # sysexits EX_DATAERR: the Job's podFailurePolicy fails it at once
RETRIABLE_EXIT_CODE = 75  # sysexits EX_TEMPFAIL


class JobMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 1


class InputArtifact(ApiModel):
    kind: str | None = None
    name: str | None = None
    uri: str
    digest: str | None = None


class RunLocation(ApiModel):
    uri: str = Field(min_length=1)
    input_hash: str = Field(min_length=1)


class JobConfig(ApiModel):
    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str
    metadata: JobMetadata
    spec: dict[str, Any]
    step: str
    shards: int = Field(default=1, ge=1)
    run: RunLocation
    inputs: dict[str, InputArtifact] = Field(default_factory=dict)
    code_version: str = "0.0.0"

    @model_validator(mode="after")
    def _known_step(self) -> "JobConfig":
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not an OSMF kind")
        steps = [s.name for s in KINDS[self.kind].steps]
        if self.step not in steps:
            raise ValueError(f"step {self.step!r} is not a step of {self.kind}; use one of {steps}")
        return self

    @model_validator(mode="after")
    def _an_input_per_reference(self) -> "JobConfig":
        """Every resource the spec references has its output here, so no job checks that for itself."""
        info = KINDS[self.kind]
        try:
            spec = info.spec_model.model_validate(self.spec)
        except ValidationError:
            return self  # typed_spec() reports the spec's own problems by field
        missing = [f"inputs has no {ref.role!r} artifact for {ref.path} ({ref.kind} {ref.name})"
                   for ref in info.references(spec) if ref.role not in self.inputs]
        if missing:
            raise ValueError("; ".join(missing) + "; the operator passes the output of every resource the spec references")
        return self

    def typed_spec(self) -> ApiModel:
        """The spec validated with the same model the operator used."""
        try:
            return KINDS[self.kind].spec_model.model_validate(self.spec)
        except ValidationError as error:
            raise SpecError(format_errors(error, "spec", KINDS[self.kind].spec_model)) from None
