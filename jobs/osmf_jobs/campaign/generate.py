"""The `generate` step: prompts, candidates, GRM choice and the one-size image for one shard's products.

Per product, one batched call to the generator writes `imagesPerGroup` prompts for each group
(conditioned on the group's representatives) and as many for the whole audience (conditioned on the
size-weighted mean of the groups' representatives). Every prompt is rendered around the cut-out.

Choice with a GRM: a group keeps its own candidate with the highest GRM score for that group. The
one-size image is, among the audience's candidates and the groups' kept images, the one with the
highest size-weighted mean GRM score over all the product's groups: the best single image for the
whole audience by the GRM's judgement, i.e. the strongest one-size baseline the campaign could have
served instead. (Scoring only those against every group, rather than every candidate, costs
G·n + (n + G)·G − G GRM calls instead of (G + 1)·n·G; on the demo's 5 groups × 3 candidates, 50 not 90.)

Choice without a GRM: a group keeps its first candidate; the one-size image is the first audience
candidate.

Seeds come from (rendering.seed, product id, …), so results do not depend on the number of shards
(which the input hash leaves out).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from osmf_jobs.runtime import InvalidInput, JobContext
from osmf_jobs.seeds import stable_seed
from osmf_core.api import Role
from osmf_core.layout import Campaign, join

from .inputs import (
    CatalogEntry,
    Group,
    absolute_uri,
    generator_stores,
    grouping_label,
    label,
    load_catalog,
    load_cutout,
    load_groups,
    resolve_products,
)

GRM_BATCH = 64  # images per GRM forward pass


@dataclass
class Candidate:
    prompt: str
    image: Any  # PIL image
    owner: int | None  # the group id it was written for; None = the whole audience
    n: int
    scores: list[float] | None = None  # the GRM's score for each of the product's groups, in group order


@dataclass
class ProductResult:
    entry: CatalogEntry
    groups: list[Group]
    candidates: list[Candidate]
    chosen: dict[int, int] = field(default_factory=dict)  # group id → index into candidates
    onesize: int = 0  # index into candidates


def audience_representatives(groups: list[Group]) -> np.ndarray:
    """The whole audience as one 'group': the size-weighted mean of the groups' representatives."""
    weights = np.asarray([max(g.size, 0) for g in groups], dtype=np.float64)
    if weights.sum() <= 0:
        weights = np.ones(len(groups))
    stacked = np.stack([g.representatives.astype(np.float64) for g in groups])
    return np.tensordot(weights / weights.sum(), stacked, axes=1).astype(np.float32)


def choose(result: ProductResult, with_scores: bool) -> None:
    """Fill result.chosen and result.onesize (see the module docstring).

    With scores, each group candidate needs its own group's score; audience candidates and the
    groups' picks need every group's (`Candidate.scores` is then complete, else None elsewhere).
    """
    cands = result.candidates
    group_ids = [g.group_id for g in result.groups]
    column = {gid: k for k, gid in enumerate(group_ids)}
    if not with_scores:
        for gid in group_ids:
            result.chosen[gid] = next(i for i, c in enumerate(cands) if c.owner == gid)
        result.onesize = next(i for i, c in enumerate(cands) if c.owner is None)
        return
    for gid in group_ids:
        own = [i for i, c in enumerate(cands) if c.owner == gid]
        result.chosen[gid] = max(own, key=lambda i: (cands[i].scores[column[gid]], -i))
    weights = np.asarray([max(g.size, 0) for g in result.groups], dtype=np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(group_ids), 1.0 / len(group_ids))
    pool = sorted({i for i, c in enumerate(cands) if c.owner is None} | set(result.chosen.values()))
    result.onesize = max(pool, key=lambda i: (float(np.dot(cands[i].scores, weights)), -i))


