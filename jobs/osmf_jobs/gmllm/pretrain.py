"""task: pretrain — the G-MLLM on the four tasks, then held-out evaluation."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from osmf_core.layout import GModel
from osmf_jobs.gmodel.batching import answer_logprobs, examples_batch
from osmf_jobs.gmodel.data import Example, GaipData, eval_subset, pretrain_examples
from osmf_jobs.gmodel.inference import PromptRequest, prompt_batch, sample_answers
from osmf_jobs.gmodel.loading import empty_hf_model
from osmf_jobs.gmodel.model import TINY_LLAVA, GroupMLLM, build_tiny_llava, load_hf_llava, load_llava_processor
from osmf_jobs.gmodel.text import match_rate, style_vocabulary, style_words
from osmf_jobs.gmodel.training.device import Device, all_mean, leave_process_group
from osmf_jobs.gmodel.training.fit import fit
from osmf_jobs.gmodel.training.parallel import unsharded_model
from osmf_jobs.gmodel.training.progress import ProgressReporter
from osmf_jobs.model_dirs import HF_CONFIG, model_dir
from osmf_jobs.runtime import InvalidInput, one_line

from .common import Resume, fit_settings, prepare_model, publish_model, sharded_loading

EVAL_SAMPLES = 4  # prompts sampled per held-out group at T=1 for the style-word metric
EVAL_MAX_NEW_TOKENS = 32
EVAL_SEED = 1234
EVAL_MAX_EXAMPLES = 4096  # held-out examples for the losses and prefer accuracy
EVAL_MAX_GROUPS = 512  # held-out groups whose prompts are generated


def build_model(spec: Any, data: GaipData, device: Device, sharded: bool = False) -> tuple[GroupMLLM, Any, dict[str, Any], Path | None]:
    """(model, processor, meta, weights): a base model by URI is read straight onto the device in
    fp32 (the master weights), or with `sharded` left on the meta device for each rank to read its
    FSDP shards from `weights` later (`common.prepare_model`)."""
    uri = spec.base_model.uri
    weights = None
    if uri.startswith("builtin:"):
        if uri != TINY_LLAVA:
            raise InvalidInput(f"spec.baseModel.uri {uri}: unknown builtin model; use {TINY_LLAVA} or a model directory URI")
        mllm, processor = build_tiny_llava(sorted(data.vocabulary(style_vocabulary())), seed=spec.training.seed, max_length=spec.training.max_length)
        train_vision = True  # a random vision tower has to learn
    else:
        path = model_dir(uri, "spec.baseModel.uri", HF_CONFIG, "point it at a LLaVA-class model directory")
        try:
            if sharded:
                mllm, processor, weights = empty_hf_model(path), load_llava_processor(path), path
            else:
                mllm, processor = load_hf_llava(path, device=device.device)
        except Exception as error:  # noqa: BLE001 - any loader failure means the URI names no usable model
            raise InvalidInput(f"spec.baseModel.uri {uri}: not loadable as a LLaVA-class model ({one_line(error)})") from None
        train_vision = False  # LLaVA's recipe: the pretrained vision tower stays frozen
    model = GroupMLLM(mllm, data.group_dim, data.n_vectors, spec.group_tokens)
    # Group vectors standardised per dimension with the training groups' statistics (stored with the
    # projector, so the GRM, Group-DPO and inference read them the same way). PAAG vectors have
    # per-dimension spreads of 0.03-0.27 around a mean of norm ~2, so raw they start the projector
    # near-constant. Demo world, all else equal: the GRM fits 0.78 of its training pairs instead of
    # 0.65 (held-out 0.578 vs 0.557); pretrain style_match 0.332 vs 0.325.
    vectors = np.stack([data.representatives[k] for k in data.group_keys(train=True)])
    model.group_projector.standardize(torch.as_tensor(vectors))
    if not train_vision:
        for param in model.mllm.model.vision_tower.parameters():
            param.requires_grad_(False)
    if weights is None:
        model.to(device.device)
    return model, processor, {"base_model": uri, "train_vision": train_vision, "task": "pretrain"}, weights


def batch_of(model: GroupMLLM, processor: Any, data: GaipData, examples: list[Example], max_length: int):
    return examples_batch(
        model, processor, [data.representatives[(e.product_id, e.group_id)] for e in examples],
        [data.image(e.image_uri) for e in examples], [e.instruction for e in examples], [e.answer for e in examples], max_length,
    )


def run(ctx: Any, inputs: Any, data: GaipData, device: Device) -> dict[str, Any]:
    spec = ctx.spec
    train = pretrain_examples(data, train=True, seed=spec.training.seed)
    held_out = eval_subset(pretrain_examples(data, train=False, seed=spec.training.seed), EVAL_MAX_EXAMPLES,
                           key=lambda e: (e.task, e.product_id, e.group_id, e.image_uri, e.instruction))
    if not train:
        raise InvalidInput(f"GAIP dataset {inputs.dataset.uri} has no training products (split 'train'); check the GAIPDataset's split")
    model, processor, meta, weights = build_model(spec, data, device, sharded_loading(spec.training, device))
    resume = Resume(ctx, device)
    max_length = spec.training.max_length

    def collate(indices: list[int]):  # in a DataLoader worker: images decoded, processor run
        return batch_of(model, processor, data, [train[i] for i in indices], max_length)

    def lm_loss(module: Any, batch: Any) -> torch.Tensor:
        batch = batch.to(next(p for p in module.parameters()).device)
        logits = module(**batch.model_inputs(), logits_to_keep=batch.answer_len + 1)
        logprob, count = answer_logprobs(logits, batch)
        return -logprob.sum() / count.sum().clamp(min=1)

    ddp, frozen = prepare_model(model, spec.training, device, weights, lambda module: lm_loss(module, collate([0])))
    resume.module = ddp

    tokens, clock = [0], []  # this rank's tokens so far; (tokens, time) after each step, for throughput

    def loss_fn(batch: Any):
        tokens[0] += int(batch.attention_mask.sum())
        return lm_loss(ddp, batch), {}

    def on_step(step: int, total: int, loss: float, lr: float, stats: dict) -> None:
        resume.history.append(round(loss, 5))  # all_mean of the loss synchronised the step: the clock is honest
        clock.append((tokens[0], time.monotonic()))
        report(step, total, loss, lr, stats)

    report = ProgressReporter(ctx, resume.step)
    settings = fit_settings(spec.training)
    started = time.monotonic()
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    total = fit(params, loss_fn, len(train), settings, device, ddp_model=ddp, start_step=resume.step, restore=resume.restore,
                on_step=on_step, checkpoint=resume.save, collate=collate, workers=spec.training.data_loader_workers)
    # Tokens per second after the first step (start-up, allocator and kernel warm-up), all ranks.
    steady = (clock[-1][0] - clock[0][0]) / (clock[-1][1] - clock[0][1]) if len(clock) > 1 else 0.0
    tokens_per_second = all_mean(steady, device) * device.world_size
    model = unsharded_model(ddp, device)  # FSDP: the whole model on rank 0 (a collective)
    ddp = resume.module = None
    leave_process_group(device)  # the last collective: rank 0 evaluates and publishes alone, the others exit
    train_seconds = time.monotonic() - started
    metrics: dict[str, Any] = {
        "task": "pretrain", "steps": total, "resumed_from_step": resume.step, "train_examples": len(train),
        "heldout_examples": len(held_out), "train_seconds": round(train_seconds, 2), "precision": device.precision,
        "world_size": device.world_size, "final_train_loss": resume.history[-1] if resume.history else None,
        "train_tokens_per_second": round(tokens_per_second, 1), "examples_per_task": dict(Counter(e.task for e in train)), "frozen_unreached": len(frozen), "group_profiles": data.profile_source,
    }
    if device.is_main:
        started = time.monotonic()
        model.eval()
        with torch.no_grad(), device.autocast():
            metrics |= eval_loss(model, processor, data, held_out, spec.training.batch_size, max_length, device)
            metrics |= prefer_accuracy(model, processor, data, [e for e in held_out if e.task == "prefer"], spec.training.batch_size, device)
            style, samples = style_match(model, processor, data, spec.training.batch_size, device)
            metrics |= style
        metrics["eval_seconds"] = round(time.monotonic() - started, 2)
        ctx.store.write_json(GModel.EVAL_PROMPTS, samples)
        publish_model(ctx, model, processor, meta | {"seed": spec.training.seed})
    return metrics


def eval_loss(model: GroupMLLM, processor: Any, data: GaipData, examples: list[Example], batch_size: int, max_length: int, device: Device) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = batch_of(model, processor, data, chunk, max_length).to(device.device)
        logprob, count = answer_logprobs(model(**batch.model_inputs(), logits_to_keep=batch.answer_len + 1), batch)
        for example, lp, n in zip(chunk, logprob.tolist(), count.tolist()):
            for key in ("all", example.task):
                sums[key] -= lp
                counts[key] += n
    out = {f"eval_loss_{k}": round(sums[k] / counts[k], 5) for k in sums if k != "all"}
    if counts["all"]:
        out["eval_loss"] = round(sums["all"] / counts["all"], 5)
    return out


def prefer_accuracy(model: GroupMLLM, processor: Any, data: GaipData, examples: list[Example], batch_size: int, device: Device) -> dict[str, Any]:
    """Held-out "which background does the group prefer": is log p(right letter) > log p(other)?"""
    correct = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        scores = []
        for letter in ("a", "b"):
            flipped = [Example(e.task, e.product_id, e.group_id, e.image_uri, e.instruction, letter) for e in chunk]
            batch = batch_of(model, processor, data, flipped, max_length=None).to(device.device)
            scores.append(answer_logprobs(model(**batch.model_inputs(), logits_to_keep=batch.answer_len + 1), batch)[0])
        picked_a = (scores[0] > scores[1]).tolist()
        correct += [(e.answer == "a") == a for e, a in zip(chunk, picked_a)]
    return {"prefer_accuracy": round(float(np.mean(correct)), 4) if correct else None, "prefer_pairs": len(correct)}


def style_match(model: GroupMLLM, processor: Any, data: GaipData, batch_size: int, device: Device) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Do the prompts for a held-out group use the style words of that group's best image?

    style_match: mean share of a prompt's style words found in the caption of the group's best image
    (T=1 samples; `_greedy` for greedy decoding). Baselines: `_chance`, the same share for style
    words drawn from the training targets' word frequencies; `_other_group`, the prompt against the
    best captions of the product's other groups (a prompt that ignores the group scores the same).
    """
    vocabulary = style_vocabulary()
    best = data.best_captions()
    keys = eval_subset(data.group_keys(train=False), EVAL_MAX_GROUPS, key=lambda k: k)
    train_words = Counter(w for key in data.group_keys(train=True) for w in style_words(best[key], vocabulary))
    total_words = sum(train_words.values()) or 1
    tok = processor.tokenizer
    sampled: dict[tuple[str, int], list[str]] = {}
    greedy: dict[tuple[str, int], str] = {}
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        requests = [PromptRequest(data.representatives[k], data.titles[k[0]], data.image(data.product_images[k[0]])) for k in chunk]
        batch = prompt_batch(model, processor, requests).to(device.device)
        draws = sample_answers(model, batch, EVAL_SAMPLES, 1.0, EVAL_SEED + start, EVAL_MAX_NEW_TOKENS, tok.eos_token_id, tok.pad_token_id)
        firsts = sample_answers(model, batch, 1, 0.0, 0, EVAL_MAX_NEW_TOKENS, tok.eos_token_id, tok.pad_token_id)
        for key, rows, first in zip(chunk, draws, firsts):
            sampled[key] = [tok.decode(r, skip_special_tokens=True).strip() for r in rows]
            greedy[key] = tok.decode(first[0], skip_special_tokens=True).strip()
    groups_of: dict[str, list[int]] = defaultdict(list)
    for product, group in keys:
        groups_of[product].append(group)
    own, own_greedy, chance, other = [], [], [], []
    for key in keys:
        target = best[key]
        own += [match_rate(p, target, vocabulary) for p in sampled[key]]
        own_greedy.append(match_rate(greedy[key], target, vocabulary))
        chance.append(sum(train_words[w] for w in style_words(target, vocabulary)) / total_words)
        for group in groups_of[key[0]]:
            if group != key[1]:
                other += [match_rate(p, best[(key[0], group)], vocabulary) for p in sampled[key]]
    mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
    metrics = {
        "heldout_groups": len(keys),
        "style_match": mean(own),
        "style_match_greedy": mean(own_greedy),
        "style_match_chance": mean(chance),
        "style_match_other_group": mean(other),
    }
    if metrics["style_match"] is not None and metrics["style_match_chance"]:
        metrics["style_match_lift"] = round(metrics["style_match"] / metrics["style_match_chance"], 3)
    samples = [
        {"product_id": k[0], "group_id": k[1], "target": best[k], "greedy": greedy[k], "samples": sampled[k]}
        for k in keys[:100]
    ]
    return metrics, samples
