"""Checkpoints in the artifact store: trainable weights, optimizer and RNG state, whichever strategy
(one process, DDP, FSDP) wrote or reads them."""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import torch

from osmf_core.layout import CHECKPOINTS, GModel

from .device import Device
from .parallel import full_state_options, is_fsdp

SLOTS = ("a", "b")  # two alternating slots: a crash while writing one leaves the other intact


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
    state = get_optimizer_state_dict(model, optimizer, options=full_state_options())
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