class CampaignGenerator:
    """The loaded generator (+ adapter), optional GRM and renderer; `run(product)` makes one product."""

    def __init__(self, spec: Any, policy: Any, grm: Any, renderer: Any):
        self.spec, self.policy, self.grm, self.renderer = spec, policy, grm, renderer

    @classmethod
    def load(cls, ctx: JobContext) -> "CampaignGenerator":
        from osmf_jobs.gmodel import GroupPolicy, RewardModel
        from osmf_jobs.gmodel.location import adapter_dir, gmodel_dir
        from osmf_jobs.gmodel.model import read_gmodel_info
        from osmf_jobs.render import make_renderer

        spec = ctx.spec
        ref = spec.generator_ref
        base, adapter = generator_stores(ctx)
        base_dir = gmodel_dir(base, f"generator {ref.kind}/{ref.name}", "it must be a pretrain GMLLMTraining run")
        role = read_gmodel_info(base_dir).get("role")
        if role != "policy":
            raise InvalidInput(f"generator {ref.kind}/{ref.name}: {base.uri} holds a {role} model; the generator must be a pretrain GMLLMTraining or a GroupDPORun")
        adapter_path = None
        if adapter is not None:
            adapter_path = adapter_dir(adapter, f"generator GroupDPORun/{ref.name}", "it must hold a GroupDPORun's LoRA adapter; re-run the GroupDPORun")
        policy = GroupPolicy.load(base_dir, adapter=adapter_path)
        if policy.device.type == "cpu":
            import torch

            # Many small forward passes: intra-op threads mostly spin-wait. On a busy 2-core machine
            # two threads made GRM scoring ~10x slower in wall and CPU time; use shards for the cores.
            torch.set_num_threads(1)
        grm = None
        if ctx.has_input(Role.REWARD):
            store = ctx.input_store(Role.REWARD)
            grm_dir = gmodel_dir(store, f"reward model {label(ctx, Role.REWARD)}", "it must be a reward GMLLMTraining run")
            try:
                grm = RewardModel.load(grm_dir)
            except ValueError as error:
                raise InvalidInput(f"reward model {label(ctx, Role.REWARD)}: {error}") from None
        elif spec.reward_model_ref is not None:
            raise InvalidInput(f"spec.rewardModelRef names {spec.reward_model_ref.name} but the job config has no 'reward' input; re-apply the campaign")
        return cls(spec, policy, grm, make_renderer(spec.rendering))

    def run(self, entry: CatalogEntry, cutout: Any, groups: list[Group]) -> ProductResult:
        from osmf_jobs.gmodel import PromptRequest

        spec = self.spec
        n = spec.images_per_group
        owners: list[int | None] = [g.group_id for g in groups] + [None]
        reps = [g.representatives for g in groups] + [audience_representatives(groups)]
        requests = [PromptRequest(r, entry.title, cutout) for r in reps]
        prompts = self.policy.generate_batch(
            requests, n=n, temperature=spec.generation.temperature,
            seed=stable_seed("prompts", spec.rendering.seed, entry.product_id),
            max_new_tokens=spec.generation.max_new_tokens,
        )
        flat = [(owner, i, text) for owner, rows in zip(owners, prompts) for i, text in enumerate(rows)]
        seeds = [stable_seed("render", spec.rendering.seed, entry.product_id, "all" if o is None else o, i) for o, i, _ in flat]
        images = self.renderer.render_batch(cutout, [t for _, _, t in flat], seeds)
        candidates = [Candidate(text, image, owner, i) for (owner, i, text), image in zip(flat, images)]
        result = ProductResult(entry, groups, candidates)
        if self.grm is not None:
            self.score(result)
        choose(result, with_scores=self.grm is not None)
        return result

    def score(self, result: ProductResult) -> None:
        """GRM scores: own group for group candidates, then every group for the one-size pool."""
        groups, cands = result.groups, result.candidates
        column = {g.group_id: k for k, g in enumerate(groups)}
        scores: dict[tuple[int, int], float] = {}

        def run(pairs: list[tuple[int, int]]) -> None:
            values = self.grm.score_batch([groups[k].representatives for _, k in pairs], [result.entry.title] * len(pairs),
                                          [cands[i].image for i, _ in pairs], batch_size=GRM_BATCH)
            scores.update({pair: float(v) for pair, v in zip(pairs, values)})

        run([(i, column[c.owner]) for i, c in enumerate(cands) if c.owner is not None])
        picks = {gid: max((i for i, c in enumerate(cands) if c.owner == gid), key=lambda i: (scores[(i, column[gid])], -i))
                 for gid in column}
        pool = sorted({i for i, c in enumerate(cands) if c.owner is None} | set(picks.values()))
        run([(i, k) for i in pool for k in range(len(groups)) if (i, k) not in scores])
        for i, cand in enumerate(cands):
            cand.scores = [scores.get((i, k), float("nan")) for k in range(len(groups))]


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_product(ctx: JobContext, result: ProductResult, data_uri_of: Any) -> dict[str, Any]:
    """Write every candidate and the one-size image; return the product's campaign.json record."""
    store = ctx.store
    pid = result.entry.product_id
    index_of = {g.group_id: k for k, g in enumerate(result.groups)}
    groups = []
    for group in result.groups:
        own = [(i, c) for i, c in enumerate(result.candidates) if c.owner == group.group_id]
        records = []
        for i, cand in own:
            rel = Campaign.group_image(pid, group.group_id, cand.n)
            store.write_bytes(rel, png_bytes(cand.image))
            records.append({"n": cand.n, "prompt": cand.prompt, "image": rel,
                            "score": None if cand.scores is None else cand.scores[index_of[group.group_id]]})
        best = result.candidates[result.chosen[group.group_id]]
        onesize = result.candidates[result.onesize]
        column = index_of[group.group_id]
        rel = Campaign.group_image(pid, group.group_id, best.n)
        groups.append({
            "group_id": group.group_id, "size": group.size, "prompt": best.prompt, "n": best.n,
            "image": rel, "image_uri": join(store.uri, rel),
            "score": None if best.scores is None else best.scores[column],
            "onesize_score": None if onesize.scores is None else onesize.scores[column],
            "candidates": records,
        })
    onesize = result.candidates[result.onesize]
    rel = Campaign.onesize_image(pid)
    store.write_bytes(rel, png_bytes(onesize.image))
    weights = np.asarray([max(g.size, 0) for g in result.groups], dtype=np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1.0 / len(weights))
    return {
        "product_id": pid, "title": result.entry.title,
        "cutout_uri": data_uri_of(result.entry.image_uri),
        "groups": groups,
        "onesize": {
            "prompt": onesize.prompt, "image": rel, "image_uri": join(store.uri, rel),
            "source": "audience" if onesize.owner is None else f"group {onesize.owner}",
            "score": None if onesize.scores is None else float(np.dot(onesize.scores, weights)),
        },
    }


