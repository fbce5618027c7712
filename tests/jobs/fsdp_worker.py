"""A tiny stand-in transformer trained through `gmodel.training.fit`, in one process or under
torchrun (gloo on CPU) with DDP or FSDP; used by test_gmodel_fsdp.py.

    python fsdp_worker.py --strategy fsdp --steps 6 --out DIR [--save-at 3] [--resume RUN_DIR]

Writes DIR/final.pt (the whole model's state after training, from rank 0) and, with --save-at,
the checkpoint of that step under DIR/checkpoints/ (the jobs' `Checkpointer`: DCP files per rank).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch import nn

from osmf_core.store import FileStore
from osmf_jobs.gmodel.training.checkpoint import Checkpointer
from osmf_jobs.gmodel.training.device import Device
from osmf_jobs.gmodel.training.fit import FitSettings, fit
from osmf_jobs.gmodel.training.parallel import unsharded_model, wrap_model


class TinyDecoderLayer(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.fc(self.norm(x)))


class Tiny(nn.Module):
    def __init__(self, d: int = 8, layers: int = 3):
        super().__init__()
        self.embed = nn.Linear(4, d)
        self.layers = nn.ModuleList(TinyDecoderLayer(d) for _ in range(layers))
        self.frozen = nn.Linear(d, d)  # used but not trained, like a frozen vision tower
        self.head = nn.Linear(d, 1)  # a (1, d) weight: uneven shards over 2 ranks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h)
        return self.head(h + 0.1 * self.frozen(h)).squeeze(-1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--save-at", type=int, default=0)
    parser.add_argument("--resume", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("gloo")
    device = Device(torch.device("cpu"), "fp32", rank, world)
    torch.manual_seed(0)
    model = Tiny()
    model.frozen.requires_grad_(False)
    data = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=data), torch.randn(32, generator=data)
    wrapped = wrap_model(model, device, args.strategy)
    start, restore = 0, None
    if args.resume:
        resumed = Checkpointer(FileStore(Path(args.resume)), device)
        start = resumed.latest()[1]
        restore = lambda optimizer: resumed.load_training(wrapped, optimizer)  # noqa: E731
    params = [p for p in model.parameters() if p.requires_grad]  # after wrapping: DTensors under FSDP
    out = Path(args.out)

    def loss_fn(indices: list[int]):
        return ((wrapped(x[indices]) - y[indices]) ** 2).mean(), {}

    checkpointer = Checkpointer(FileStore(out), device)

    def checkpoint(step: int, optimizer: torch.optim.Optimizer) -> None:
        if step == args.save_at:
            checkpointer.save_training(step, wrapped, optimizer, {})  # a collective: each rank writes its files

    # 8 examples per step in 2 micro-batches whatever the world size, so runs compare exactly; a
    # low clipping threshold, so clipping is active.
    settings = FitSettings(epochs=100, learning_rate=0.05, batch_size=4 // world, gradient_accumulation_steps=2,
                           max_steps=args.steps, checkpoint_every_steps=1, seed=3, max_grad_norm=0.05)
    fit(params, loss_fn, len(x), settings, device, ddp_model=wrapped, start_step=start,
        restore=restore, checkpoint=checkpoint)
    plain = unsharded_model(wrapped, device)
    if rank == 0:
        torch.save({k: v.detach().cpu().clone() for k, v in plain.state_dict().items()}, out / "final.pt")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
