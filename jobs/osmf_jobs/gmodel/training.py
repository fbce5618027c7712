"""Training plumbing shared by the gmllm and groupdpo jobs: devices, precision, schedules, data order
and checkpoints in the artifact store."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import random
import sys
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from osmf_core.layout import CHECKPOINTS, GModel

SLOTS = ("a", "b")  # two alternating slots: a crash while writing one leaves the other intact


@dataclass
class Device:
    device: torch.device
    precision: str  # what actually runs: bf16 | fp16 | fp32
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def setup_device(dist: Any, precision: str) -> Device:
    """Join torchrun's process group when there is one; pick this rank's device.

    CPU runs in fp32 whatever the spec says (bf16 autocast on CPU is slow and not what GPUs do).
    """
    if torch.cuda.is_available():
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            precision = "fp16"
    else:
        device, precision = torch.device("cpu"), "fp32"
    if dist.world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Device(device, precision, dist.rank, dist.world_size)


def seed_everything(seed: int, device: Device | None = None) -> None:
    """Seed every generator; on CPU also pick deterministic kernels, so a run repeats exactly (with
    two or more threads some backward accumulations otherwise land in varying order). Not forced
    on GPUs, where deterministic kernels cost throughput and cuBLAS needs CUBLAS_WORKSPACE_CONFIG."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device is not None and device.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)


def barrier(device: Device) -> None:
    if device.world_size > 1:
        torch.distributed.barrier()


def all_mean(value: float, device: Device) -> float:
    if device.world_size == 1:
        return value
    tensor = torch.tensor([value], device=device.device, dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / device.world_size


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


class Checkpointer:
    """Checkpoints under `<run>/checkpoints/<slot>/` in the artifact store.

    A slot is `state.pt` then `done.json` ({"step": N}); the latest complete slot wins. Writing first
    invalidates the slot's `done.json`, so a kill at any moment leaves one valid checkpoint.
    """

    def __init__(self, store: Any):
        self.store = store.child(CHECKPOINTS)

    def _done_step(self, slot: str) -> int | None:
        if not self.store.exists(f"{slot}/{GModel.CHECKPOINT_DONE}"):
            return None
        return self.store.read_json(f"{slot}/{GModel.CHECKPOINT_DONE}").get("step")

    def latest(self) -> tuple[str, int] | None:
        found = [(step, slot) for slot in SLOTS if (step := self._done_step(slot)) is not None]
        return (max(found)[1], max(found)[0]) if found else None

    def save(self, step: int, state: dict[str, Any]) -> None:
        latest = self.latest()
        slot = SLOTS[0] if latest is None or latest[0] == SLOTS[1] else SLOTS[1]
        self.store.write_json(f"{slot}/{GModel.CHECKPOINT_DONE}", {"step": None})
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.store.write_bytes(f"{slot}/{GModel.CHECKPOINT_STATE}", buffer.getvalue())
        self.store.write_json(f"{slot}/{GModel.CHECKPOINT_DONE}", {"step": step})

    def load(self) -> tuple[int, dict[str, Any]] | None:
        latest = self.latest()
        if latest is None:
            return None
        slot, step = latest
        state = torch.load(io.BytesIO(self.store.read_bytes(f"{slot}/{GModel.CHECKPOINT_STATE}")), map_location="cpu", weights_only=False)
        return step, state


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


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
    optimizer_state: dict[str, Any] | None = None,
    on_step: Any = None,
    checkpoint: Any = None,
) -> int:
    """AdamW over `params` for `settings.total_steps` optimiser steps, starting at `start_step`.

    `loss_fn(indices) -> (loss, stats)` computes the mean loss of this rank's micro-batch;
    `on_step(step, total, loss, lr, stats)` reports; `checkpoint(step, optimizer)` is called every
    `checkpoint_every_steps` (not after the last step: the caller writes the final model).
    `ddp_model`: what `wrap_model` returned (DDP, an FSDP-sharded module, or the plain model); it
    decides how gradient accumulation skips synchronisation and how `optimizer_state` is loaded.
    Under FSDP `params` must be collected after wrapping (they are DTensors then).
    """
    per_step = settings.batch_size * device.world_size * settings.gradient_accumulation_steps
    total = settings.total_steps(n_examples, device.world_size)
    warmup = int(round(settings.warmup_ratio * total))
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    if optimizer_state is not None:
        load_optimizer_state(ddp_model, optimizer, params, optimizer_state)
    scaler = torch.amp.GradScaler(device.device.type) if device.precision == "fp16" else None
    for step in range(start_step, total):
        lr = settings.learning_rate * lr_factor(step, total, warmup, settings.scheduler)
        for group in optimizer.param_groups:
            group["lr"] = lr
        chunks = list(micro_batches(step_indices(n_examples, step, per_step, settings.seed), device, settings.batch_size))
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


