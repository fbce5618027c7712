"""task: reward — the GRM: a G-MLLM with a scalar head, trained on GAIP pairs.

Loss per pair (CAIG): -log σ(s_chosen - s_rejected) + w · BCE(σ(s), ctr) over both images. The
pairwise term only sees score differences; the CTR term (w = spec.reward.ctrLossWeight) anchors
σ(score) to the observed CTR, so scores are comparable across products and groups.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from osmf_jobs.gmodel.data import GaipData, PairExample, eval_subset, reward_examples
from osmf_jobs.gmodel.inference import score_batch_inputs
from osmf_jobs.gmodel.location import gmodel_dir
from osmf_jobs.gmodel.model import GroupMLLM, load_gmodel
from osmf_jobs.gmodel.training import Device, ProgressReporter, fit, freeze_unreached, unsharded_model, wrap_model

from .common import Resume, fit_settings, publish_model

EVAL_MAX_PAIRS = 8192  # held-out pairs scored (twice: with and without the group tokens)


def pair_batch(model: GroupMLLM, processor: Any, data: GaipData, pairs: list[PairExample]):
    """2B rows: the chosen images, then the rejected ones."""
    reps = [data.representatives[(p.product_id, p.group_id)] for p in pairs] * 2
    titles = [data.titles[p.product_id] for p in pairs] * 2
    images = [data.image(p.chosen_uri) for p in pairs] + [data.image(p.rejected_uri) for p in pairs]
    return score_batch_inputs(model, processor, reps, titles, images)


def run(ctx: Any, inputs: Any, data: GaipData, device: Device) -> dict[str, Any]:
    spec = ctx.spec
    train = reward_examples(data, train=True)
    held_out = eval_subset(reward_examples(data, train=False), EVAL_MAX_PAIRS,
                           key=lambda p: (p.product_id, p.group_id, p.chosen_uri, p.rejected_uri))
    model, processor, info = load_gmodel(gmodel_dir(inputs.init), reward_head=True)
    if model.group_dim != data.group_dim or model.n_vectors != data.n_vectors:
        from osmf_jobs.runtime import InvalidInput

        raise InvalidInput(
            f"spec.initFromRef: the pretrain run reads {model.n_vectors}×{model.group_dim} group vectors but this grouping has "
            f"{data.n_vectors}×{data.group_dim}; train both on the same AudienceGrouping"
        )
    # The GRM never produces text: the LM head gets no gradient (DDP requires every trainable
    # parameter to get one), and a frozen vision tower stays frozen.
    model.mllm.lm_head.requires_grad_(False)
    if not info.get("train_vision", True):
        model.mllm.model.vision_tower.requires_grad_(False)
    model.to(device.device)
    resume = Resume(ctx, model, device)
    if resume.step:
        print(f"osmf: resuming from checkpoint at step {resume.step}", file=sys.stderr, flush=True)
    weight = spec.reward.ctr_loss_weight

    def pair_loss(module: Any, indices: list[int]):
        chunk = [train[i] for i in indices]
        batch = pair_batch(model, processor, data, chunk).to(device.device)
        scores = module(**batch.model_inputs(), output="score")
        chosen, rejected = scores[: len(chunk)], scores[len(chunk) :]
        loss = -F.logsigmoid(chosen - rejected).mean()
        if weight:
            ctr = torch.tensor([p.chosen_ctr for p in chunk] + [p.rejected_ctr for p in chunk], device=scores.device)
            loss = loss + weight * F.binary_cross_entropy_with_logits(scores, ctr.clamp(0, 1))
        return loss, {"pair_accuracy": float((chosen > rejected).float().mean())}

    freeze_unreached(model, lambda: pair_loss(model, [0])[0])
    ddp = wrap_model(model, device, spec.training.strategy)

    def loss_fn(indices: list[int]):
        return pair_loss(ddp, indices)

    def on_step(step: int, total: int, loss: float, lr: float, stats: dict) -> None:
        resume.history.append(round(loss, 5))
        report(step, total, loss, lr, stats)

    report = ProgressReporter(ctx, resume.step)
    started = time.monotonic()
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    total = fit(params, loss_fn, len(train), fit_settings(spec.training), device, ddp_model=ddp,
                start_step=resume.step, optimizer_state=resume.optimizer_state, on_step=on_step, checkpoint=resume.save)
    model = unsharded_model(ddp, device)  # FSDP: the whole model on rank 0 (a collective)
    metrics: dict[str, Any] = {
        "task": "reward", "steps": total, "resumed_from_step": resume.step, "train_pairs": len(train),
        "heldout_pairs": len(held_out), "train_seconds": round(time.monotonic() - started, 2), "precision": device.precision,
        "world_size": device.world_size, "final_train_loss": resume.history[-1] if resume.history else None,
        "ctr_loss_weight": weight,
    }
    if device.is_main:
        started = time.monotonic()
        model.eval()
        with torch.no_grad(), device.autocast():
            heldout, per_group = pairwise_accuracy(model, processor, data, held_out, spec.training.batch_size, device)
            trained, _ = pairwise_accuracy(model, processor, data, train[:512], spec.training.batch_size, device)
        metrics |= heldout | {"train_pairwise_accuracy": trained["pairwise_accuracy"], "eval_seconds": round(time.monotonic() - started, 2)}
        ctx.store.write_json("eval/per_group.json", per_group)
        publish_model(ctx, model, processor, {
            "base_model": info.get("base_model"), "train_vision": info.get("train_vision", True), "task": "reward",
            "init": inputs.init.uri, "seed": spec.training.seed,
        })
    return metrics


def pairwise_accuracy(model: GroupMLLM, processor: Any, data: GaipData, pairs: list[PairExample], batch_size: int, device: Device) -> tuple[dict[str, Any], dict[str, Any]]:
    """Share of pairs where the chosen image scores higher, with the group tokens and with them zeroed."""
    wins: dict[bool, list[float]] = {False: [], True: []}
    margins: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = pair_batch(model, processor, data, chunk).to(device.device)
        for blind in (False, True):
            scores = model(**batch.model_inputs(), zero_group=blind, output="score")
            chosen, rejected = scores[: len(chunk)], scores[len(chunk) :]
            wins[blind] += ((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).tolist()
            if not blind:
                margins += (chosen - rejected).tolist()
    groups: dict[str, dict[bool, list[float]]] = defaultdict(lambda: {False: [], True: []})
    for pair, aware, blind in zip(pairs, wins[False], wins[True]):
        groups[f"{pair.product_id}/{pair.group_id}"][False].append(aware)
        groups[f"{pair.product_id}/{pair.group_id}"][True].append(blind)
    per_group = {
        key: {"pairs": len(v[False]), "accuracy": round(float(np.mean(v[False])), 4), "accuracy_group_blind": round(float(np.mean(v[True])), 4)}
        for key, v in sorted(groups.items())
    }
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    metrics = {
        "pairwise_accuracy": mean(wins[False]),
        "pairwise_accuracy_group_blind": mean(wins[True]),
        "pairwise_accuracy_per_group_mean": mean([g["accuracy"] for g in per_group.values()]),
        "groups_above_half": mean([float(g["accuracy"] > 0.5) for g in per_group.values()]),
        "mean_margin": mean(margins),
    }
    return metrics, per_group
