"""The five osmf.dev/v1alpha1 kinds: spec models with the paper's defaults, and their metadata.

Defaults follow "One Size, Many Fits" (arXiv 2602.02033); where it is silent, CAIG (arXiv 2502.06823).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ..layout import Campaign
from .common import (
    READS,
    ApiModel,
    ObjectRef,
    RenderingSpec,
    Resources,
    RunPolicy,
    Uri,
    cel,
    check_uri,
    when_set,
    resources_default,
)
from .kindspec import Inherit, KindSpec, Ref, RequiredWhen, When
from .roles import Role

IMMUTABLE = "self == oldSelf"


class Kind:
    """The five kind names, for code that must name one; what a kind is and does is on its declaration."""

    AUDIENCE_GROUPING = "AudienceGrouping"
    GAIP_DATASET = "GAIPDataset"
    GMLLM_TRAINING = "GMLLMTraining"
    GROUP_DPO_RUN = "GroupDPORun"
    AD_IMAGE_CAMPAIGN = "AdImageCampaign"


def immutable_ref(description: str, optional: bool = False):
    """A reference that cannot change once set: a new reference is a new resource."""
    extra = {"x-kubernetes-validations": [cel(IMMUTABLE, "is immutable; create a new resource instead")]}
    if optional:
        return Field(default=None, description=description, json_schema_extra=extra)
    return Field(description=description, json_schema_extra=extra)


# ---- AudienceGrouping --------------------------------------------------------------------------


class DataSource(ApiModel):
    uri: Annotated[Uri, READS] = Field(description="Dataset root holding users, products, images and impressions tables (s3://, file:// or a local path).")

    @field_validator("uri")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return check_uri(value)


class PreferenceModelSpec(ApiModel):
    """The PAAG preference model: user attributes × product title × product image → 128-d preference embedding."""

    text_encoder: Annotated[str, READS] = Field(
        default="builtin:all-MiniLM-L6-v2", min_length=1, max_length=1024,
        description="Title encoder: a Hugging Face model directory (s3://, file://) or builtin:all-MiniLM-L6-v2.",
    )
    image_encoder: Annotated[str, READS] = Field(
        default="builtin:image-stats", min_length=1, max_length=1024,
        description="Image encoder: a Hugging Face ResNet/CLIP vision/ViT directory (s3://, file://), builtin:image-stats "
                    "(weight-free colour and texture statistics) or builtin:resnet-tiny (random weights, for tests).",
    )
    embedding_dim: int = Field(default=128, ge=8, le=1024, description="Width of the preference embedding.")
    epochs: int = Field(default=4, ge=1, le=100, description="Passes over the training impressions.")
    batch_size: int = Field(default=1024, ge=8, le=65536, description="Impressions per optimisation step.")
    learning_rate: float = Field(default=2e-3, gt=0, le=1, description="AdamW learning rate.")
    held_out_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Share of impressions held out for AUROC.")
    seed: int = Field(default=0, ge=0, description="Random seed.")

    @field_validator("text_encoder", "image_encoder")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return check_uri(value)


class ClusteringSpec(ApiModel):
    """Per-product K-means on preference embeddings, K chosen by silhouette."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [
            cel(when_set("minGroups", "maxGroups") + "self.minGroups <= self.maxGroups", "minGroups must be <= maxGroups", ".minGroups")]},
    }

    min_groups: int = Field(default=2, ge=1, le=5, description="Smallest K tried per product.")
    max_groups: int = Field(default=5, ge=1, le=5, description="Largest K tried per product (the paper caps it at 5).")
    silhouette_sample_size: int = Field(default=1000, ge=50, le=100000, description="Users sampled per product to score silhouette (exact silhouette is O(n²)).")
    search_sample_size: int = Field(
        default=300, ge=20, le=100000,
        description="Users of the silhouette sample on which K-means searches K and its restarts; the chosen K is then "
                    "refined on all of the product's users. Raise it up to silhouetteSampleSize for small or faint groups.",
    )
    max_iterations: int = Field(default=50, ge=1, le=1000, description="K-means iterations.")
    seed: int = Field(default=0, ge=0, description="Random seed.")

    @model_validator(mode="after")
    def _order(self) -> "ClusteringSpec":
        if self.min_groups > self.max_groups:
            raise ValueError("minGroups must be <= maxGroups")
        return self


