"""task: reward — the GRM: a G-MLLM with a scalar head, trained on GAIP pairs.

Loss (CAIG): -log σ(s_chosen - s_rejected) per pair + w · BCE(σ(s), ctr) per image. The pairwise
term only sees score differences; the CTR term (w = spec.reward.ctrLossWeight) anchors σ(score) to
the observed CTR, so scores are comparable across products and groups.

Training examples are (product, group)s, not pairs: a step scores each of its groups' distinct images
once and averages the loss over all their pairs (`spec.training.batchSize` counts groups). A group's
~20 GAIP pairs share its ~8 images, so pair by pair every image went through the model ~5 times per
epoch; at the same compute the grouped loop makes ~5× more passes over the pairs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from osmf_core.layout import GModel
from osmf_jobs.gmodel.data import GaipData, PairExample, eval_subset, reward_examples
from osmf_jobs.gmodel.inference import score_batch_inputs
from osmf_jobs.gmodel.location import gmodel_dir
from osmf_jobs.gmodel.model import GroupMLLM, load_gmodel
from osmf_jobs.gmodel.training.device import Device, leave_process_group
from osmf_jobs.gmodel.training.fit import fit
from osmf_jobs.gmodel.training.parallel import unsharded_model
from osmf_jobs.gmodel.training.progress import ProgressReporter

from osmf_jobs.runtime import InvalidInput

from .common import Resume, fit_settings, prepare_model, publish_model, sharded_loading

EVAL_MAX_PAIRS = 8192  # held-out pairs scored (twice: with and without the group tokens)
EVAL_MAX_TRAIN_PAIRS = 2048  # training pairs scored for train_pairwise_accuracy


@dataclass
class GroupPairs:
    """One (product, group)'s pairs over its distinct images: each image is scored once per step and
    every pair's loss reads those scores (a group's ~20 pairs share its ~8 images, so scoring pair by
    pair would run each image through the model ~5 times)."""

    key: tuple[str, int]
    images: list[str]  # distinct image URIs
    ctrs: list[float]
    pairs: list[tuple[int, int]]  # (chosen, rejected) indices into images


def group_pairs(pairs: list[PairExample]) -> list[GroupPairs]:
    """The pairs gathered by (product, group), in first-seen order."""
    groups: dict[tuple[str, int], GroupPairs] = {}
    for pair in pairs:
        group = groups.setdefault((pair.product_id, pair.group_id), GroupPairs((pair.product_id, pair.group_id), [], [], []))
        index = []
        for uri, ctr in ((pair.chosen_uri, pair.chosen_ctr), (pair.rejected_uri, pair.rejected_ctr)):
            if uri not in group.images:
                group.images.append(uri)
                group.ctrs.append(ctr)
            index.append(group.images.index(uri))
        group.pairs.append((index[0], index[1]))
    return list(groups.values())


def groups_batch(model: GroupMLLM, processor: Any, data: GaipData, groups: list[GroupPairs]):
    """One row per (group, distinct image); returns the batch and each pair's (chosen, rejected) row."""
    reps, titles, uris, rows = [], [], [], []
    for group in groups:
        offset = len(uris)
        reps += [data.representatives[group.key]] * len(group.images)
        titles += [data.titles[group.key[0]]] * len(group.images)
        uris += group.images
        rows += [(offset + c, offset + r) for c, r in group.pairs]
    stats = image_stats(model, data, uris) if model.interaction is not None else None
    return score_batch_inputs(model, processor, reps, titles, [data.image(uri) for uri in uris], stats), rows


def image_stats(model: GroupMLLM, data: GaipData, uris: list[str]) -> Any:
    """The interaction's image statistics, computed once per image for the whole run (every epoch
    scores the same logged images)."""
    cache = model.__dict__.setdefault("stats_cache", {})
    missing = [uri for uri in dict.fromkeys(uris) if uri not in cache]
    if missing:
        cache.update(zip(missing, model.stats_encoder.encode([data.image(uri) for uri in missing])[0]))
    return np.stack([cache[uri] for uri in uris])