def generate(ctx: JobContext) -> None:
    """Shard `ctx.shard_index` of `ctx.shard_count`: its products → images + shards/<i>/records.json."""
    spec = ctx.spec
    grouping = ctx.input_store(Role.GROUPING)
    data = ctx.input_store(Role.DATA)
    groups = load_groups(grouping)
    products = resolve_products(list(spec.products), groups, grouping_label(ctx))
    mine = ctx.my_products(products)
    catalog = load_catalog(data, mine)
    cutouts = {pid: load_cutout(data, catalog[pid]) for pid in mine}  # every image checked before any model loads
    ctx.progress(0, len(mine), force=True)
    generator = CampaignGenerator.load(ctx) if mine else None
    records, scores = [], []
    for done, pid in enumerate(mine, start=1):
        result = generator.run(catalog[pid], cutouts[pid], groups[pid])
        record = write_product(ctx, result, lambda uri: absolute_uri(data, uri))
        records.append(record)
        scores += [g["score"] for g in record["groups"] if g["score"] is not None]
        ctx.progress(done, len(mine), metrics={"products": done, **({"mean_grm_score": float(np.mean(scores))} if scores else {})})
    ctx.shard_store.write_json(Campaign.SHARD_RECORDS, {"shard": ctx.shard_index, "shards": ctx.shard_count, "products": records})
    ctx.progress(len(mine), len(mine), force=True)