class PrivacySpec(ApiModel):
    min_group_size: int = Field(default=50, ge=1, le=1000000, description="No group smaller than this: smaller groups merge into the nearest one.")


class AudienceGroupingSpec(KindSpec):
    """Learn product-aware preference embeddings and discover audience groups per product (PAAG)."""

    raw_data = "data.uri"

    data: DataSource = Field(description="The impression logs and catalog.")
    user_attributes: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        min_length=1, max_length=32,
        description="User attribute columns the model may read; no other column of the users table is ever read.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    model: PreferenceModelSpec = Field(default_factory=PreferenceModelSpec, description="Preference model settings.")
    clustering: ClusteringSpec = Field(default_factory=ClusteringSpec, description="Grouping settings.")
    privacy: PrivacySpec = Field(default_factory=PrivacySpec, description="Privacy floor.")
    shards: int = Field(default=1, ge=1, le=1024, description="Pods that cluster products in parallel (Indexed Job).")
    resources: Resources = resources_default(1, "4", "16Gi")
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Retries and deadlines.")

    @field_validator("user_attributes")
    @classmethod
    def _attributes(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("attribute names must be unique")
        if "user_id" in value:
            raise ValueError("user_id is an identifier, not an attribute; remove it")
        return value


# ---- GAIPDataset -------------------------------------------------------------------------------


class PairSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [
            cel(when_set("minCtrRatio", "maxCtrRatio") + "self.minCtrRatio <= self.maxCtrRatio", "minCtrRatio must be <= maxCtrRatio", ".minCtrRatio")]},
    }

    min_ctr_ratio: float = Field(default=1.05, ge=1.0, le=100.0, description="Smallest chosen/rejected CTR ratio of a preference pair (CAIG 1.05).")
    max_ctr_ratio: float = Field(default=1.20, ge=1.0, le=100.0, description="Largest chosen/rejected CTR ratio of a preference pair (CAIG 1.20).")

    @model_validator(mode="after")
    def _order(self) -> "PairSpec":
        if self.min_ctr_ratio > self.max_ctr_ratio:
            raise ValueError("minCtrRatio must be <= maxCtrRatio")
        return self


class SplitSpec(ApiModel):
    eval_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of products held out for evaluation.")
    seed: int = Field(default=0, ge=0, description="Random seed of the product split.")


class CaptionerSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [
            cel(when_set("kind") + "self.kind != 'vlm' || has(self.uri)", "a vlm captioner needs uri", ".uri")]},
    }

    kind: Literal["probe", "vlm"] = Field(default="probe", description="probe: deterministic image statistics → style words; vlm: a vision-language model.")
    uri: Annotated[str | None, READS] = Field(default=None, max_length=1024, description="Vision-language model directory (vlm only).")
    prompt: str = Field(
        default="Describe the background of this advertising image: palette, scene, lighting and mood.",
        max_length=1024, description="Instruction given to the vision-language model.",
    )

    @model_validator(mode="after")
    def _uri(self) -> "CaptionerSpec":
        if self.kind == "vlm" and not self.uri:
            raise ValueError("a vlm captioner needs uri")
        if self.uri:
            check_uri(self.uri)
        return self


