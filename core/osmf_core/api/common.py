"""Shared building blocks of the five osmf.dev/v1alpha1 kinds.

Every model here is the source of truth for the CRD schemas (see `osmf_operator.crdgen`):
descriptions become `kubectl explain` text, bounds become schema bounds, and the
`x-kubernetes-validations` rules become CEL rules that the API server enforces.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "osmf.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Quantities as Kubernetes writes them ("500m", "16Gi", "2"); the API server is the final authority.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SUPPORTED_URI_SCHEMES = ("s3", "file", "builtin")


def when_set(*fields: str) -> str:
    """A CEL guard: the API server checks rules against `{}` defaults too, where fields are absent."""
    return " || ".join(f"!has(self.{name})" for name in fields) + " || "


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL rule as the CRD schema writes it."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it appears in YAML/JSON (camelCase, defaults included)."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


def check_uri(value: str) -> str:
    """Accept s3://, file://, builtin: and plain local paths; name the fix otherwise."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", value)
    if match and len(match.group(1)) > 1 and match.group(1).lower() not in SUPPORTED_URI_SCHEMES:
        raise ValueError(
            f"unsupported URI scheme '{match.group(1)}:'; use s3://bucket/prefix, file:///path or a local path"
        )
    return value


Uri = Annotated[str, Field(min_length=1, max_length=1024)]


class ReadsUri:
    """Marks a spec field that names data or a model a stage reads (`Annotated[..., READS]`).

    The operator checks every marked URI against the namespace's allow-list before anything is read
    (docs/operator.md, "Tenancy"); `read_uris` finds them, so a new URI field is covered by marking it.
    """

    def __repr__(self) -> str:
        return "READS"


READS = ReadsUri()


def read_uris(model: BaseModel | None, prefix: str = "spec") -> list[tuple[str, str]]:
    """(field path, URI) of every field marked READS in `model` and its sections, in declaration order."""
    found: list[tuple[str, str]] = []
    if model is None:
        return found
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        path = f"{prefix}.{info.alias or name}"
        if any(isinstance(m, ReadsUri) for m in info.metadata) and isinstance(value, str):
            found.append((path, value))
        elif isinstance(value, BaseModel):
            found += read_uris(value, path)
    return found


class ObjectRef(ApiModel):
    """A reference to another OSMF resource in the same namespace."""

    name: str = Field(
        min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the referenced resource in this namespace.",
    )


class Resources(ApiModel):
    """What one stage's pods ask the cluster for. Node pool names map to node labels in the operator settings."""

    node_pool: str | None = Field(
        default=None, max_length=63, pattern=DNS_LABEL_PATTERN,
        description="Node pool name from the operator settings (e.g. h100). Empty: the settings' default pool for GPU stages, no pool for CPU stages.",
    )
    gpus_per_node: int = Field(default=0, ge=0, le=16, description="GPUs per pod; 0 runs the stage on CPU nodes.")
    nodes: int = Field(default=1, ge=1, le=64, description="Pods that train together (multi-node torchrun); only training stages use more than 1.")
    cpu: str = Field(default="2", max_length=16, pattern=QUANTITY_PATTERN, description="CPU request and limit per pod (Kubernetes quantity).")
    memory: str = Field(default="8Gi", max_length=16, pattern=QUANTITY_PATTERN, description="Memory request and limit per pod (Kubernetes quantity).")


def resources_default(gpus: int, cpu: str, memory: str, nodes: int = 1) -> Any:
    return Field(
        default_factory=lambda: Resources(gpus_per_node=gpus, cpu=cpu, memory=memory, nodes=nodes),
        description="Compute for this stage's pods: node pool, GPUs per node, nodes, CPU and memory.",
    )


class RunPolicy(ApiModel):
    """Retries and deadlines of the stage's Jobs."""

    backoff_limit: int = Field(default=3, ge=0, le=20, description="Retries of a failed pod before the stage is Stalled (disruptions do not count).")
    active_deadline_seconds: int = Field(default=86400, ge=60, le=2592000, description="Wall-clock limit of one Job.")
    ttl_seconds_after_finished: int = Field(default=604800, ge=0, le=31536000, description="How long finished Jobs are kept for inspection.")


