"""The one JSON document a Job receives (docs/contracts.md)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationInfo, field_validator, model_validator

from .common import API_VERSION, ApiModel
from .kinds import KINDS
from .roles import Role  # noqa: F401 - part of the job-config contract's names

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


SpecT = TypeVar("SpecT", bound=ApiModel)


class JobConfig(ApiModel, Generic[SpecT]):
    """The job config; `spec` is validated into the kind's spec model as the config is loaded, so
    a job reads the same typed spec the operator validated, checked once.

    `JobConfig` takes any kind (the operator builds every kind's config with it);
    `JobConfig[AudienceGroupingSpec]` (a job's own config model) takes that kind only."""

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str
    metadata: JobMetadata
    spec: SerializeAsAny[SpecT]
    step: str
    shards: int = Field(default=1, ge=1)
    run: RunLocation
    inputs: dict[str, InputArtifact] = Field(default_factory=dict)
    code_version: str = "0.0.0"

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"{kind!r} is not an OSMF kind; use one of {', '.join(KINDS)}")
        wanted = cls.model_fields["spec"].annotation
        if isinstance(wanted, type) and wanted is not KINDS[kind].spec_model:
            runs = next((info.kind for info in KINDS.values() if info.spec_model is wanted), wanted.__name__)
            raise ValueError(f"this job runs {runs} configs, not {kind}; run {KINDS[kind].job_module} for a {kind}")
        return kind

    @field_validator("spec", mode="wrap")
    @classmethod
    def _typed_spec(cls, spec: Any, handler: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind is None:  # the kind did not validate; its error says what to fix
            return spec
        model = KINDS[kind].spec_model
        if not isinstance(spec, model):
            spec = model.model_validate(spec)  # its errors come out under `spec.`
        return handler(spec)

    @model_validator(mode="after")
    def _known_step(self) -> "JobConfig":
        steps = [s.name for s in KINDS[self.kind].steps]
        if self.step not in steps:
            raise ValueError(f"step {self.step!r} is not a step of {self.kind}; use one of {steps}")
        return self

    @model_validator(mode="after")
    def _an_input_per_reference(self) -> "JobConfig":
        """Every resource the spec references has its output here, so no job checks that for itself."""
        missing = [f"inputs has no {ref.role!r} artifact for {ref.path} ({ref.kind} {ref.name})"
                   for ref in KINDS[self.kind].references(self.spec) if ref.role not in self.inputs]
        if missing:
            raise ValueError("; ".join(missing) + "; the operator passes the output of every resource the spec references")
        return self