class GAIPDatasetSpec(KindSpec):
    """Group-level CTR per (product, group, image) and preference pairs (GAIP)."""

    references = (Ref(Role.GROUPING, "grouping_ref", Kind.AUDIENCE_GROUPING),)
    inherits = (Inherit(Role.DATA, via=Role.GROUPING),)

    grouping_ref: ObjectRef = immutable_ref("The AudienceGrouping whose groups and logs are used.")
    min_impressions: int = Field(default=1000, ge=1, le=10**9, description="Keep a (product, group, image) only with at least this many impressions (CAIG 1000).")
    pairs: PairSpec = Field(default_factory=PairSpec, description="Preference pair selection.")
    split: SplitSpec = Field(default_factory=SplitSpec, description="Train/eval split by product.")
    captioner: CaptionerSpec = Field(default_factory=CaptionerSpec, description="How logged images' backgrounds are described.")
    shards: int = Field(default=1, ge=1, le=1024, description="Pods that aggregate products in parallel (Indexed Job).")
    resources: Resources = resources_default(0, "2", "8Gi")
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Retries and deadlines.")


# ---- GMLLMTraining -----------------------------------------------------------------------------


class ModelSource(ApiModel):
    uri: Annotated[Uri, READS] = Field(description="Model directory (s3://, file://, a local path) or builtin:tiny-llava for tests and the demo.")

    @field_validator("uri")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return check_uri(value)


class TrainingSpec(ApiModel):
    epochs: int = Field(default=10, ge=1, le=1000, description="Passes over the training set (paper: 10).")
    learning_rate: float = Field(default=2e-6, gt=0, le=1, description="Peak learning rate (paper: 2e-6).")
    scheduler: Literal["cosine", "linear", "constant"] = Field(default="cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    batch_size: int = Field(default=4, ge=1, le=1024, description="Examples per device per step; for the reward task, (product, group)s, each scored on all its images.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024, description="Steps accumulated per optimiser update.")
    precision: Literal["bf16", "fp16", "fp32"] = Field(default="bf16", description="Compute precision on GPU; CPU runs in fp32.")
    max_steps: int = Field(default=0, ge=0, description="Cap on optimiser steps; 0 = no cap.")
    checkpoint_every_steps: int = Field(default=200, ge=1, description="Checkpoint interval; a retried Job resumes from the last one.")
    max_length: int = Field(default=512, ge=16, le=32768, description="Token limit per example.")
    seed: int = Field(default=0, ge=0, description="Random seed.")
    keep_checkpoints: bool = Field(default=False, description="Keep checkpoints/ after success; by default they are removed once the manifest is written.")
    strategy: Literal["ddp", "fsdp"] = Field(default="ddp", description=(
        "Data parallelism over several GPUs: ddp replicates the model, gradients and optimizer state on every GPU "
        "(fastest while they fit: a full fine-tune needs about 16 bytes per trained parameter plus activations); "
        "fsdp shards them across the GPUs (FSDP2, one unit per transformer block) so each holds about 1/N: use it "
        "when a full fine-tune does not fit one GPU (LLaVA-7B on 80 GB). One process runs the same either way."))
    gradient_checkpointing: bool = Field(default=False, description=(
        "Keep only each transformer block's input during the forward pass and recompute the block in the backward "
        "pass: activations shrink from every block's intermediates to one block's (about a third more compute). "
        "Needed for LLaVA-7B's long image sequences on 80 GB GPUs; the result is the same either way."))
    data_loader_workers: int = Field(default=2, ge=0, le=64, description=(
        "Processes per rank that decode images and build the next batches while the GPU trains (PyTorch DataLoader, "
        "pinned memory on GPU); 0 builds them in the training process."))
    collective_timeout_seconds: int = Field(default=3600, ge=60, le=86400, description=(
        "How long a rank waits in a collective (all-gather, broadcast, barrier) before the run fails and is retried; "
        "above NCCL's 10-minute default because gathering and uploading a 7B model or checkpoint takes longer."))


class RewardSpec(ApiModel):
    ctr_loss_weight: float = Field(default=0.5, ge=0, le=10, description="Weight of the CTR regression term beside the pairwise loss (CAIG 0.5).")
    group_blind: bool = Field(default=False, description=(
        "Train a group-blind GRM (an ablation: no group tokens, no group × image interaction), to measure what the group "
        "adds. A group-aware GRM scores with an explicit group × image term on the grouping's preference-model image features."))


