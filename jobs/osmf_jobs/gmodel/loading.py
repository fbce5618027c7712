"""Loading a LLaVA-class model for training the way large trainers do: no rank builds the whole
model in fp32 on its CPU first.

- One process or DDP: transformers reads the safetensors straight onto this rank's device in the
  run's dtype (`from_pretrained(dtype=…, device_map={"": device})`: modules are initialised on the
  meta device and the weights are written into them, so there is no CPU copy).
- FSDP: the model is built on the meta device (no memory; buffers such as rotary frequencies are
  real, `accelerate.init_empty_weights(include_buffers=False)`), sharded with `fully_shard`,
  allocated shard by shard (`to_empty`), and then every rank reads only its own slices of every
  tensor from the safetensors files (`torch.distributed.checkpoint` with its
  `HuggingFaceStorageReader`: it plans per-rank reads of the DTensor shards and reads them with
  safetensors' `get_slice`). Peak host memory per rank is its shard plus one slice, whatever the
  model's size; nothing is broadcast.
- Parameters the loss never reaches (which DDP cannot handle and FSDP would keep for nothing) are
  found on a width-reduced copy of the same architecture (`probe_model`): the same classes, depth
  and parameter names, hidden sizes of 16, so its one forward and backward cost nothing at 7B.

Checkpoint names and module names differ for LLaVA (transformers saves `language_model.model.…`
and builds `model.language_model.…`); the renaming is transformers' own (its conversion mapping),
asked once per load.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

PROBE_WIDTH = 16  # hidden size of the probe's sub-models (2 heads of 8)
SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"


def has_meta(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())


def empty_hf_model(path: Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The model of a Hugging Face image-text-to-text directory with its parameters on the meta
    device in `dtype` (no memory; fp32: the training master weights, whatever the checkpoint's
    dtype) and its buffers real; weights come later (`materialize`)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(str(path))
    with init_empty_weights(include_buffers=False):
        return AutoModelForImageTextToText.from_config(config, dtype=dtype)


def _checkpoint_keys(path: Path) -> list[str]:
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        return list(json.loads(index.read_text())["weight_map"])
    single = path / SAFETENSORS_SINGLE
    if not single.is_file():
        raise FileNotFoundError(f"{path}: no {SAFETENSORS_INDEX} or {SAFETENSORS_SINGLE}; save the model with save_pretrained()")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as handle:
        return list(handle.keys())


def checkpoint_names(hf_model: nn.Module, path: Path) -> dict[str, str]:
    """Module state-dict name → checkpoint key, through transformers' own renaming of the model's
    checkpoint format (what `from_pretrained` applies). Fused conversions (experts merged into one
    tensor and the like) cannot be read slice by slice and are refused."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    transforms = get_model_conversion_mapping(hf_model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    own = hf_model.state_dict()
    names: dict[str, str] = {}
    for key in _checkpoint_keys(path):
        target, converter = rename_source_key(key, renamings, converters, getattr(hf_model, "base_model_prefix", None), own)
        if converter is not None:
            raise ValueError(f"{path}: checkpoint tensor {key} is converted on load ({converter}); sharded loading reads tensors as stored")
        names[target] = key
    return names


def load_hf_weights(hf_model: nn.Module, path: Path) -> int:
    """Fill `hf_model`'s parameters (plain, or FSDP-sharded DTensors: each rank its own shard) from
    the safetensors in `path`, converting to the parameters' dtype; returns how many tensors.

    A collective under FSDP (every rank calls it). Parameters tied to another one (a shared
    embedding) may be absent from the checkpoint; any other missing parameter is an error."""
    import torch.distributed.checkpoint as dcp

    names = checkpoint_names(hf_model, path)
    state = hf_model.state_dict()
    aliases: dict[int, list[str]] = {}
    for name, param in hf_model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(param), []).append(name)
    missing = [n for group in aliases.values() for n in group if n not in names and not any(m in names for m in group)]
    if missing:
        raise ValueError(f"{path}: the checkpoint lacks {len(missing)} parameter(s) of the model, e.g. {missing[0]}")
    wanted = {names[n]: t for n, t in state.items() if n in names}
    dcp.load(wanted, storage_reader=dcp.HuggingFaceStorageReader(str(path)))
    return len(wanted)


def snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(real parameters and persistent buffers by state-dict name, every real buffer by name), on the
    CPU: what `to_empty` would wipe and `materialize` puts back (the group projector, a reward head,
    rotary frequencies). Taken before sharding, when every tensor is whole."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not v.is_meta}
    buffers = {k: b.detach().cpu().clone() for k, b in model.named_buffers() if not b.is_meta}
    return state, buffers


def materialize(model: nn.Module, hf_model: nn.Module, weights: Path, device: torch.device,
                kept: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]) -> None:
    """After `fully_shard` of a model built with `empty_hf_model` inside it: allocate every rank's
    shards on `device`, read the Hugging Face weights into them (`load_hf_weights`), and put back
    what `snapshot` kept. A collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    state, buffers = kept
    model.to_empty(device=device)
    count = load_hf_weights(hf_model, weights)
    loaded = {f"{name}." for name, module in model.named_modules() if module is hf_model}
    rest = {k: v for k, v in state.items() if not any(k.startswith(p) for p in loaded) and k not in buffers}
    # Every rank holds the same small tensors (same seed, same data): each keeps its shard of them.
    set_model_state_dict(model, rest, options=StateDictOptions(full_state_dict=True, strict=False))
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name in buffers:
                buffer.copy_(buffers[name].to(buffer.device, buffer.dtype))
    print(f"osmf: loaded {count} tensors from {weights} into this rank's shards", file=sys.stderr, flush=True)


# ---- probe for parameters the loss never reaches -------------------------------------------------


def _narrow(config: Any) -> None:
    """Width of one (sub-)config cut to PROBE_WIDTH: names and depth stay, sizes shrink."""
    heads = 2
    for key in ("hidden_size", "projection_dim", "d_model"):
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, PROBE_WIDTH)
    for key in ("intermediate_size", "ffn_dim"):
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, 2 * PROBE_WIDTH)
    for key in ("num_attention_heads", "num_key_value_heads"):
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, heads)
    if isinstance(getattr(config, "head_dim", None), int):
        config.head_dim = PROBE_WIDTH // heads


def narrow_config(config: Any) -> Any:
    """A copy of a (multimodal) transformers config with every sub-model's width reduced."""
    out = copy.deepcopy(config)
    _narrow(out)
    for key in ("text_config", "vision_config"):
        sub = getattr(out, key, None)
        if sub is not None:
            _narrow(sub)
    return out


def probe_model(model: nn.Module, build: Any) -> nn.Module:
    """A width-reduced copy of `model` for `freeze_unreached`: `build(narrowed hf model)` makes the
    wrapper (e.g. a GroupMLLM around it); the copy's trainable flags follow `model`'s by name. A
    model that is not on the meta device is its own probe."""
    from transformers import AutoModelForImageTextToText

    if not has_meta(model):
        return model
    hf = next(m for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "text_config"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        probe = build(AutoModelForImageTextToText.from_config(narrow_config(hf.config), dtype=torch.float32))
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, param in probe.named_parameters():
        if name not in trainable:
            raise ValueError(f"the width-reduced probe has parameter {name} that the model lacks; cannot map unreached parameters")
        param.requires_grad_(trainable[name])
    return probe


def enable_gradient_checkpointing(hf_model: nn.Module) -> int:
    """Hugging Face's own activation checkpointing of each transformer block (parameter names
    unchanged, unlike `checkpoint_wrapper`), non-reentrant: it recomputes through FSDP's unshard
    hooks and needs no input that requires grad (LoRA over a frozen embedding). Returns how many
    blocks recompute."""
    hf_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    from transformers.modeling_layers import GradientCheckpointingLayer

    return sum(1 for m in hf_model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing)