class ProgressReporter:
    """Writes step/total/loss/ETA through the job context; the ETA counts only this process's steps,
    so a resumed run does not look faster than it is."""

    def __init__(self, ctx: Any, start_step: int, label: str = ""):
        import time

        self.ctx, self.start_step, self.label = ctx, start_step, label
        self.clock = time.monotonic
        self.started = self.clock()
        self.ema: float | None = None

    def __call__(self, step: int, total: int, loss: float, lr: float, stats: dict[str, float] | None = None, force: bool = False) -> None:
        self.ema = loss if self.ema is None else 0.9 * self.ema + 0.1 * loss
        done_here = step - self.start_step
        if done_here > 0:
            # The runtime's ETA is elapsed/current × remaining from its own start; shift that start so
            # elapsed/current equals this process's rate per step.
            rate = (self.clock() - self.started) / done_here
            self.ctx._progress_started = self.clock() - rate * step
        metrics = {"loss": self.ema, "lr": lr} | {k: float(v) for k, v in (stats or {}).items()}
        self.ctx.progress(step, total, metrics=metrics, force=force or step == total)


def freeze_unreached(model: torch.nn.Module, probe_loss: Any) -> list[str]:
    """Freeze trainable parameters the loss never reaches (e.g. a CLIP tower's post-layernorm, which
    LLaVA skips): DDP fails on parameters without gradients. `probe_loss()` must give the same
    structure on every rank; returns the frozen names."""
    model.zero_grad(set_to_none=True)
    probe_loss().backward()
    frozen = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    return frozen


def wrap_ddp(model: torch.nn.Module, device: Device) -> Any:
    """The module training steps call: DDP under torchrun, the model itself in one process."""
    if device.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.device.index] if device.device.type == "cuda" else None)


# ---- FSDP (GMLLMTraining `training.strategy: fsdp`) -----------------------------------------------

STRATEGIES = ("ddp", "fsdp")
_UNSHARDED: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = weakref.WeakKeyDictionary()


def is_fsdp(module: Any) -> bool:
    """Has `fully_shard` been applied to this module (FSDP2)?"""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def shard_unit_classes(model: torch.nn.Module) -> set[str]:
    """Class names of the blocks FSDP shards one by one: the Hugging Face models' `_no_split_modules`
    (LLaVA: LlamaDecoderLayer, CLIPEncoderLayer, CLIPVisionEmbeddings), else every class whose name
    ends in DecoderLayer or EncoderLayer."""
    names: set[str] = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or ())
    if not names:
        names = {type(m).__name__ for m in model.modules() if type(m).__name__.endswith(("DecoderLayer", "EncoderLayer"))}
    return names


def _meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The module's structure with parameters on the meta device (no memory); buffers are copied, so
    non-persistent ones (rotary frequencies) survive. Ties between parameters are kept."""
    memo: dict[int, Any] = {}
    for param in model.parameters():
        if id(param) not in memo:
            memo[id(param)] = torch.nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=param.requires_grad)
    return copy.deepcopy(model, memo)


def wrap_model(model: torch.nn.Module, device: Device, strategy: str = "ddp") -> Any:
    """The module training steps call: the model itself in one process; under torchrun DDP (every rank
    holds the whole model, optimizer and gradients) or FSDP2 (`fully_shard` on each transformer block,
    then on the root: parameters, gradients and optimizer state are sharded across ranks).

    FSDP shards in place (the returned module is `model`, its parameters now DTensors): collect the
    optimizer's parameters after this call. With bf16 on GPU, blocks compute in bf16 and reduce
    gradients in fp32 while the sharded master weights stay fp32. `unsharded_model` gives the whole
    model back on rank 0 after training.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown training strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if device.world_size == 1:
        return model
    if strategy == "ddp":
        return wrap_ddp(model, device)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if device.is_main:
        _UNSHARDED[model] = _meta_copy(model)
    kwargs: dict[str, Any] = {}
    if device.precision == "bf16" and device.device.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    classes = shard_unit_classes(model)
    blocks = [m for m in model.modules() if m is not model and type(m).__name__ in classes and any(True for _ in m.parameters())]
    counts = Counter(type(b).__name__ for b in blocks)  # before fully_shard renames the classes
    for block in reversed(blocks):  # innermost first, the root last
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    if device.is_main:
        kinds = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        print(f"osmf: FSDP over {device.world_size} ranks: sharded {kinds or 'no blocks'} and the root", file=sys.stderr, flush=True)
    return model