class GMLLMTrainingSpec(KindSpec):
    """Train the group-aware multimodal LLM (task pretrain) or its reward model (task reward)."""

    references = (
        Ref(Role.DATASET, "dataset_ref", Kind.GAIP_DATASET),
        Ref(Role.INIT, "init_from_ref", Kind.GMLLM_TRAINING, task="pretrain", when=When("task", "reward"), hint="a pretrain run"),
    )
    inherits = (Inherit(Role.GROUPING, via=Role.DATASET),)
    required_when = (RequiredWhen("base_model", When("task", "pretrain")),)
    transition_rules = (cel("self.task == oldSelf.task", "task is immutable; create a new resource instead", ".task"),)

    task: Literal["pretrain", "reward"] = Field(description="pretrain: the G-MLLM; reward: the GRM initialised from a pretrain run.")
    dataset_ref: ObjectRef = immutable_ref("The GAIPDataset to train on.")
    base_model: ModelSource | None = Field(default=None, description="LLaVA-style base model (pretrain; paper: LLaVA-1.6-Vicuna-7B).")
    init_from_ref: ObjectRef | None = immutable_ref("The pretrain GMLLMTraining to start from (reward).", optional=True)
    group_tokens: int = Field(default=10, ge=1, le=64, description="Soft tokens made from the group's representative vectors.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimisation settings.")
    reward: RewardSpec = Field(default_factory=RewardSpec, description="Reward-model settings (task reward).")
    resources: Resources = resources_default(8, "32", "256Gi")
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Retries and deadlines.")


# ---- GroupDPORun -------------------------------------------------------------------------------


Scorer = Literal["auto", "preferenceModel", "rewardModel"]
SCORER_DESCRIPTION = (
    "How much a group would click an image: preferenceModel (the AudienceGrouping's preference model: the group's "
    "expected CTR for the image's pixels), rewardModel (the GRM), or auto (the one with the higher held-out pairwise "
    "accuracy, as the reward run measured both; the preference model without a reward run).")


class DPOSpec(ApiModel):
    reward: Scorer = Field(default="auto", description="The reward that ranks each group's samples. " + SCORER_DESCRIPTION)
    beta: float = Field(default=0.5, gt=0, le=10, description="DPO temperature β (CAIG 0.5).")
    learning_rate: float = Field(default=2e-5, gt=0, le=1, description="LoRA learning rate.")
    epochs: int = Field(default=3, ge=1, le=100, description="Epochs per round.")
    rounds: int = Field(default=5, ge=1, le=50, description="Online rounds of sample → render → score → train (CAIG 5).")
    samples_per_group: int = Field(default=4, ge=2, le=64, description="Prompts sampled per (product, group) per round.")
    pairs_per_group: int | None = Field(
        default=None, ge=1, le=32,
        description="Disjoint preference pairs per (product, group) and round from its distinct samples ranked by the GRM: "
                    "best with worst, second best with second worst, ...; 1 keeps best vs worst only (CAIG); "
                    "default every sample once (samplesPerGroup / 2).",
    )
    temperature: float = Field(default=1.0, gt=0, le=5, description="Sampling temperature.")
    max_new_tokens: int = Field(default=48, ge=4, le=1024, description="Longest generated prompt.")
    batch_size: int = Field(default=4, ge=1, le=1024, description="Pairs per device per step.")
    precision: Literal["bf16", "fp16", "fp32"] = Field(default="bf16", description="Compute precision on GPU; CPU runs in fp32.")
    seed: int = Field(default=0, ge=0, description="Random seed.")
    keep_checkpoints: bool = Field(default=False, description="Keep checkpoints/ after success; by default they are removed once the manifest is written.")
    gradient_checkpointing: bool = Field(default=False, description=(
        "Recompute each transformer block in the backward pass instead of keeping its activations (the policy's "
        "pairs of long image sequences on 80 GB GPUs); the result is the same either way."))
    collective_timeout_seconds: int = Field(default=3600, ge=60, le=86400, description=(
        "How long a rank waits in a collective before the run fails and is retried (NCCL's default is 10 minutes)."))