def init_head_bias(model: GroupMLLM, pairs: list[PairExample]) -> None:
    """Start σ(score) at the training images' mean CTR: bias = logit(mean CTR).

    With a zero bias σ(score) starts at 0.5 against CTRs of a few percent, so at first the CTR term's
    gradient (σ(s) − ctr ≈ 0.46 on every row) dwarfs the pairwise term's, and AdamW moves a bias only
    ~LR per step: for hundreds of steps every parameter is pushed to lower all scores alike. (On the
    demo world this alone did not make the GRM learn; the group standardisation and the grouped loop
    did.) A resumed run overwrites it with its checkpoint."""
    if model.reward_head is None or not pairs:
        return
    ctr = float(np.clip(np.mean([p.chosen_ctr for p in pairs] + [p.rejected_ctr for p in pairs]), 1e-4, 1 - 1e-4))
    with torch.no_grad():
        model.reward_head.bias.fill_(float(np.log(ctr / (1 - ctr))))


def run(ctx: Any, inputs: Any, data: GaipData, device: Device) -> dict[str, Any]:
    spec = ctx.spec
    train = reward_examples(data, train=True)
    held_out = eval_subset(reward_examples(data, train=False), EVAL_MAX_PAIRS,
                           key=lambda p: (p.product_id, p.group_id, p.chosen_uri, p.rejected_uri))
    init_dir = gmodel_dir(inputs.init, "spec.initFromRef")
    sharded = sharded_loading(spec.training, device)  # FSDP: LLaVA on meta, each rank reads its shards
    model, processor, info = load_gmodel(init_dir, reward_head=True, device=device.device, empty=sharded)
    if model.group_dim != data.group_dim or model.n_vectors != data.n_vectors:
        raise InvalidInput(
            f"spec.initFromRef: the pretrain run reads {model.n_vectors}×{model.group_dim} group vectors but this grouping has "
            f"{data.n_vectors}×{data.group_dim}; train both on the same AudienceGrouping"
        )
    # The GRM never produces text: the LM head gets no gradient (DDP requires every trainable
    # parameter to get one), and a frozen vision tower stays frozen.
    model.mllm.lm_head.requires_grad_(False)
    if not info.get("train_vision", True):
        model.mllm.model.vision_tower.requires_grad_(False)
    init_head_bias(model, train)
    blind = spec.reward.group_blind
    interaction = None if blind else attach_interaction(model, inputs.grouping, None if sharded else device.device)
    resume = Resume(ctx, device)
    weight = spec.reward.ctr_loss_weight
    groups = group_pairs(train)

    def collate(indices: list[int]):  # in a DataLoader worker: images decoded, processor run
        chunk = [groups[i] for i in indices]
        batch, rows = groups_batch(model, processor, data, chunk)
        return batch, torch.tensor(rows, dtype=torch.long).reshape(-1, 2), torch.tensor([c for g in chunk for c in g.ctrs])

    def pair_loss(module: Any, prepared: Any):
        batch, rows, ctr = prepared
        scores = module(**batch.to(next(p for p in module.parameters()).device).model_inputs(), output="score", zero_group=blind)
        rows, ctr = rows.to(scores.device), ctr.to(scores.device, scores.dtype)
        chosen, rejected = scores[rows[:, 0]], scores[rows[:, 1]]
        loss = -F.logsigmoid(chosen - rejected).mean()  # every pair of the step weighs the same
        if weight:  # every (group, image) once
            loss = loss + weight * F.binary_cross_entropy_with_logits(scores, ctr.clamp(0, 1))
        return loss, {"pair_accuracy": float((chosen > rejected).float().mean())}

    ddp, _ = prepare_model(model, spec.training, device, init_dir / GModel.MLLM_DIR, lambda module: pair_loss(module, collate([0]))[0])
    resume.module = ddp

    def loss_fn(prepared: Any):
        return pair_loss(ddp, prepared)

    def on_step(step: int, total: int, loss: float, lr: float, stats: dict) -> None:
        resume.history.append(round(loss, 5))
        report(step, total, loss, lr, stats)

    report = ProgressReporter(ctx, resume.step)
    started = time.monotonic()
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    total = fit(params, loss_fn, len(groups), fit_settings(spec.training), device, ddp_model=ddp, start_step=resume.step,
                restore=resume.restore, on_step=on_step, checkpoint=resume.save, collate=collate,
                workers=spec.training.data_loader_workers)
    model = unsharded_model(ddp, device)  # FSDP: the whole model on rank 0 (a collective)
    ddp = resume.module = None
    leave_process_group(device)  # the last collective: rank 0 evaluates and publishes alone, the others exit
    metrics: dict[str, Any] = {
        "task": "reward", "steps": total, "resumed_from_step": resume.step, "train_pairs": len(train), "train_groups": len(groups),
        "heldout_pairs": len(held_out), "train_seconds": round(time.monotonic() - started, 2), "precision": device.precision,
        "world_size": device.world_size, "final_train_loss": resume.history[-1] if resume.history else None,
        "ctr_loss_weight": weight,
    }
    if device.is_main:
        started = time.monotonic()
        model.eval()
        with torch.no_grad(), device.autocast():
            heldout, per_group = pairwise_accuracy(model, processor, data, held_out, spec.training.batch_size, device, blind)
            heldout["preference_model_pairwise_accuracy"] = preference_model_accuracy(inputs.grouping, data, held_out)
            trained, _ = pairwise_accuracy(model, processor, data, train[:EVAL_MAX_TRAIN_PAIRS], spec.training.batch_size, device, blind)
        metrics |= heldout | {"train_pairwise_accuracy": trained["pairwise_accuracy"], "eval_seconds": round(time.monotonic() - started, 2)}
        ctx.store.write_json(GModel.EVAL_PER_GROUP, per_group)
        publish_model(ctx, model, processor, {
            "base_model": info.get("base_model"), "train_vision": info.get("train_vision", True), "task": "reward",
            "init": inputs.init.uri, "seed": spec.training.seed, "group_blind": blind,
            **({"interaction": interaction} if interaction else {}),
        })
    return metrics


