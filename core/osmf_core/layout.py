"""The artifact layout: every file name, table schema and shard path the parts agree on, declared once.

A run directory is `<root>/<namespace>/<kind>/<name>/<input-hash>/` (docs/contracts.md). What a
stage writes there, and what the next stage, the operator, the local runtime and the predictor read,
is named here and nowhere else; a second spelling of any of these names is a drift bug waiting.

    from osmf_core.layout import Grouping, shard_file
    store.read_bytes(Grouping.ASSIGNMENTS)
    store.write_json(shard_file(index, SHARD_DONE), {...})

Pure names and string functions: no I/O, no third-party imports.
"""

from __future__ import annotations

from urllib.parse import quote

# ---- every run ---------------------------------------------------------------------------------

MANIFEST = "manifest.json"  # written last: no manifest, not done
PROGRESS = "progress.json"  # the running step's progress (the operator reads it on a timer)
METRICS = "metrics.json"  # the stage's evaluation figures (also copied into the manifest)
SHARDS = "shards"  # shards/<i>/: what shard i of a sharded step writes
SHARD_DONE = "done.json"  # shards/<i>/done.json: written last by shard i
CHECKPOINTS = "checkpoints"  # training working files; removed once the manifest is written


def join(base: str, rel: str) -> str:
    """`base/rel` for URIs and relative paths alike (`rel` may be empty)."""
    rel = rel.strip("/")
    return f"{base.rstrip('/')}/{rel}" if rel else base.rstrip("/")


def shard_dir(index: int) -> str:
    return f"{SHARDS}/{int(index)}"


def shard_file(index: int, name: str) -> str:
    return join(shard_dir(index), name)


def progress_files(sharded: bool, shards: int) -> list[str]:
    """Where the running step's progress.json documents are: one per shard, or one for the run."""
    return [shard_file(i, PROGRESS) for i in range(shards)] if sharded else [PROGRESS]


def checkpoint_file(slot: str, name: str) -> str:
    return f"{CHECKPOINTS}/{slot}/{name}"


# ---- input logs (DESIGN §5) --------------------------------------------------------------------


class Dataset:
    """A dataset root: each table is `<table>.parquet`, one file or a directory of parquet parts."""

    USERS, PRODUCTS, IMAGES, IMPRESSIONS = "users", "products", "images", "impressions"
    TABLES = (USERS, PRODUCTS, IMAGES, IMPRESSIONS)

    # Column kinds, checked by the jobs' table reader.
    STRING, INTEGER, CATEGORY, FLAG = "string", "integer", "string or integer", "integer 0/1 or boolean"
    SCHEMAS: dict[str, dict[str, str]] = {
        USERS: {"user_id": STRING},
        PRODUCTS: {"product_id": STRING, "title": STRING, "image_uri": STRING},
        IMAGES: {"image_id": STRING, "product_id": STRING, "image_uri": STRING},
        IMPRESSIONS: {"user_id": STRING, "product_id": STRING, "image_id": STRING, "clicked": FLAG},
    }
    OPTIONAL: dict[str, dict[str, str]] = {PRODUCTS: {"category": STRING}, IMPRESSIONS: {"ts": INTEGER}}

    @staticmethod
    def table_file(name: str) -> str:
        return f"{name}.parquet"


# ---- AudienceGrouping --------------------------------------------------------------------------


class Grouping:
    GROUPS = "groups.parquet"
    ASSIGNMENTS = "assignments.parquet"
    MODEL_DIR = "model"  # the preference model, exported for numpy inference (the predictor's input)
    MODEL_CONFIG = f"{MODEL_DIR}/config.json"
    MODEL_WEIGHTS = f"{MODEL_DIR}/weights.npz"
    FEATURES = "features/features.npz"  # cached encoder outputs (title tokens, image tokens, creative stats)
    TRAIN_METRICS = "train/metrics.json"

    GROUP_COLUMNS = ("product_id", "group_id", "size", "centroid", "representatives", "silhouette", "k_chosen", "privacy_merges")
    ASSIGNMENT_COLUMNS = ("product_id", "user_id", "group_id")


# ---- GAIPDataset -------------------------------------------------------------------------------


class GAIP:
    SAMPLES = "samples.parquet"
    PAIRS = "pairs.parquet"
    GROUPS = Grouping.GROUPS  # copied from the grouping for downstream training
    TRAIN, EVAL = "train", "eval"  # values of the `split` column

    SAMPLE_COLUMNS = ("product_id", "title", "image_id", "image_uri", "group_id", "group_embedding", "impressions",
                      "clicks", "ctr", "caption", "split")
    PAIR_COLUMNS = ("product_id", "group_id", "chosen_image_id", "rejected_image_id", "chosen_ctr", "rejected_ctr",
                    "chosen_impressions", "rejected_impressions", "ctr_ratio", "split")


