"""Data parallelism over torchrun's ranks: DDP, or FSDP2 (GMLLMTraining `training.strategy: fsdp`)."""

from __future__ import annotations

import contextlib
import copy
import sys
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch

from .device import Device

STRATEGIES = ("ddp", "fsdp")
_UNSHARDED: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = weakref.WeakKeyDictionary()


def freeze_unreached(model: torch.nn.Module, probe_loss: Any, probe: torch.nn.Module | None = None) -> list[str]:
    """Freeze trainable parameters the loss never reaches (e.g. a CLIP tower's post-layernorm, which
    LLaVA skips): DDP fails on parameters without gradients. `probe_loss(module)` runs one loss
    through `module`; it runs on `probe` when given (a width-reduced copy with the same parameter
    names, `gmodel.loading.probe_model`: a 7B model is never run unsharded for this), else on the
    model itself. It must give the same structure on every rank; returns the frozen names."""
    probe = model if probe is None else probe
    probe.zero_grad(set_to_none=True)
    probe_loss(probe).backward()
    frozen = [name for name, p in probe.named_parameters() if p.requires_grad and p.grad is None]
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    probe.zero_grad(set_to_none=True)
    return frozen


def wrap_ddp(model: torch.nn.Module, device: Device) -> Any:
    """The module training steps call: DDP under torchrun, the model itself in one process."""
    if device.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.device.index] if device.device.type == "cuda" else None)


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
    if strategy == "ddp" or not torch.distributed.is_initialized():  # FSDP needs a process group (torchrun, even of one)
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
    """Gradient accumulation: skip DDP's gradient all-reduce (`no_sync`) on all but the last
    micro-batch of an optimiser step. FSDP reduce-scatters every micro-batch instead: skipping it
    (`set_requires_gradient_sync(False)`) would keep every parameter's gradient unsharded in fp32
    between micro-batches, 4 B per parameter (27 GB at 7B) on each GPU, for one reduce-scatter
    per micro-batch saved."""
    from torch.nn.parallel import DistributedDataParallel

    if module is None or is_fsdp(module):
        yield
    elif not sync and isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
    else:
        yield


def full_state_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def unsharded_model(module: Any, device: Device) -> Any:
    """After training: the whole model for evaluation and saving on rank 0.

    Under FSDP a collective (every rank calls it): rank 0 gets an unsharded copy on its device, built
    from the full state dict (CPU-offloaded); the other ranks get the sharded module back, which they
    must not run alone. Otherwise the module itself (DDP's inner module)."""
    if not is_fsdp(module):
        return getattr(module, "module", module)
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(module, options=full_state_options())
    if not device.is_main:
        return module
    plain = _UNSHARDED.pop(module)
    plain.load_state_dict(state, assign=True)
    tie = getattr(next((m for m in plain.modules() if hasattr(m, "tie_weights")), None), "tie_weights", None)
    if tie is not None:
        tie()
    return plain.to(device.device)
