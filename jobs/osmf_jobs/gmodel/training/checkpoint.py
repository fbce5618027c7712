"""Checkpoints in the artifact store, whichever strategy (one process, DDP, FSDP) wrote or reads them.

Training state (trainable weights + AdamW state) is a `torch.distributed.checkpoint` (DCP)
checkpoint: every rank writes its own shard files (`__<rank>_<n>.distcp`, rank 0 also `.metadata`)
and uploads them itself through the store's managed transfer (multipart above the threshold); on
resume each node downloads the slot once and every rank reads back only the pieces it holds, so no
process ever holds the whole state in memory or sends it as one object (S3 caps a single PUT at
5 GB; LLaVA-7B's weights + AdamW state are ~81 GB). DCP reshards on load: a checkpoint written by
FSDP on 8 GPUs resumes under DDP, one process or another world size, and back. Small state (step
RNG, loss history; Group-DPO's LoRA weights and rounds) is one `state.pt`, streamed the same way.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osmf_core.layout import CHECKPOINTS, GModel

from .device import Device, barrier

SLOTS = ("a", "b")  # two alternating slots: a crash while writing one leaves the other intact
SHARDS = "shards"  # the DCP files of a slot: <slot>/shards/


class Checkpointer:
    """Checkpoints under `<run>/checkpoints/<slot>/`: `shards/` (DCP training state), `state.pt`
    (small state), then `done.json` ({"step": N}) last; the latest complete slot wins. A save
    first removes the older slot (its `done.json` with it), so a kill at any moment leaves the
    other one valid.

    Every rank constructs it (the slot choice is computed alike everywhere); `save_training` and
    `load_training` are collectives, `save` and `load` are rank 0's (or one process's)."""

    def __init__(self, store: Any, device: Device | None = None):
        self.store = store.child(CHECKPOINTS)
        self.device = device or Device(torch.device("cpu"), "fp32")
        self._latest = self.latest()

    def _done_step(self, slot: str) -> int | None:
        if not self.store.exists(f"{slot}/{GModel.CHECKPOINT_DONE}"):
            return None
        return self.store.read_json(f"{slot}/{GModel.CHECKPOINT_DONE}").get("step")

    def latest(self) -> tuple[str, int] | None:
        found = [(step, slot) for slot in SLOTS if (step := self._done_step(slot)) is not None]
        return (max(found)[1], max(found)[0]) if found else None

    def _next_slot(self) -> str:
        return SLOTS[0] if self._latest is None or self._latest[0] == SLOTS[1] else SLOTS[1]

    # ---- small state (one file) ----------------------------------------------------------------

    def save(self, step: int, state: dict[str, Any]) -> None:
        """One process's small checkpoint (`torch.save` into a local file, then a streamed upload)."""
        slot = self._next_slot()
        self.store.delete(slot)
        self._write_state(slot, state)
        self._finish(slot, step)

    def load(self) -> tuple[int, dict[str, Any]] | None:
        if self._latest is None:
            return None
        slot, step = self._latest
        return step, self._read_state(slot)

    def _write_state(self, slot: str, state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="osmf-checkpoint-") as folder:
            path = Path(folder) / GModel.CHECKPOINT_STATE
            torch.save(state, path)
            self.store.upload(path, f"{slot}/{GModel.CHECKPOINT_STATE}")

    def _read_state(self, slot: str) -> dict[str, Any]:
        local = self.store.local_path(f"{slot}/{GModel.CHECKPOINT_STATE}")
        if local is not None:
            return torch.load(local, map_location="cpu", weights_only=False)
        with tempfile.TemporaryDirectory(prefix="osmf-checkpoint-") as folder:
            path = self.store.download(f"{slot}/{GModel.CHECKPOINT_STATE}", Path(folder) / GModel.CHECKPOINT_STATE)
            return torch.load(path, map_location="cpu", weights_only=False)

    def _finish(self, slot: str, step: int) -> None:
        self.store.write_json(f"{slot}/{GModel.CHECKPOINT_DONE}", {"step": step})
        self._latest = (slot, step)

    # ---- training state (DCP, one set of files per rank) ---------------------------------------

    def save_training(self, step: int, module: Any, optimizer: torch.optim.Optimizer, extra: dict[str, Any]) -> None:
        """Trainable weights and optimizer state of `module` (DDP, FSDP or plain) as a DCP checkpoint,
        plus rank 0's `extra`. A collective: every rank writes and uploads its own files."""
        import torch.distributed.checkpoint as dcp

        slot = self._next_slot()
        if self.device.is_main:
            self.store.delete(slot)  # the older slot, done.json first among its files
        barrier(self.device)
        state = _training_state_dict(module, optimizer)
        target = self.store.local_path(f"{slot}/{SHARDS}")
        if target is not None:  # a local run directory: every rank writes into it directly
            dcp.save(state, storage_writer=dcp.FileSystemWriter(str(target)))
        else:
            with tempfile.TemporaryDirectory(prefix="osmf-checkpoint-") as folder:
                dcp.save(state, storage_writer=dcp.FileSystemWriter(folder))
                self.store.upload(Path(folder), f"{slot}/{SHARDS}")  # this rank's files, multipart when large
        if self.device.is_main:
            self._write_state(slot, extra)
        barrier(self.device)  # every rank's files are stored before the slot is declared complete
        if self.device.is_main:
            self._finish(slot, step)
        else:
            self._latest = (slot, step)

    def load_training(self, module: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Restore the latest slot into `module` and `optimizer` (each rank the pieces it holds) and
        return its `extra`. A collective. Call it after the optimizer exists."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        if self._latest is None:
            raise FileNotFoundError(f"{self.store.uri}: no complete checkpoint")
        slot, _ = self._latest
        state = _training_state_dict(module, optimizer)
        local = self.store.local_path(f"{slot}/{SHARDS}")
        if local is not None:
            dcp.load(state, storage_reader=dcp.FileSystemReader(str(local)))
        else:
            folder = self._node_copy(slot)
            dcp.load(state, storage_reader=dcp.FileSystemReader(str(folder)))
            barrier(self.device)  # every rank of the node has read it
            if int(os.environ.get("LOCAL_RANK", 0)) == 0:
                shutil.rmtree(folder, ignore_errors=True)
                folder.with_name(folder.name + ".complete").unlink(missing_ok=True)
        # strict=False: the state holds the trainable weights only (dcp.load already failed on any of
        # them missing from the checkpoint); frozen ones keep what the model was loaded with.
        set_model_state_dict(module, state["model"], options=_model_options(strict=False))
        set_optimizer_state_dict(module, optimizer, state["optim"])
        return self._read_state(slot)

    def _node_copy(self, slot: str) -> Path:
        """The slot's DCP files on this node's disk, downloaded once for all its ranks (the model
        cache's lock: one rank downloads, the others wait)."""
        from osmf_jobs.model_dirs import cached_dir

        store = self.store.child(f"{slot}/{SHARDS}")
        key = hashlib.sha256(f"{store.uri}\n{store.fingerprint()}".encode()).hexdigest()[:24]

        def download(dest: Path) -> None:
            print(f"osmf: downloading checkpoint {store.uri}", file=sys.stderr, flush=True)
            store.download("", dest)

        return cached_dir(f"checkpoints/{key}", download)


def _model_options(strict: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, strict=strict)


def _training_state_dict(module: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """{"model": trainable weights by name, "optim": optimizer state by parameter name}: DTensor
    shards under FSDP, plain tensors otherwise (DDP's `module.` prefix dropped), so any strategy
    reads what any other wrote."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return {"model": get_model_state_dict(module, options=_model_options()), "optim": get_optimizer_state_dict(module, optimizer)}


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