def attach_interaction(model: GroupMLLM, grouping: Any, device: Any = None) -> dict[str, Any]:
    """Give the GRM its group × image term over the grouping's preference-model image features."""
    from osmf_jobs.gmodel.model import PreferenceInteraction, image_stats_encoder
    from osmf_jobs.paag import Assigner

    assigner = Assigner.load(grouping.uri, with_groups=False)
    arrays = assigner.model.a
    if arrays["c2.weight"].shape[0] != model.group_dim:
        raise InvalidInput(f"the grouping's preference model has {arrays['c2.weight'].shape[0]}-d vectors but the G-MLLM reads "
                           f"{model.group_dim}; train both on the same AudienceGrouping")
    model.interaction = PreferenceInteraction(model.group_dim, int(arrays["creative.mean"].shape[0]))
    model.interaction.load_creative_tower(arrays)
    if device is not None:  # a model built on the meta device is placed when it is sharded
        model.interaction.to(device)
    model.stats_encoder = image_stats_encoder(assigner.config["image_encoder"])
    return {"image_encoder": assigner.config["image_encoder"], "stats_dim": int(arrays["creative.mean"].shape[0])}


def preference_model_accuracy(grouping: Any, data: GaipData, pairs: list[PairExample]) -> float | None:
    """The grouping's preference model, as a scorer, on the same held-out pairs (what `auto` compares)."""
    from osmf_jobs.scoring import PreferenceModelScorer, pairwise_accuracy as scorer_accuracy

    scorer = PreferenceModelScorer(grouping, "spec.datasetRef")
    rows = [(data.representatives[(p.product_id, p.group_id)], data.titles[p.product_id], data.image(p.chosen_uri), data.image(p.rejected_uri))
            for p in pairs]
    value = scorer_accuracy(scorer, rows)
    return None if value is None else round(value, 4)


def pairwise_accuracy(model: GroupMLLM, processor: Any, data: GaipData, pairs: list[PairExample], batch_size: int, device: Device,
                      group_blind_model: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Share of pairs where the chosen image scores higher, with the group tokens and with them zeroed
    (a group-blind GRM is scored blind both ways). Each (group, image) is scored once; chunks hold
    about 2 × batch_size rows."""
    wins: dict[bool, list[float]] = {False: [], True: []}
    margins: list[float] = []
    ordered: list[PairExample] = []
    chunk: list[GroupPairs] = []
    rows_in_chunk = 0
    grouped = group_pairs(pairs)
    for index, group in enumerate(grouped):
        chunk.append(group)
        rows_in_chunk += len(group.images)
        if rows_in_chunk < 2 * batch_size and index + 1 < len(grouped):
            continue
        batch, rows = groups_batch(model, processor, data, chunk)
        batch = batch.to(device.device)
        for blind in (False, True):
            scores = model(**batch.model_inputs(), zero_group=blind or group_blind_model, output="score")
            chosen, rejected = (scores[torch.tensor([r[k] for r in rows], device=scores.device)] for k in (0, 1))
            wins[blind] += ((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).tolist()
            if not blind:
                margins += (chosen - rejected).tolist()
        ordered += [PairExample(g.key[0], g.key[1], g.images[c], g.images[r], g.ctrs[c], g.ctrs[r]) for g in chunk for c, r in g.pairs]
        chunk, rows_in_chunk = [], 0
    pairs = ordered
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
