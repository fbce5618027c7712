"""GroupDPORun step `train`: rounds of sample → render → score → DPO on a LoRA adapter, then the
held-out comparison of the final policy against the initial one, judged by the same reward.

The reward is `spec.dpo.reward` (`osmf_jobs.scoring`): the grouping's preference model (a group's
expected CTR for the rendered image) or the GRM; `auto` takes the one with the higher held-out
pairwise accuracy. The DPO step of each round is trl's DPOTrainer (`trainer.py`)."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from osmf_core.layout import CHECKPOINTS, METRICS, GroupDPO
from osmf_jobs.runtime import InvalidInput, JobContext

from .inputs import resolve_inputs

SAMPLE_CHUNK = 8  # (product, group) requests per generate call
EVAL_MAX_GROUPS = 512  # held-out groups in the final comparison
EVAL_SEED_OFFSET = 7_919


@dataclass
class Pair:
    key: tuple[str, int]
    chosen: list[int]  # token ids of the chosen prompt (ending with </s> when the sample did)
    rejected: list[int]
    reference_chosen: float  # summed log-prob under the frozen pre-trained policy
    reference_rejected: float
    score_margin: float  # reward of chosen minus rejected


def lora_target_pattern(modules: list[str]) -> str:
    """LoRA only on the language model (the CLIP tower has q_proj/v_proj too)."""
    names = "|".join(re.escape(m) for m in modules)
    return rf".*language_model.*\.({names})"


def ranked_pairs(texts: list[str], scores: list[float], limit: int) -> list[tuple[int, int]]:
    """Up to `limit` disjoint (better, worse) sample indices: the distinct prompts ranked by score,
    the best paired with the worst, the second best with the second worst, and so on. Repeated
    prompts count once (they carry no preference between them); equal scores make no pair.
    Every sample at most once, so the extra pairs of a round cost no extra sampling or rendering."""
    first = {}
    for index, text in enumerate(texts):
        first.setdefault(text, index)
    ranked = sorted(first.values(), key=lambda i: (-scores[i], i))
    pairs = [(ranked[k], ranked[-1 - k]) for k in range(len(ranked) // 2)]
    return [(b, w) for b, w in pairs if scores[b] > scores[w]][:limit]


def stable_seed(*parts: Any) -> int:
    """A sampling or render seed in [0, 2^31) from the parts (`seeds.stable_seed` spreads the bits
    differently; this one keeps the seeds earlier Group-DPO runs used)."""
    from osmf_jobs.seeds import stable_unit

    return int(stable_unit(*parts) * 2**31)


def main(ctx: JobContext, scorer_factory: Any = None) -> None:
    """`scorer_factory(spec.dpo.reward, grouping, reward, scratch, field, device) -> (scorer, record)`
    defaults to `osmf_jobs.scoring.make_scorer`; evaluation harnesses pass another (an oracle reward)."""
    inputs = resolve_inputs(ctx)  # cheap checks before torch is imported

    import torch

    from osmf_jobs.gmodel.data import load_gaip
    from osmf_jobs.gmodel.location import gmodel_dir
    from osmf_jobs.gmodel.model import load_gmodel
    from osmf_jobs.gmodel.training.checkpoint import Checkpointer
    from osmf_jobs.gmodel.training.device import barrier, quiet_transformers, seed_everything, setup_device
    from osmf_jobs.render import make_renderer

    quiet_transformers()
    spec, dpo = ctx.spec, ctx.spec.dpo
    device = setup_device(ctx.dist, dpo.precision, dpo.collective_timeout_seconds)
    seed_everything(dpo.seed, device)
    data = load_gaip(inputs.dataset, inputs.grouping, inputs.data, need_pairs=False)
    from osmf_jobs.gmodel.data import eval_subset

    train_keys = data.group_keys(train=True)
    eval_keys = eval_subset(data.group_keys(train=False), EVAL_MAX_GROUPS, key=lambda k: k)
    if not train_keys:
        raise InvalidInput(f"GAIP dataset {inputs.dataset.uri} has no training products; check the GAIPDataset's split")
    # Frozen weights in the compute precision on GPU; the LoRA weights stay fp32 (peft's default).
    base_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(device.precision, torch.float32)
    model, processor, info = load_gmodel(gmodel_dir(inputs.policy, "spec.policyRef"), reward_head=False, dtype=base_dtype, device=device.device)
    if scorer_factory is None:
        from osmf_jobs.scoring import make_scorer as scorer_factory
    scorer, reward_choice = scorer_factory(dpo.reward, inputs.grouping, inputs.reward, "spec.dpo.reward", device.device)
    judges = [("spec.policyRef", model)] + ([("spec.rewardModelRef", scorer.grm.model)] if hasattr(scorer, "grm") else [])
    for name, gm in judges:
        if (gm.n_vectors, gm.group_dim) != (data.n_vectors, data.group_dim):
            raise InvalidInput(
                f"{name}: the model reads {gm.n_vectors}×{gm.group_dim} group vectors but the dataset's grouping has "
                f"{data.n_vectors}×{data.group_dim}; use models trained on this AudienceGrouping"
            )
    renderer = make_renderer(spec.rendering, device=device.device)
    peft_model = attach_lora(model, spec.lora, dpo.seed)
    if dpo.gradient_checkpointing:
        from osmf_jobs.gmodel.loading import enable_gradient_checkpointing

        enable_gradient_checkpointing(model.mllm)

    job = GroupDPOJob(ctx, inputs, data, model, processor, peft_model, scorer, renderer, device)
    checkpointer = Checkpointer(ctx.store)
    found = checkpointer.load()
    rounds: list[dict[str, Any]] = []
    start_round = 0
    if found is not None:
        from osmf_jobs.gmodel.training.checkpoint import load_trainable_state, set_rng_state

        start_round, state = found
        load_trainable_state(model, state["lora"])
        set_rng_state(state["rng"])
        rounds = state["rounds"]
        print(f"osmf: resuming after round {start_round} of {dpo.rounds}", file=sys.stderr, flush=True)
    started = time.monotonic()
    job.progress.start_step = start_round * job.units_per_round
    for round_index in range(start_round, dpo.rounds):
        rounds.append(job.run_round(round_index, train_keys))
        if device.is_main and round_index + 1 < dpo.rounds:
            from osmf_jobs.gmodel.training.checkpoint import rng_state, trainable_state

            checkpointer.save(round_index + 1, {"lora": trainable_state(model), "rng": rng_state(), "rounds": rounds})
        barrier(device)
    train_seconds = time.monotonic() - started
    final = job.evaluate(eval_keys)
    metrics: dict[str, Any] = {
        "rounds": dpo.rounds, "resumed_after_round": start_round, "train_groups": len(train_keys),
        "heldout_groups": len(eval_keys), "beta": dpo.beta, "samples_per_group": dpo.samples_per_group,
        "pairs_per_group": job.pairs_per_group,
        "train_seconds": round(train_seconds, 2), "precision": device.precision, "world_size": device.world_size,
        "lora_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        # The judge's own held-out accuracy: a judged win rate means little when this is ~0.5.
        "reward": reward_choice.get("used"),
        "reward_pairwise_accuracy": reward_choice.get("heldout_pairwise_accuracy", {}).get(reward_choice.get("used")),
        "reward_margin_per_round": [r["reward_margin"] for r in rounds],
        "reward_mean_score_per_round": [r["reward_mean_score"] for r in rounds],
    } | final["metrics"]
    if device.is_main:
        job.publish(rounds, final["samples"], metrics)
    barrier(device)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def attach_lora(model: Any, lora: Any, seed: int) -> Any:
    """Inject LoRA into the policy's language model in place; everything else is frozen."""
    import torch
    from peft import LoraConfig, get_peft_model

    model.requires_grad_(False)
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora_target_pattern(list(lora.target_modules)), bias="none",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            peft_model = get_peft_model(model.mllm, config)
        except ValueError as error:
            raise InvalidInput(
                f"lora.targetModules {list(lora.target_modules)} match no module of the policy's language model "
                f"({' '.join(str(error).split())[:160]}); use names such as q_proj, v_proj"
            ) from None
    return peft_model


