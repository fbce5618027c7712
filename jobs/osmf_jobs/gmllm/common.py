"""Plumbing both tasks share: loading the model for training, resume, checkpoints, publishing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from osmf_core.layout import GModel
from osmf_jobs.gmodel.model import GroupMLLM, save_gmodel
from osmf_jobs.gmodel.training.checkpoint import Checkpointer, rng_state, set_rng_state
from osmf_jobs.gmodel.training.device import Device
from osmf_jobs.gmodel.training.fit import FitSettings
from osmf_jobs.gmodel.training.parallel import freeze_unreached, wrap_model


def fit_settings(training: Any) -> FitSettings:
    return FitSettings(
        epochs=training.epochs, learning_rate=training.learning_rate, batch_size=training.batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps, scheduler=training.scheduler,
        warmup_ratio=training.warmup_ratio, max_steps=training.max_steps,
        checkpoint_every_steps=training.checkpoint_every_steps, seed=training.seed,
    )


def sharded_loading(training: Any, device: Device) -> bool:
    """FSDP under torchrun builds the LLaVA part on the meta device and each rank reads only its
    shards (`gmodel.loading`); otherwise transformers loads it straight onto the rank's device."""
    return training.strategy == "fsdp" and torch.distributed.is_initialized()


def prepare_model(model: GroupMLLM, training: Any, device: Device, weights: Path | None, probe_loss: Any) -> tuple[Any, list[str]]:
    """Freeze what the loss never reaches, switch on gradient checkpointing, wrap for DDP/FSDP and,
    for a model built on the meta device, read this rank's shards of `weights` (the LLaVA
    directory). Returns (the module training steps call, the frozen names)."""
    from osmf_jobs.gmodel.loading import enable_gradient_checkpointing, has_meta, materialize, probe_model, snapshot

    def build(mllm: Any) -> GroupMLLM:
        return GroupMLLM(mllm, model.group_dim, model.n_vectors, model.n_tokens, reward_head=model.reward_head is not None,
                         interaction_stats=model.interaction.c1.in_features if model.interaction is not None else 0)

    frozen = freeze_unreached(model, probe_loss, probe_model(model, build))
    if training.gradient_checkpointing:
        blocks = enable_gradient_checkpointing(model.mllm)
        if device.is_main:
            print(f"osmf: gradient checkpointing: {blocks} blocks recompute their activations in the backward pass", file=sys.stderr, flush=True)
    empty = has_meta(model)
    kept = snapshot(model) if empty else None
    module = wrap_model(model, device, training.strategy)
    if empty:
        materialize(model, model.mllm, weights, device.device, kept)
    return module, frozen


class Resume:
    """The last checkpoint of the run (if any): its step now, its weights, optimizer state, RNG and
    loss history once the optimizer exists (`restore`, passed to `fit`); new checkpoints from
    every rank (`save`)."""

    def __init__(self, ctx: Any, device: Device):
        self.device = device
        self.checkpointer = Checkpointer(ctx.store, device)
        latest = self.checkpointer.latest()
        self.step = latest[1] if latest else 0
        self.history: list[float] = []
        self.module: Any = None

    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.step:
            return
        extra = self.checkpointer.load_training(self.module, optimizer)
        self.history = list(extra.get("history", []))
        set_rng_state(extra["rng"])
        if self.device.is_node_main:  # every pod of a gang says it resumed
            print(f"osmf: resuming from checkpoint at step {self.step}", file=sys.stderr, flush=True)

    def save(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        self.checkpointer.save_training(step, self.module, optimizer, {"rng": rng_state(), "history": self.history})


def publish_model(ctx: Any, model: GroupMLLM, processor: Any, meta: dict[str, Any]) -> None:
    """Write the G-MLLM directory to <run>/model/ (directly for a local run dir; else into scratch
    and up through the store's managed transfer, sharded safetensors in multipart uploads)."""
    local = ctx.store.local_path(GModel.MODEL_DIR)
    target = local if local is not None else ctx.scratch / GModel.MODEL_DIR
    if target.exists():
        shutil.rmtree(target)
    save_gmodel(model, processor, target, meta)
    if local is None:
        ctx.store.upload(target, GModel.MODEL_DIR)
