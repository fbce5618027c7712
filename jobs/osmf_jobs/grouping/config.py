"""The AudienceGrouping job's fixed names (no heavy imports).

The job's typed configuration is the AudienceGrouping spec (`osmf_operator.api.kinds`); steps:
`train` (fit the preference model, export it, cache encoder features), `cluster` (shard i of N:
its share of products), `merge` (combine shards, metrics, manifest).
"""

from __future__ import annotations

DATA = "data"  # input role: the logs root (spec.data.uri)

FEATURES = "features/features.npz"  # cached encoder outputs (title tokens, image tokens, creative stats)
TRAIN_METRICS = "train/metrics.json"
GROUPS = "groups.parquet"
ASSIGNMENTS = "assignments.parquet"
METRICS = "metrics.json"
SHARD_DONE = "done.json"  # shards/<i>/done.json: written last by shard i


def shard_products(products: list[str], index: int, count: int) -> list[str]:
    """Shard `index` of `count` takes every count-th product of the sorted list."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return sorted(products)[index::count]