# ---- GMLLMTraining and GroupDPORun -------------------------------------------------------------


class GModel:
    """A GMLLMTraining run: the G-MLLM or GRM under model/, held-out evaluation under eval/."""

    MODEL_DIR = "model"
    INFO = "gmodel.json"  # in MODEL_DIR: role, group sizes, base model
    GROUP_WEIGHTS = "group.safetensors"  # in MODEL_DIR: group projector (+ reward head)
    MLLM_DIR = "mllm"  # in MODEL_DIR: the Hugging Face model and processor
    EVAL_PROMPTS = "eval/prompts.json"
    EVAL_PER_GROUP = "eval/per_group.json"
    CHECKPOINT_STATE = "state.pt"  # checkpoints/<slot>/state.pt
    CHECKPOINT_DONE = "done.json"  # checkpoints/<slot>/done.json: the slot is complete


class GroupDPO:
    ADAPTER_DIR = "adapter"  # the LoRA adapter (peft)
    POLICY_REF = "policy.json"  # which policy the adapter belongs to
    EVAL_ROUNDS = "eval/rounds.json"
    EVAL_SAMPLES = "eval/samples.json"


# ---- AdImageCampaign ---------------------------------------------------------------------------


class Campaign:
    CAMPAIGN_JSON = "campaign.json"
    # campaign.json alone in a folder: the InferenceService's STORAGE_URI, which KServe copies to
    # every replica (the predictor reads the images by URI).
    SERVING_DIR = "serving"
    SERVING_CAMPAIGN_JSON = f"{SERVING_DIR}/{CAMPAIGN_JSON}"
    REPORT_HTML = "report.html"
    SHARD_RECORDS = "records.json"  # shards/<i>/records.json: the products shard i finished
    IMAGES = "images"
    AUDIENCE = "audience"
    LOGGED = "logged"

    @staticmethod
    def path_component(product_id: str) -> str:
        """A product id as one path segment (ids may hold '/' or spaces); campaign.json records the result."""
        return quote(product_id, safe="-_.") or "_"

    @classmethod
    def group_image(cls, product_id: str, group_id: int, n: int) -> str:
        return f"{cls.IMAGES}/{cls.path_component(product_id)}/{int(group_id)}/{int(n)}.png"

    @classmethod
    def audience_image(cls, product_id: str, n: int) -> str:
        """A candidate written for the whole audience (a one-size candidate)."""
        return f"{cls.IMAGES}/{cls.path_component(product_id)}/{cls.AUDIENCE}/{int(n)}.png"

    @classmethod
    def logged_image(cls, product_id: str, image_id: str) -> str:
        """A copy of a logged creative the campaign serves (a group's or the one-size pick)."""
        return f"{cls.IMAGES}/{cls.path_component(product_id)}/{cls.LOGGED}/{cls.path_component(image_id)}.png"


# ---- the local runtime and the synthetic worlds ------------------------------------------------


class ArtifactRoot:
    """What `osmf run` and `osmf demo` leave at the artifact root beside the run directories."""

    SUMMARY = "summary.json"
    REPORT_HTML = "report.html"
    EVALUATION_DIR = "evaluation"  # measured against a synthetic world's truth, which no stage reads
    GROUPING_EVALUATION = "grouping.json"
    CAMPAIGN_LIFT = "campaign-lift.json"


class World:
    """A synthetic world (`osmf synth`): the Dataset tables plus truth/, which no stage ever reads."""

    PRODUCT_IMAGES = "products"  # products/<product_id>.png: the cut-outs
    CREATIVES = "images"  # images/<image_id>.png: the logged creatives
    TRUTH = "truth"
    WORLD = f"{TRUTH}/world.json"
    SEGMENTS = f"{TRUTH}/segments.parquet"
    IMAGE_STYLES = f"{TRUTH}/images.parquet"
    IMPRESSIONS = f"{TRUTH}/impressions.parquet"
    HELDOUT_IMPRESSIONS = f"{TRUTH}/heldout_impressions.parquet"
    USER_NOISE = f"{TRUTH}/user_noise.parquet"

    @classmethod
    def product_image(cls, product_id: str) -> str:
        return f"{cls.PRODUCT_IMAGES}/{product_id}.png"

    @classmethod
    def creative_image(cls, image_id: str) -> str:
        return f"{cls.CREATIVES}/{image_id}.png"
