"""What optimiser step N uses: its learning rate and its examples. Pure functions of the step, so a
resumed run continues exactly where the interrupted one stopped."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .device import Device


def lr_factor(step: int, total: int, warmup: int, scheduler: str) -> float:
    """Multiplier of the peak learning rate at optimiser step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if scheduler == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if scheduler == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def step_indices(n: int, step: int, per_step: int, seed: int) -> list[int]:
    """The examples of optimiser step `step`: a fresh permutation per epoch (seeded by seed and epoch),
    consumed `per_step` at a time; the last step of an epoch wraps around to stay full. Depends only on
    its arguments, so a resumed run sees exactly the batches the interrupted one would have."""
    steps_per_epoch = math.ceil(n / per_step)
    epoch, within = divmod(step, steps_per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [int(order[(within * per_step + j) % n]) for j in range(per_step)]


def micro_batches(indices: list[int], device: Device, batch_size: int) -> Iterator[list[int]]:
    """This rank's micro-batches of one optimiser step's indices."""
    per_micro = batch_size * device.world_size
    for start in range(0, len(indices), per_micro):
        chunk = indices[start : start + per_micro]
        yield chunk[device.rank * batch_size : (device.rank + 1) * batch_size]
