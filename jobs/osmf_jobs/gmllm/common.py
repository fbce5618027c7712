"""Plumbing both tasks share: resume, checkpoints, publishing the model."""

from __future__ import annotations

import shutil
from typing import Any

import torch

from osmf_core.layout import GModel
from osmf_jobs.gmodel.model import GroupMLLM, save_gmodel
from osmf_jobs.gmodel.training.checkpoint import Checkpointer, load_trainable_state, rng_state, set_rng_state, share_checkpoint, training_state
from osmf_jobs.gmodel.training.device import Device
from osmf_jobs.gmodel.training.fit import FitSettings
from osmf_jobs.gmodel.training.parallel import broadcast_trainable


def fit_settings(training: Any) -> FitSettings:
    return FitSettings(
        epochs=training.epochs, learning_rate=training.learning_rate, batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps, scheduler=training.scheduler,
        warmup_ratio=training.warmup_ratio, max_steps=training.max_steps,
        checkpoint_every_steps=training.checkpoint_every_steps, seed=training.seed,
    )


class Resume:
    """Restores the last checkpoint (if any) and writes new ones from rank 0."""

    def __init__(self, ctx: Any, model: GroupMLLM, device: Device):
        self.model, self.device = model, device
        self.checkpointer = Checkpointer(ctx.store)
        # FSDP: rank 0 alone reads the checkpoint (LLaVA-7B's is ~80 GB) and broadcasts it.
        rank0_reads = ctx.spec.training.strategy == "fsdp" and device.world_size > 1
        found = self.checkpointer.load() if device.is_main or not rank0_reads else None
        if rank0_reads:
            found = share_checkpoint(found, device)
        self.step, self.optimizer_state, self.history = 0, None, []
        if found is not None:
            self.step, state = found
            load_trainable_state(model, state["model"])
            if rank0_reads:
                broadcast_trainable(model, device)
            self.optimizer_state = state["optimizer"]
            self.history = state.get("history", [])
            set_rng_state(state["rng"])

    def save(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        weights, optimizer_state = training_state(self.model, optimizer)  # FSDP: a collective, filled on rank 0
        if self.device.is_main:
            self.checkpointer.save(step, {
                "model": weights, "optimizer": optimizer_state,
                "rng": rng_state(), "history": self.history,
            })
        if self.device.world_size > 1:
            torch.distributed.barrier()


def publish_model(ctx: Any, model: GroupMLLM, processor: Any, meta: dict[str, Any]) -> None:
    """Write the G-MLLM directory to <run>/model/ (directly for a local run dir)."""
    local = ctx.store.local_path(GModel.MODEL_DIR)
    target = local if local is not None else ctx.scratch / GModel.MODEL_DIR
    if target.exists():
        shutil.rmtree(target)
    save_gmodel(model, processor, target, meta)
    if local is None:
        ctx.store.upload(target, GModel.MODEL_DIR)