class LoraSpec(ApiModel):
    r: int = Field(default=16, ge=1, le=512, description="LoRA rank.")
    alpha: int = Field(default=32, ge=1, le=1024, description="LoRA alpha.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=lambda: ["q_proj", "v_proj"], min_length=1, max_length=32,
        description="Module names adapted by LoRA.",
    )


class GroupDPORunSpec(KindSpec):
    """Align the G-MLLM to group preferences with Group-DPO, judged by the GRM."""

    references = (
        Ref(Role.POLICY, "policy_ref", Kind.GMLLM_TRAINING, task="pretrain"),
        Ref(Role.REWARD, "reward_model_ref", Kind.GMLLM_TRAINING, task="reward"),
        Ref(Role.DATASET, "dataset_ref", Kind.GAIP_DATASET),
    )
    inherits = (Inherit(Role.GROUPING, via=Role.DATASET),)

    policy_ref: ObjectRef = immutable_ref("The pretrain GMLLMTraining to align.")
    reward_model_ref: ObjectRef = immutable_ref("The reward GMLLMTraining (GRM) that judges samples.")
    dataset_ref: ObjectRef = immutable_ref("The GAIPDataset whose products and groups are sampled.")
    dpo: DPOSpec = Field(default_factory=DPOSpec, description="Group-DPO settings.")
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA adapter settings.")
    rendering: RenderingSpec = Field(description="How samples are rendered before the GRM scores them (backend and, for diffusers, model URIs).")
    resources: Resources = resources_default(8, "32", "256Gi")
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Retries and deadlines.")


# ---- AdImageCampaign ---------------------------------------------------------------------------


class GeneratorRef(ApiModel):
    kind: Literal["GroupDPORun", "GMLLMTraining"] = Field(description="GroupDPORun (aligned policy) or GMLLMTraining (a pretrain run).")
    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", description="Name of the generator in this namespace.")


class ServingSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [
            cel(when_set("minReplicas", "maxReplicas") + "self.minReplicas <= self.maxReplicas",
                "minReplicas must be <= maxReplicas", ".minReplicas")]},
    }

    enabled: bool = Field(default=False, description="Create a KServe InferenceService that maps viewers to images.")
    min_replicas: int = Field(default=1, ge=0, le=100, description="Smallest number of predictor replicas.")
    max_replicas: int = Field(default=1, ge=1, le=1000, description="Largest number of predictor replicas.")
    protocol: Literal["v1", "v2"] = Field(default="v1", description="KServe protocol version.")
    resources: Resources = Field(
        default_factory=lambda: Resources(gpus_per_node=0, cpu="1", memory="2Gi"),
        description="Predictor pod resources (CPU by default: assignment needs no GPU).",
    )


class GenerationSpec(ApiModel):
    temperature: float = Field(default=1.0, gt=0, le=5, description="Prompt sampling temperature.")
    max_new_tokens: int = Field(default=48, ge=4, le=1024, description="Longest generated prompt.")


class SelectionSpec(ApiModel):
    """How each group's image is chosen among its candidates."""

    scorer: Scorer = Field(default="auto", description="The scorer that picks each group's image. " + SCORER_DESCRIPTION)
    include_logged: bool = Field(default=True, description=(
        "The product's logged creatives compete with the generated images, so a group never gets an image the scorer "
        "rates below its best existing creative; false keeps generated images only."))


