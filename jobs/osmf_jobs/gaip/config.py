"""The GAIPDataset job's typed configuration: the GAIPDataset spec (`osmf_core.api`), plus the split rule.

Steps: `aggregate` (shard i of N: its share of products) and `merge`. What it writes is
`osmf_core.layout.GAIP`.
"""

from __future__ import annotations

import hashlib

from osmf_core.layout import GAIP


def product_split(product_id: str, eval_fraction: float, seed: int) -> str:
    """train/eval by a hash of (seed, product): the same wherever and in whatever shard it runs."""
    digest = hashlib.sha256(f"{seed}\x1f{product_id}".encode()).digest()
    return GAIP.EVAL if int.from_bytes(digest[:8], "big") / 2 ** 64 < eval_fraction else GAIP.TRAIN
