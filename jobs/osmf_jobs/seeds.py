"""Numbers derived from names: the same wherever, in whatever shard and order they are computed
(unlike Python's salted `hash`), so splits, option orders and seeds do not depend on sharding."""

from __future__ import annotations

import hashlib


def _digest(parts: tuple[object, ...]) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


def stable_unit(*parts: object) -> float:
    """A number in [0, 1) from the parts."""
    return int.from_bytes(_digest(parts)[:8], "big") / 2**64


def stable_seed(*parts: object) -> int:
    """A seed in [0, 2^31) from the parts."""
    return int.from_bytes(_digest(parts)[:4], "big") & 0x7FFFFFFF