class AdImageCampaignSpec(KindSpec):
    """Generate one image per (product, audience group), pick the best, and serve them."""

    references = (
        Ref(Role.GROUPING, "grouping_ref", Kind.AUDIENCE_GROUPING),
        Ref(Role.GENERATOR, "generator_ref", task="pretrain"),  # the kind is spec.generatorRef.kind
        Ref(Role.REWARD, "reward_model_ref", Kind.GMLLM_TRAINING, task="reward", optional=True),
    )
    inherits = (Inherit(Role.DATA, via=Role.GROUPING), Inherit(Role.POLICY, via=Role.GENERATOR))
    serving_section = "serving"
    required_when = (RequiredWhen("reward_model_ref", When("selection.scorer", "rewardModel"), "a reward GMLLMTraining; or use preferenceModel"),)

    grouping_ref: ObjectRef = immutable_ref("The AudienceGrouping whose groups get images.")
    generator_ref: GeneratorRef = immutable_ref("The prompt generator: a GroupDPORun or a pretrain GMLLMTraining.")
    reward_model_ref: ObjectRef | None = immutable_ref("The reward GMLLMTraining (GRM) that can score the candidates (see selection.scorer).", optional=True)
    products: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=100000,
        description="Product ids to cover; empty = every product of the grouping.",
    )
    images_per_group: int = Field(default=4, ge=1, le=64, description="Candidates rendered per (product, group); the best is kept.")
    generation: GenerationSpec = Field(default_factory=GenerationSpec, description="Prompt sampling settings.")
    selection: SelectionSpec = Field(default_factory=SelectionSpec, description="Which scorer picks each group's image among generated and logged candidates.")
    rendering: RenderingSpec = Field(description="PCIG rendering settings (backend and, for diffusers, model URIs).")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="KServe serving settings.")
    shards: int = Field(default=1, ge=1, le=1024, description="Pods that render products in parallel (Indexed Job).")
    resources: Resources = resources_default(1, "8", "32Gi")
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Retries and deadlines.")

    @model_validator(mode="after")
    def _replicas(self) -> "AdImageCampaignSpec":
        if self.serving.min_replicas > self.serving.max_replicas:
            raise ValueError("serving.minReplicas must be <= serving.maxReplicas")
        return self


# ---- kind registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0


@dataclass(frozen=True)
class GpuWhen:
    """The step's code uses a GPU only when `spec.<path> == equals` (e.g. a VLM captioner)."""

    path: str  # dotted snake_case attribute path, e.g. "captioner.kind"
    equals: str

    def holds(self, spec: KindSpec) -> bool:
        value: object = spec
        for part in self.path.split("."):
            value = getattr(value, part)
        return value == self.equals


@dataclass(frozen=True)
class Step:
    """One Job of a kind's run. `gpu` says whether the step's code can use a GPU: False (merges,
    numpy clustering) runs on CPU whatever spec.resources asks; a `GpuWhen` asks the spec."""

    name: str
    sharded: bool = False
    gpu: bool | GpuWhen = True
    distributed: bool = False  # True: torchrun across gpusPerNode × nodes

    def uses_gpu(self, spec: KindSpec) -> bool:
        """Does this step's code put work on a GPU when the resources give it one?"""
        return self.gpu.holds(spec) if isinstance(self.gpu, GpuWhen) else self.gpu


@dataclass(frozen=True)
class Reference:
    """One reference of a resource, resolved against its spec: what it points at and what that must be."""

    role: str
    kind: str
    name: str
    path: str  # the spec field that names it, e.g. spec.groupingRef.name
    requires_task: str | None = None  # e.g. "pretrain" for a policy

    def wrong_task(self, target: KindSpec) -> str | None:
        """The referenced resource's task when it is not the one this reference needs, else None."""
        if self.requires_task is None:
            return None
        task = getattr(target, TASK_FIELD, self.requires_task)
        return task if task != self.requires_task else None


TASK_FIELD = "task"  # the spec field of the kinds whose runs come in tasks (GMLLMTraining)


