"""Micro-batches built ahead of the training step by a PyTorch DataLoader: worker processes decode
the images and run the processor while the GPU trains, pinned host memory makes the copies to the
GPU asynchronous.

Which examples a micro-batch holds stays a pure function of (step, micro-batch index, rank)
(`schedule.step_indices`), so the batches are the same with any number of workers and a resumed
run continues where the interrupted one stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .device import Device
from .schedule import micro_batches, step_indices


def map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`value` with `fn` applied to every tensor inside it (dataclasses, dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: map_tensors(getattr(value, f.name), fn) for f in dataclasses.fields(value) if f.init})
    if isinstance(value, dict):
        return {k: map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(v, fn) for v in value)
    return value


def to_device(value: Any, device: torch.device) -> Any:
    return map_tensors(value, lambda t: t.to(device, non_blocking=True))


class Prepared:
    """One collated micro-batch; the DataLoader's pin-memory thread calls `pin_memory`."""

    def __init__(self, value: Any):
        self.value = value

    def pin_memory(self) -> "Prepared":
        return Prepared(map_tensors(self.value, lambda t: t.pin_memory()))


class MicroBatches(torch.utils.data.Dataset):
    """Item i: this rank's i-th micro-batch counted from `start_step`, as `collate(indices)` builds it."""

    def __init__(self, n_examples: int, per_step: int, batch_size: int, seed: int, device: Device,
                 start_step: int, total: int, per_micro_step: int, collate: Callable[[list[int]], Any]):
        self.n_examples, self.per_step, self.batch_size, self.seed = n_examples, per_step, batch_size, seed
        self.device, self.start_step, self.total, self.per_micro_step = device, start_step, total, per_micro_step
        self.collate = collate

    def __len__(self) -> int:
        return (self.total - self.start_step) * self.per_micro_step

    def __getitem__(self, i: int) -> Prepared:
        step, k = divmod(i, self.per_micro_step)
        indices = step_indices(self.n_examples, self.start_step + step, self.per_step, self.seed)
        chunk = list(micro_batches(indices, self.device, self.batch_size))[k]
        return Prepared(self.collate(chunk))


def step_batches(n_examples: int, per_step: int, batch_size: int, seed: int, device: Device, start_step: int, total: int,
                 collate: Callable[[list[int]], Any] | None, workers: int) -> Iterator[list[Any]]:
    """For each optimiser step from `start_step` to `total`: this rank's micro-batches, on its device
    (collated in `workers` processes when `collate` is given, else the examples' indices)."""
    per_micro_step = -(-per_step // (batch_size * device.world_size))
    if collate is None:
        for step in range(start_step, total):
            yield list(micro_batches(step_indices(n_examples, step, per_step, seed), device, batch_size))
        return
    dataset = MicroBatches(n_examples, per_step, batch_size, seed, device, start_step, total, per_micro_step, collate)
    cuda = device.device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, pin_memory=cuda,
        prefetch_factor=2 if workers else None, persistent_workers=False,
        # fork: workers share the parent's tables and processor without pickling them.
        multiprocessing_context="fork" if workers else None,
    )
    items = iter(loader)
    for _ in range(start_step, total):
        yield [to_device(next(items).value, device.device) for _ in range(per_micro_step)]
