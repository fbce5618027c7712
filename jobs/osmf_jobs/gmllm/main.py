"""GMLLMTraining step `train`: validate inputs, set up devices, run the task, write metrics + manifest."""

from __future__ import annotations

from typing import Any

from osmf_core.layout import CHECKPOINTS, METRICS
from osmf_jobs.runtime import JobContext

from .inputs import resolve_inputs


def main(ctx: JobContext) -> None:
    inputs = resolve_inputs(ctx)  # cheap checks before torch is imported

    from osmf_jobs.gmodel.data import load_gaip
    from osmf_jobs.gmodel.training.device import leave_process_group, quiet_transformers, seed_everything, setup_device

    quiet_transformers()
    spec = ctx.spec
    device = setup_device(ctx.dist, spec.training.precision, spec.training.collective_timeout_seconds)
    seed_everything(spec.training.seed, device)
    data = load_gaip(inputs.dataset, inputs.grouping, inputs.data, need_pairs=spec.task == "reward")
    if spec.task == "pretrain":
        from .pretrain import run
    else:
        from .reward import run
    metrics: dict[str, Any] = run(ctx, inputs, data, device)
    if device.is_main:
        ctx.store.write_json(METRICS, metrics)
        ctx.write_manifest(metrics, discard=() if spec.training.keep_checkpoints else (CHECKPOINTS,))
    leave_process_group(device)  # the tasks already left it after their last collective
