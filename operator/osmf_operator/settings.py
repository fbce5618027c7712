"""Operator settings: one typed object, loaded once at start-up (the only module that reads the environment).

In a cluster the Helm chart renders these as YAML into a ConfigMap mounted at OSMF_SETTINGS_FILE.
User CRs never carry cluster specifics (labels that select the H100 pool, taints, images, bucket,
credentials, Kueue queue): those live here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel


class SettingsModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Toleration(SettingsModel):
    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = None


class NodePool(SettingsModel):
    node_selector: dict[str, str] = Field(default_factory=dict, description="Labels that select the pool's nodes.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations for the pool's taints.")
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended resource name of the pool's GPUs.")


def default_pools() -> dict[str, NodePool]:
    # Autoscaled pools cannot scale from zero on GFD labels (NOTES.md), so the default selects by
    # the cloud's accelerator label; platform teams override this in Helm values.
    return {
        "h100": NodePool(
            node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
            tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        )
    }


class Images(SettingsModel):
    # The names the release workflow publishes (.github/workflows/release.yml), tagged with the package
    # version; no registry: the container runtime pulls from its default one.
    operator: str = "osmf/operator:0.1.0"
    trainer: str = "osmf/trainer:0.1.0"
    predictor: str = "osmf/predictor:0.1.0"
    pull_policy: str = "IfNotPresent"


URI_PREFIX_PATTERN = r"^(s3://[a-z0-9][a-z0-9.-]*[a-z0-9](/.*)?|file:///.*)$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ArtifactSettings(SettingsModel):
    root_uri: str = Field(default="s3://osmf-artifacts", description="Root of every run directory.")
    endpoint_url: str | None = Field(default=None, description="S3 endpoint for S3-compatible stores.")
    region: str | None = None
    credentials_secret: str | None = Field(default=None, description="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; none = workload identity.")
    service_account: str | None = Field(default=None, description="ServiceAccount for job and predictor pods (workload identity).")
    allowed_uri_prefixes: list[Annotated[str, Field(pattern=URI_PREFIX_PATTERN, max_length=1024)]] = Field(
        default_factory=list,
        description="URI prefixes that spec data and model URIs may name (besides builtin: models and the namespace's "
                    "own run directories); empty = any.")
    multipart_threshold_mb: float = Field(default=64, gt=0, description="Files above this many MiB travel as S3 multipart transfers (uploads and ranged downloads).")
    multipart_chunk_mb: float = Field(default=64, gt=0, le=5120, description="Part size in MiB; S3 allows 10,000 parts, so 64 MiB parts carry objects up to 640 GiB.")


class TenantSettings(SettingsModel):
    """One namespace's artifact identity, root and allow-list; an unset field is the platform's (`artifacts`).

    Naming `credentialsSecret` or `serviceAccount` replaces the platform's identity whole: a tenant with
    only a ServiceAccount never gets the platform's keys in its pods."""

    root_uri: str | None = Field(default=None, description="Root of this namespace's run directories.")
    endpoint_url: str | None = None
    region: str | None = None
    credentials_secret: str | None = Field(default=None, description="Secret in the namespace with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the operator reads it for its own reads there.")
    service_account: str | None = Field(default=None, description="ServiceAccount in the namespace for job and predictor pods (workload identity).")
    allowed_uri_prefixes: list[Annotated[str, Field(pattern=URI_PREFIX_PATTERN, max_length=1024)]] | None = Field(
        default=None, description="URI prefixes this namespace's specs may read; unset = the platform's list.")


class KueueSettings(SettingsModel):
    enabled: bool = False
    default_queue: str = "osmf"


class OperatorSettings(SettingsModel):
    node_pools: dict[str, NodePool] = Field(default_factory=default_pools)
    default_gpu_pool: str = "h100"
    cpu_node_selector: dict[str, str] = Field(default_factory=dict, description="Labels for CPU-only pods (merges, GAIP).")
    images: Images = Field(default_factory=Images)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    kueue: KueueSettings = Field(default_factory=KueueSettings)
    tenants: dict[Annotated[str, Field(pattern=NAMESPACE_PATTERN, max_length=63)], TenantSettings] = Field(
        default_factory=dict, description="Per-namespace artifact identity, root and URI allow-list.")
    watched_namespaces: list[str] = Field(default_factory=list, description="Empty: all namespaces.")
    progress_interval_seconds: float = Field(default=30.0, ge=1.0)
    requeue_seconds: float = Field(default=30.0, ge=1.0, description="How often running stages are re-checked.")
    shm_size: str = "16Gi"
    run_as_user: int | None = Field(
        default=None, ge=1,
        description="UID of job and predictor pods; none = the image's non-root user, or the platform's (OpenShift's restricted SCC).")
    code_version: str = "0.1.0"

    def artifacts_for(self, namespace: str) -> ArtifactSettings:
        """The artifact settings in force for resources of `namespace`: its tenant entry over the platform's."""
        tenant = self.tenants.get(namespace)
        if tenant is None:
            return self.artifacts
        own_identity = tenant.credentials_secret is not None or tenant.service_account is not None
        return ArtifactSettings(
            root_uri=tenant.root_uri or self.artifacts.root_uri,
            endpoint_url=tenant.endpoint_url or self.artifacts.endpoint_url,
            region=tenant.region or self.artifacts.region,
            credentials_secret=tenant.credentials_secret if own_identity else self.artifacts.credentials_secret,
            service_account=tenant.service_account if own_identity else self.artifacts.service_account,
            allowed_uri_prefixes=self.artifacts.allowed_uri_prefixes if tenant.allowed_uri_prefixes is None else tenant.allowed_uri_prefixes,
            multipart_threshold_mb=self.artifacts.multipart_threshold_mb, multipart_chunk_mb=self.artifacts.multipart_chunk_mb,
        )

    @model_validator(mode="after")
    def _default_pool_exists(self) -> "OperatorSettings":
        if self.default_gpu_pool not in self.node_pools:
            raise ValueError(f"defaultGpuPool {self.default_gpu_pool!r} is not in nodePools ({', '.join(self.node_pools)})")
        return self


class SettingsError(ValueError):
    """Settings that do not validate; `problems` are one-line `settings.path: message` strings."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_settings(data: Any) -> OperatorSettings:
    if data is not None and not isinstance(data, dict):
        raise SettingsError([f"settings: must be a mapping of setting names to values, not {type(data).__name__}"])
    try:
        return OperatorSettings.model_validate(data or {})
    except ValidationError as error:
        raise SettingsError([
            "settings" + "".join(f".{part}" for part in e["loc"]) + ": "
            + ("unknown setting; remove it or check its spelling" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
            for e in error.errors()
        ]) from None


def load_settings(environ: dict[str, str] | None = None) -> OperatorSettings:
    """Read OSMF_SETTINGS_FILE (YAML) and apply OSMF_ARTIFACT_ROOT on top; the one place env is read."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = env.get("OSMF_SETTINGS_FILE")
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise SettingsError([f"OSMF_SETTINGS_FILE {path}: {error}"]) from None
    if env.get("OSMF_ARTIFACT_ROOT") and isinstance(data, dict):
        data.setdefault("artifacts", {})["rootUri"] = env["OSMF_ARTIFACT_ROOT"]
    return parse_settings(data)