class GroupDPOJob:
    """One run's state: the policy (LoRA on), the frozen reward and renderer, and the data."""

    def __init__(self, ctx: Any, inputs: Any, data: Any, model: Any, processor: Any, peft_model: Any, scorer: Any, renderer: Any, device: Any):
        from osmf_jobs.gmodel.training.progress import ProgressReporter

        self.ctx, self.inputs, self.data = ctx, inputs, data
        self.model, self.processor, self.peft_model = model, processor, peft_model
        self.scorer, self.renderer, self.device = scorer, renderer, device
        self.dpo, self.rendering = ctx.spec.dpo, ctx.spec.rendering
        self.tokenizer = processor.tokenizer
        n_train = len(data.group_keys(train=True))
        # Progress units per round: one per sampled (product, group), then the DPO steps (bounded
        # by the steps of pairsPerGroup pairs for every group).
        self.sample_units = n_train
        self.pairs_per_group = self.dpo.pairs_per_group or self.dpo.samples_per_group // 2
        per_rank = -(-n_train * self.pairs_per_group // device.world_size)
        self.max_steps = self.dpo.epochs * -(-per_rank // self.dpo.batch_size)
        self.units_per_round = self.sample_units + self.max_steps
        self.progress = ProgressReporter(ctx, 0)

    # ---- pieces ------------------------------------------------------------------------------

    def requests(self, keys: list[tuple[str, int]]) -> list[Any]:
        from osmf_jobs.gmodel.inference import PromptRequest

        return [PromptRequest(self.data.representatives[k], self.data.titles[k[0]], self.data.image(self.data.product_images[k[0]])) for k in keys]

    def sample(self, keys: list[tuple[str, int]], seed: int, adapter: bool = True) -> list[list[list[int]]]:
        """dpo.samplesPerGroup prompts (token ids) per key at dpo.temperature."""
        import contextlib

        from osmf_jobs.gmodel.inference import prompt_batch, sample_answers

        self.model.eval()
        out = []
        for start in range(0, len(keys), SAMPLE_CHUNK):
            chunk = keys[start : start + SAMPLE_CHUNK]
            batch = prompt_batch(self.model, self.processor, self.requests(chunk)).to(self.device.device)
            with (contextlib.nullcontext() if adapter else self.peft_model.disable_adapter()), self.device.autocast():
                out += sample_answers(self.model, batch, self.dpo.samples_per_group, self.dpo.temperature, seed + start,
                                      self.dpo.max_new_tokens, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        return out

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def score(self, keys: list[tuple[str, int]], prompts: list[list[str]], round_seed: int) -> list[list[float]]:
        """Render every prompt around its product (one render seed per key, so only the prompt
        differs between a key's candidates) and score it with the reward."""
        reps, titles, images = [], [], []
        for key, texts in zip(keys, prompts):
            product = self.data.image(self.data.product_images[key[0]])
            seed = stable_seed(self.rendering.seed, "render", key[0], key[1], round_seed)
            images += self.renderer.render_batch(product, texts, [seed] * len(texts))
            reps += [self.data.representatives[key]] * len(texts)
            titles += [self.data.titles[key[0]]] * len(texts)
        with self.device.autocast():
            flat = self.scorer.score_batch(reps, titles, images)
        n = len(prompts[0]) if prompts else 0
        return [flat[i * n : (i + 1) * n] for i in range(len(keys))]

    def answers_batch(self, keys: list[tuple[str, int]], answers: list[list[int]]) -> Any:
        """(group tokens, product image, prompt instruction) rows, each followed by its answer (token ids)."""
        from osmf_jobs.gmodel.batching import assemble, encode_prompts
        from osmf_jobs.gmodel.text import instruction

        requests = self.requests(keys)
        ids, vision = encode_prompts(self.processor, [r.product_image for r in requests], [instruction("prompt", title=r.product_title) for r in requests])
        return assemble(ids, [r.representatives for r in requests], vision, self.tokenizer.pad_token_id, self.model.n_tokens, answers)

    def logprobs(self, module: Any, keys: list[tuple[str, int]], answers: list[list[int]]) -> Any:
        """Summed log-probability of each answer (token ids) given its key's group, product and instruction."""
        from osmf_jobs.gmodel.batching import answer_logprobs

        batch = self.answers_batch(keys, answers).to(self.device.device)
        logits = module(**batch.model_inputs(), logits_to_keep=batch.answer_len + 1)
        return answer_logprobs(logits, batch)[0]

    def reference_logprobs(self, keys: list[tuple[str, int]], answers: list[list[int]]) -> list[float]:
        import torch

        self.model.eval()
        out: list[float] = []
        with torch.no_grad(), self.peft_model.disable_adapter(), self.device.autocast():
            for start in range(0, len(keys), SAMPLE_CHUNK):
                out += self.logprobs(self.model, keys[start : start + SAMPLE_CHUNK], answers[start : start + SAMPLE_CHUNK]).float().tolist()
        return out

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's items, in rank order (a no-op for one process)."""
        if self.device.world_size == 1:
            return items
        import torch

        parts: list[Any] = [None] * self.device.world_size
        torch.distributed.all_gather_object(parts, items)
        return [item for part in parts for item in part]

    # ---- one round ---------------------------------------------------------------------------

    def run_round(self, round_index: int, train_keys: list[tuple[str, int]]) -> dict[str, Any]:
        import numpy as np


        dev = self.device
        keys = train_keys[dev.rank :: dev.world_size]
        base = round_index * self.units_per_round
        samples = self.sample(keys, seed=stable_seed(self.dpo.seed, "sample", round_index))
        texts = [[self.decode(ids) for ids in rows] for rows in samples]
        scores = self.score(keys, texts, round_index)
        self.progress(base + self.sample_units, (self.dpo.rounds) * self.units_per_round, 0.0, 0.0, {"round": round_index + 1})
        local: list[Pair] = []
        all_scores: list[float] = []
        for key, rows, row_texts, row_scores in zip(keys, samples, texts, scores):
            all_scores += row_scores
            for better, worse in ranked_pairs(row_texts, row_scores, self.pairs_per_group):
                local.append(Pair(key, rows[better], rows[worse], 0.0, 0.0, row_scores[better] - row_scores[worse]))
        if local:
            ref_chosen = self.reference_logprobs([p.key for p in local], [p.chosen for p in local])
            ref_rejected = self.reference_logprobs([p.key for p in local], [p.rejected for p in local])
            for pair, rc, rr in zip(local, ref_chosen, ref_rejected):
                pair.reference_chosen, pair.reference_rejected = rc, rr
        pairs = self.gather(local)
        all_scores = self.gather(all_scores)
        distinct = self.gather([len(set(t)) / len(t) for t in texts if t])
        stats_log: list[dict[str, float]] = []
        if pairs:
            from .trainer import dpo_config, train_round

            def on_step(step: int, loss: float, stats: dict) -> None:
                self.progress(base + self.sample_units + step, self.dpo.rounds * self.units_per_round, loss, self.dpo.learning_rate, {"round": round_index + 1})

            rows = [{"pair": i, "chosen_ids": p.chosen, "rejected_ids": p.rejected, "ref_chosen_logps": p.reference_chosen,
                     "ref_rejected_logps": p.reference_rejected} for i, p in enumerate(pairs)]
            config = dpo_config(self.dpo, self.dpo.seed + round_index, str(self.ctx.scratch / "trl"), dev)
            self.model.train()
            stats_log = train_round(self.model, self.tokenizer, rows, lambda indices, answers: self.answers_batch([pairs[i].key for i in indices], answers),
                                    config, on_step)
        self.progress(base + self.units_per_round, self.dpo.rounds * self.units_per_round,
                      stats_log[-1]["loss"] if stats_log else 0.0, self.dpo.learning_rate, {"round": round_index + 1})
        mean = lambda xs: round(float(np.mean(xs)), 5) if xs else None  # noqa: E731
        return {
            "round": round_index + 1,
            "pairs": len(pairs),
            "reward_mean_score": mean(all_scores),
            "reward_margin": mean([p.score_margin for p in pairs]),
            "distinct_prompt_share": mean(distinct),
            "dpo_loss_first": stats_log[0]["loss"] if stats_log else None,
            "dpo_loss_last": stats_log[-1]["loss"] if stats_log else None,
            "implicit_accuracy_last": stats_log[-1].get("implicit_accuracy") if stats_log else None,
        }

    # ---- held-out evaluation -----------------------------------------------------------------

    def evaluate(self, eval_keys: list[tuple[str, int]]) -> dict[str, Any]:
        """Win rate of the final policy over the initial one (adapter off), judged by the reward on
        held-out products, and the KL of the final policy to the reference on its own samples."""
        import numpy as np
        import torch

        keys = eval_keys[self.device.rank :: self.device.world_size]
        seed = stable_seed(self.dpo.seed, "eval", EVAL_SEED_OFFSET)
        initial = self.sample(keys, seed, adapter=False)
        final = self.sample(keys, seed, adapter=True)
        initial_texts = [[self.decode(ids) for ids in rows] for rows in initial]
        final_texts = [[self.decode(ids) for ids in rows] for rows in final]
        round_seed = -1  # the same render seed per key for both policies
        initial_scores = self.score(keys, initial_texts, round_seed)
        final_scores = self.score(keys, final_texts, round_seed)
        wins, kls = [], []
        for a, b in zip(final_scores, initial_scores):
            wins += [1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b)]
        flat_keys = [k for k, rows in zip(keys, final) for _ in rows]
        flat_final = [ids for rows in final for ids in rows]
        self.model.eval()
        with torch.no_grad(), self.device.autocast():
            for start in range(0, len(flat_keys), SAMPLE_CHUNK):
                part_keys, part_ids = flat_keys[start : start + SAMPLE_CHUNK], flat_final[start : start + SAMPLE_CHUNK]
                policy = self.logprobs(self.model, part_keys, part_ids).float()
                with self.peft_model.disable_adapter():
                    reference = self.logprobs(self.model, part_keys, part_ids).float()
                kls += (policy - reference).tolist()
        wins, kls = self.gather(wins), self.gather(kls)
        initial_flat = self.gather([s for row in initial_scores for s in row])
        final_flat = self.gather([s for row in final_scores for s in row])
        samples = self.gather([
            {"product_id": k[0], "group_id": k[1], "initial": it, "final": ft, "initial_scores": [round(s, 4) for s in isc], "final_scores": [round(s, 4) for s in fsc]}
            for k, it, ft, isc, fsc in zip(keys, initial_texts, final_texts, initial_scores, final_scores)
        ])
        mean = lambda xs: round(float(np.mean(xs)), 4) if xs else None  # noqa: E731
        decided = [w for w in wins if w != 0.5]
        return {"metrics": {
            "win_rate_vs_initial": mean(wins),
            "heldout_comparisons": len(wins),
            # With shared seeds an unchanged sample ties: the win rate among the rest says which way
            # the changed samples went, and the counts give its sampling error.
            "heldout_wins": int(sum(decided)),
            "heldout_losses": len(decided) - int(sum(decided)),
            "win_rate_decided": mean(decided),
            "reward_mean_score_initial": mean(initial_flat),
            "reward_mean_score_final": mean(final_flat),
            "kl_to_reference": mean(kls),
        }, "samples": samples}

    # ---- outputs -----------------------------------------------------------------------------

    def publish(self, rounds: list[dict[str, Any]], samples: list[dict[str, Any]], metrics: dict[str, Any]) -> None:
        import shutil


        store = self.ctx.store
        local = store.local_path(GroupDPO.ADAPTER_DIR)
        target = local if local is not None else self.ctx.scratch / GroupDPO.ADAPTER_DIR
        if target.exists():
            shutil.rmtree(target)
        self.peft_model.save_pretrained(str(target))
        if local is None:
            store.upload(target, GroupDPO.ADAPTER_DIR)
        store.write_json(GroupDPO.POLICY_REF, {
            "policy": {"uri": self.inputs.policy.uri, "digest": self.inputs.policy_digest},
            "reward": {"uri": self.inputs.reward.uri, "digest": self.inputs.reward_digest, "used": metrics.get("reward")},
            "adapter": GroupDPO.ADAPTER_DIR,
            "load": "osmf_jobs.gmodel.GroupPolicy.load(<policy uri>, adapter=<this run>)",
        })
        store.write_json(GroupDPO.EVAL_ROUNDS, rounds)
        store.write_json(GroupDPO.EVAL_SAMPLES, samples[:100])
        store.write_json(METRICS, metrics)
        self.ctx.write_manifest(metrics, discard=() if self.dpo.keep_checkpoints else (CHECKPOINTS,))