class RenderingSpec(ApiModel):
    """How backgrounds are painted around the product (PCIG). Defaults are CAIG's published settings."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [
            cel(when_set("backend") + "self.backend != 'diffusers' || (has(self.modelUri) && has(self.controlnetUri))",
                "the diffusers backend needs modelUri and controlnetUri", ".modelUri"),
            cel(when_set("cannyLow", "cannyHigh") + "self.cannyLow <= self.cannyHigh", "cannyLow must be <= cannyHigh", ".cannyLow"),
        ]},
    }

    backend: Literal["diffusers", "procedural"] = Field(
        default="diffusers",
        description="diffusers: Stable Diffusion inpainting with a canny ControlNet; procedural: a CPU painter driven by the prompt's style words.",
    )
    size: int = Field(default=512, ge=32, le=2048, description="Output width and height in pixels.")
    steps: int = Field(default=30, ge=1, le=200, description="Denoising steps (diffusers).")
    guidance_scale: float = Field(default=7.5, ge=0.0, le=30.0, description="Classifier-free guidance scale (diffusers).")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Base random seed; each image derives its own.")
    product_scale: float = Field(default=0.78, gt=0.05, le=0.78, description="Largest share of the canvas the product may take (CAIG: at most 0.78); it is centred.")
    # No default model: a forgotten URI must not silently render with random test weights.
    model_uri: Annotated[str | None, READS] = Field(
        default=None, min_length=1, max_length=1024,
        description="Stable Diffusion 1.5-class inpainting pipeline directory (s3://, file://, or builtin:tiny-sd for tests). Required by the diffusers backend.",
    )
    controlnet_uri: Annotated[str | None, READS] = Field(
        default=None, min_length=1, max_length=1024,
        description="Canny ControlNet directory (s3://, file://, or builtin:tiny-controlnet for tests). Required by the diffusers backend.",
    )
    canny_low: int = Field(default=100, ge=0, le=255, description="Canny lower threshold on the product foreground.")
    canny_high: int = Field(default=200, ge=0, le=255, description="Canny upper threshold on the product foreground.")
    mask_dilation: int = Field(default=20, ge=0, le=128, description="Pixels the product mask is dilated by before inpainting.")

    @field_validator("model_uri", "controlnet_uri")
    @classmethod
    def _supported_scheme(cls, value: str | None) -> str | None:
        return check_uri(value) if value is not None else None

    @model_validator(mode="after")
    def _backend_inputs(self) -> "RenderingSpec":
        if self.backend == "diffusers" and (self.model_uri is None or self.controlnet_uri is None):
            raise ValueError("the diffusers backend needs modelUri and controlnetUri (use backend: procedural for CPU runs)")
        if self.canny_low > self.canny_high:
            raise ValueError("cannyLow must be <= cannyHigh")
        return self


# ---- status -----------------------------------------------------------------------------------


class Condition(ApiModel):
    """A metav1.Condition."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    type: str = Field(max_length=316, description="Condition type: Ready, Succeeded, Stalled, Reconciling, Queued.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="CamelCase machine-readable reason.")
    message: str = Field(default="", max_length=32768, description="Human-readable detail.")
    last_transition_time: str = Field(max_length=64, description="When the status last changed (RFC 3339).")
    observed_generation: int = Field(default=0, ge=0, description="The generation this condition was computed for.")


class Progress(ApiModel):
    """Where the running step is (copied from the Job's progress.json, at most every 30 s)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    step: str = Field(default="", max_length=63, description="The step that is running.")
    percent: float = Field(default=0.0, ge=0, le=100, description="Completion of the whole stage in percent.")
    current: int = Field(default=0, ge=0, description="Units done in the running step.")
    total: int = Field(default=0, ge=0, description="Units in the running step.")
    eta_seconds: float | None = Field(default=None, description="Estimated seconds left in the running step.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Latest training metrics (loss, …).")
    updated: str | None = Field(default=None, max_length=64, description="When the job last reported (RFC 3339).")


class ArtifactRef(ApiModel):
    """One artifact: a directory in the store and the digest of its manifest."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    name: str = Field(max_length=63, description="Role of the artifact (data, grouping, dataset, …).")
    kind: str | None = Field(default=None, max_length=63, description="Kind of the resource that produced it.")
    uri: str = Field(max_length=2048, description="Where it is stored.")
    digest: str | None = Field(default=None, max_length=128, description="sha256 of its manifest (or of the data listing).")


class Artifacts(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    input_hash: str | None = Field(default=None, max_length=64, description="Hash of the result-changing spec fields and input digests.")
    inputs: list[ArtifactRef] = Field(default_factory=list, max_length=32, description="Artifacts this run read.")
    output: ArtifactRef | None = Field(default=None, description="This run's artifact directory and manifest digest.")


class ChildRef(ApiModel):
    """One object the operator created for the current run."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    kind: str = Field(max_length=63, description="Job, Service, ConfigMap or InferenceService.")
    name: str = Field(max_length=253, description="Object name.")
    step: str | None = Field(default=None, max_length=63, description="Pipeline step the child runs.")


class Children(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    objects: list[ChildRef] = Field(default_factory=list, max_length=256, description="Child objects of the current run.")
    url: str | None = Field(default=None, max_length=2048, description="Serving URL (AdImageCampaign).")


class RunState(ApiModel):
    """Bookkeeping of the current run: which steps finished and how many attempts failed."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    input_hash: str | None = Field(default=None, max_length=64, description="Input hash of the run these steps belong to.")
    completed_steps: list[Annotated[str, Field(max_length=63)]] = Field(default_factory=list, max_length=16, description="Steps whose Job succeeded.")
    attempt: int = Field(default=1, ge=1, description="Attempt number of the current step (the operator recreates a failed Job until runPolicy.backoffLimit).")
    start_time: str | None = Field(default=None, max_length=64, description="When the run started (RFC 3339).")
    completion_time: str | None = Field(default=None, max_length=64, description="When the run finished (RFC 3339).")


class OsmfStatus(ApiModel):
    """Status shared by all kinds (kstatus-compliant)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    observed_generation: int = Field(default=0, ge=0, description="metadata.generation this status describes.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, description="Ready, Succeeded, Stalled, Reconciling, Queued.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    stage: str = Field(default="Pending", max_length=63, description="Human-readable stage: Pending, Waiting, Queued, Running, Succeeded, Failed.")
    progress: Progress | None = Field(default=None, description="Progress of the running step.")
    metrics: dict[str, float] = Field(default_factory=dict, description="The stage's evaluation figures from its manifest.")
    summary: str | None = Field(default=None, max_length=256, description="The key metric as a short string (printer column).")
    artifacts: Artifacts = Field(default_factory=Artifacts, description="Inputs and output of the current run.")
    children: Children = Field(default_factory=Children, description="Jobs, Services and InferenceServices of the current run.")
    run: RunState | None = Field(default=None, description="Bookkeeping of the current run.")
