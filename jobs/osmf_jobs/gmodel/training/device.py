"""This process's device and precision, torchrun's process group, seeding and small collectives."""

from __future__ import annotations

import contextlib
import datetime
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class Device:
    device: torch.device
    precision: str  # what actually runs: bf16 | fp16 | fp32
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_node_main(self) -> bool:
        """The first process of this node: what each node's (pod's) log should say once."""
        return self.local_rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"  # set by torchrun for its workers, even a single one


def setup_device(dist: Any, precision: str, timeout_seconds: float | None = None) -> Device:
    """Join torchrun's process group when there is one (a single torchrun worker joins a group of
    one, so FSDP runs on one GPU as on many); pick this rank's device.

    `timeout_seconds` bounds every collective (NCCL's default is 10 minutes, less than gathering and
    uploading a 7B model takes). CPU runs in fp32 whatever the spec says (bf16 autocast on CPU is
    slow and not what GPUs do).
    """
    if torch.cuda.is_available():
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            precision = "fp16"
    else:
        device, precision = torch.device("cpu"), "fp32"
    under_torchrun = dist.world_size > 1 or os.environ.get(TORCHRUN_ENV) is not None
    if under_torchrun and not torch.distributed.is_initialized():
        kwargs: dict[str, Any] = {"backend": "nccl" if device.type == "cuda" else "gloo"}
        if timeout_seconds:
            kwargs["timeout"] = datetime.timedelta(seconds=timeout_seconds)
        if device.type == "cuda":
            kwargs["device_id"] = device  # NCCL binds its communicator to this GPU at once
        torch.distributed.init_process_group(**kwargs)
    return Device(device, precision, dist.rank, dist.world_size, dist.local_rank)


def leave_process_group(device: Device) -> None:
    """End this rank's part in collectives (after the last one: the final model gathered to rank 0).
    Rank 0 then evaluates and uploads alone while the other ranks exit, instead of holding them in a
    barrier that a long evaluation or upload would time out."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


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
    if device.world_size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def all_mean(value: float, device: Device) -> float:
    if device.world_size == 1:
        return value
    tensor = torch.tensor([value], device=device.device, dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / device.world_size


def quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # data-loader workers fork after tokenizing
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
