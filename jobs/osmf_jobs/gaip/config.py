"""The GAIPDataset job's fixed names (no heavy imports).

The job's typed configuration is the GAIPDataset spec (`osmf_operator.api.kinds`); steps:
`aggregate` (shard i of N: its share of products) and `merge`.
"""

from __future__ import annotations

import hashlib

GROUPING, DATA = "grouping", "data"  # input roles

SAMPLES = "samples.parquet"
PAIRS = "pairs.parquet"
GROUPS = "groups.parquet"  # copied from the grouping for downstream training
METRICS = "metrics.json"
SHARD_DONE = "done.json"
TRAIN, EVAL = "train", "eval"

SAMPLE_COLUMNS = ["product_id", "title", "image_id", "image_uri", "group_id", "group_embedding", "impressions",
                  "clicks", "ctr", "caption", "split"]
PAIR_COLUMNS = ["product_id", "group_id", "chosen_image_id", "rejected_image_id", "chosen_ctr", "rejected_ctr",
                "chosen_impressions", "rejected_impressions", "ctr_ratio", "split"]


def shard_products(products: list[str], index: int, count: int) -> list[str]:
    """Shard `index` of `count` takes every count-th product of the sorted list."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return sorted(products)[index::count]


def product_split(product_id: str, eval_fraction: float, seed: int) -> str:
    """train/eval by a hash of (seed, product): the same wherever and in whatever shard it runs."""
    digest = hashlib.sha256(f"{seed}\x1f{product_id}".encode()).digest()
    return EVAL if int.from_bytes(digest[:8], "big") / 2 ** 64 < eval_fraction else TRAIN
