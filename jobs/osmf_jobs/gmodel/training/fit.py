"""The training loop: AdamW over a model's trainable parameters for a number of optimiser steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .data import step_batches
from .device import Device, all_mean
from .parallel import gradient_sync
from .schedule import lr_factor


@dataclass
class FitSettings:
    epochs: int
    learning_rate: float
    batch_size: int
    gradient_accumulation_steps: int = 1
    scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    max_steps: int = 0
    checkpoint_every_steps: int = 0
    seed: int = 0
    max_grad_norm: float = 1.0

    def total_steps(self, n_examples: int, world_size: int) -> int:
        per_step = self.batch_size * world_size * self.gradient_accumulation_steps
        total = self.epochs * math.ceil(n_examples / per_step)
        return min(total, self.max_steps) if self.max_steps else total


def fit(
    params: list[torch.nn.Parameter],
    loss_fn: Any,
    n_examples: int,
    settings: FitSettings,
    device: Device,
    ddp_model: Any = None,
    start_step: int = 0,
    restore: Any = None,
    on_step: Any = None,
    checkpoint: Any = None,
    collate: Any = None,
    workers: int = 0,
) -> int:
    """AdamW over `params` for `settings.total_steps` optimiser steps, starting at `start_step`.

    `loss_fn(micro_batch) -> (loss, stats)` computes the mean loss of this rank's micro-batch: the
    examples' indices, or with `collate` what `collate(indices)` built (in `workers` DataLoader
    processes, moved to the device from pinned memory). `restore(optimizer)` runs once the
    optimizer exists (a resumed run loads weights and optimizer state there);
    `on_step(step, total, loss, lr, stats)` reports; `checkpoint(step, optimizer)` is called every
    `checkpoint_every_steps` (not after the last step: the caller writes the final model).
    `ddp_model`: what `wrap_model` returned (DDP, an FSDP-sharded module, or the plain model); it
    decides how gradient accumulation skips synchronisation. Under FSDP `params` must be collected
    after wrapping (they are DTensors then).
    """
    per_step = settings.batch_size * device.world_size * settings.gradient_accumulation_steps
    total = settings.total_steps(n_examples, device.world_size)
    warmup = int(round(settings.warmup_ratio * total))
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    if restore is not None:
        restore(optimizer)
    scaler = torch.amp.GradScaler(device.device.type) if device.precision == "fp16" else None
    batches = step_batches(n_examples, per_step, settings.batch_size, settings.seed, device, start_step, total, collate, workers)
    for step, chunks in zip(range(start_step, total), batches):
        lr = settings.learning_rate * lr_factor(step, total, warmup, settings.scheduler)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum, stats = 0.0, {}
        for k, chunk in enumerate(chunks):
            with gradient_sync(ddp_model, k == len(chunks) - 1):
                with device.autocast():
                    loss, stats = loss_fn(chunk)
                scaled = loss / len(chunks)
                (scaler.scale(scaled) if scaler else scaled).backward()
            loss_sum += float(loss.detach()) / len(chunks)
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step + 1, total, all_mean(loss_sum, device), lr, stats)
        if checkpoint is not None and settings.checkpoint_every_steps and (step + 1) % settings.checkpoint_every_steps == 0 and step + 1 < total:
            checkpoint(step + 1, optimizer)
    return total