@dataclass(frozen=True)
class KindInfo:
    """A kind's metadata; what its spec references, inherits and serves is declared on `spec_model` (KindSpec)."""

    kind: str
    plural: str
    short_name: str
    spec_model: type[KindSpec]
    job_module: str
    steps: tuple[Step, ...]
    key_metrics: tuple[str, ...]  # the first one the manifest has becomes status.summary
    description: str
    extra_columns: tuple[PrinterColumn, ...] = field(default_factory=tuple)
    report_page: str | None = None  # an HTML page in the run's artifact directory (the campaign's gallery)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def can_serve(self) -> bool:
        return self.spec_model.serving_section is not None

    @property
    def has_task(self) -> bool:
        return TASK_FIELD in self.spec_model.model_fields

    def references(self, spec: KindSpec) -> list[Reference]:
        """The resources `spec` consumes, by role, in declaration order."""
        out = []
        for ref in self.spec_model.references:
            target = ref.target(spec)
            if target is None:
                continue
            kind, name = target
            task = ref.task if ref.task and KINDS[kind].has_task else None
            out.append(Reference(ref.role, kind, name, ref.path, task))
        return out

    def raw_data_uri(self, spec: KindSpec) -> str | None:
        """The URI of the raw data the spec names (its listing is fingerprinted), if the kind reads any."""
        if self.spec_model.raw_data is None:
            return None
        value: object = spec
        for part in self.spec_model.raw_data.split("."):
            value = getattr(value, part)
        return value

    def serving(self, spec: KindSpec | None) -> ServingSpec | None:
        """The serving settings when the kind serves and the spec enables it."""
        section = self.spec_model.serving_section
        if section is None or spec is None:
            return None
        serving = getattr(spec, section)
        return serving if serving.enabled else None

    def serves_wire(self, spec: dict) -> bool:
        """`serving` on a spec as it arrived (camelCase dict), without parsing it."""
        section = self.spec_model.serving_section
        return section is not None and bool(((spec or {}).get(to_camel(section)) or {}).get("enabled"))


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(
            Kind.AUDIENCE_GROUPING, "audiencegroupings", "ag", AudienceGroupingSpec, "osmf_jobs.grouping",
            # train: the PAAG encoders and the preference model on the GPU; cluster: batched K-means
            # in numpy over exported weights (CPU); merge: tables.
            (Step("train"), Step("cluster", sharded=True, gpu=False), Step("merge", gpu=False)),
            key_metrics=("auroc",), description="Discovers audience groups per product from impression logs (PAAG).",
        ),
        KindInfo(
            Kind.GAIP_DATASET, "gaipdatasets", "gaip", GAIPDatasetSpec, "osmf_jobs.gaip",
            # aggregate: pandas, plus the captioner, which runs on the GPU only when it is a VLM.
            (Step("aggregate", sharded=True, gpu=GpuWhen("captioner.kind", "vlm")), Step("merge", gpu=False)),
            key_metrics=("pairs",), description="Group-level CTR per (product, group, image) and preference pairs (GAIP).",
        ),
        KindInfo(
            Kind.GMLLM_TRAINING, "gmllmtrainings", "gmllm", GMLLMTrainingSpec, "osmf_jobs.gmllm",
            (Step("train", distributed=True),),
            key_metrics=("pairwise_accuracy", "style_match", "eval_loss"), description="Trains the group-aware multimodal LLM (pretrain) or its reward model (reward).",
            extra_columns=(PrinterColumn("Task", ".spec.task"),),
        ),
        KindInfo(
            Kind.GROUP_DPO_RUN, "groupdporuns", "gdpo", GroupDPORunSpec, "osmf_jobs.groupdpo",
            (Step("train", distributed=True),),
            key_metrics=("win_rate_vs_initial",), description="Aligns the G-MLLM to group preferences with Group-DPO.",
        ),
        KindInfo(
            Kind.AD_IMAGE_CAMPAIGN, "adimagecampaigns", "aic", AdImageCampaignSpec, "osmf_jobs.campaign",
            (Step("generate", sharded=True), Step("merge", gpu=False)),
            key_metrics=("images",), description="Makes one image per (product, audience group) and serves them.",
            extra_columns=(PrinterColumn("URL", ".status.children.url", priority=1),), report_page=Campaign.REPORT_HTML,
        ),
    )
}