@contextlib.contextmanager
def gradient_sync(module: Any, sync: bool) -> Iterator[None]:
    """Gradient accumulation: skip the gradient all-reduce (DDP `no_sync`) or reduce-scatter (FSDP
    `set_requires_gradient_sync`) on all but the last micro-batch of an optimiser step."""
    from torch.nn.parallel import DistributedDataParallel

    if module is None:
        yield
    elif is_fsdp(module):
        module.set_requires_gradient_sync(sync)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    elif not sync and isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
    else:
        yield


def _full_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(trainable weights on CPU by name, optimizer state) for a checkpoint.

    Under FSDP this is a collective (every rank calls it; only rank 0's result is filled): the full
    state through `torch.distributed.checkpoint.state_dict`, the optimizer's keyed by parameter
    name. Otherwise `trainable_state` and `optimizer.state_dict()` of the unwrapped model.
    """
    if not is_fsdp(model):
        return trainable_state(model), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    weights = get_model_state_dict(model, options=options)
    state = get_optimizer_state_dict(model, optimizer, options=_full_options())
    return {k: v for k, v in weights.items() if k in trainable}, state


def share_checkpoint(found: tuple[int, dict[str, Any]] | None, device: Device) -> tuple[int, dict[str, Any]] | None:
    """FSDP resume where only rank 0 read the checkpoint: every rank gets its step, RNG state and
    history; the weights come by `broadcast_trainable`, the optimizer state by `load_optimizer_state`
    (other ranks get empty dicts for both). A collective."""
    meta: list[Any] = [None]
    if device.is_main and found is not None:
        step, state = found
        meta = [(step, {k: v for k, v in state.items() if k not in ("model", "optimizer")})]
    torch.distributed.broadcast_object_list(meta, src=0)
    if meta[0] is None:
        return None
    if device.is_main:
        return found
    step, rest = meta[0]
    return step, rest | {"model": {}, "optimizer": {}}


def broadcast_trainable(model: torch.nn.Module, device: Device) -> None:
    """Copy rank 0's trainable parameters to every rank (before wrapping). A collective."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                torch.distributed.broadcast(param.data, src=0)


def _optimizer_names(module: Any, params: list[torch.nn.Parameter]) -> list[str] | None:
    if module is None:
        return None
    inner = getattr(module, "module", module)  # DDP's wrapped module
    names = {id(p): name for name, p in inner.named_parameters()}
    return [names[id(p)] for p in params] if all(id(p) in names for p in params) else None


def load_optimizer_state(module: Any, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], state: dict[str, Any]) -> None:
    """Restore a checkpoint's optimizer state, whichever strategy wrote it: DDP and one process write
    `optimizer.state_dict()` (parameters by position), FSDP writes it by parameter name; a run that
    switched strategy converts (the position order is the order of `params`). Under FSDP a collective
    in which only rank 0's `state` is read (`set_optimizer_state_dict` broadcasts it)."""
    by_name = any(isinstance(p, str) for group in state.get("param_groups", ()) for p in group["params"])
    names = _optimizer_names(module, params)
    if is_fsdp(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        if state and not by_name:
            if names is None:
                raise ValueError("cannot map the checkpoint's optimizer state to parameter names")
            state = {"state": {names[i]: v for i, v in state["state"].items()},
                     "param_groups": [g | {"params": [names[i] for i in g["params"]]} for g in state["param_groups"]]}
        # Rank 0 holds the full state (the others may pass {}); each rank keeps its shard.
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_optimizer_state_dict(module, optimizer, optim_state_dict=state if torch.distributed.get_rank() == 0 else {}, options=options)
        return
    if by_name:
        if names is None:
            raise ValueError("cannot map the checkpoint's optimizer state (by parameter name) to this optimizer's parameters")
        index = {name: i for i, name in enumerate(names)}
        state = {"state": {index[k]: v for k, v in state["state"].items()},
                 "param_groups": [g | {"params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}
    optimizer.load_state_dict(state)


def unsharded_model(module: Any, device: Device) -> Any:
    """After training: the whole model for evaluation and saving on rank 0.

    Under FSDP a collective (every rank calls it): rank 0 gets an unsharded copy on its device, built
    from the full state dict (CPU-offloaded); the other ranks get the sharded module back, which they
    must not run alone. Otherwise the module itself (DDP's inner module)."""
    if not is_fsdp(module):
        return getattr(module, "module", module)
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(module, options=_full_options())
    if not device.is_main:
        return module
    plain = _UNSHARDED.pop(module)
    plain.load_state_dict(state, assign=True)
    tie = getattr(next((m for m in plain.modules() if hasattr(m, "tie_weights")), None), "tie_weights", None)
    if tie is not None:
        tie()
    return plain.to(device.device)
