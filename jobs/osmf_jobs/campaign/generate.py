"""The `generate` step: prompts, candidates, the scorer's choice and the one-size image for one shard's products.

Per product, one batched call to the generator writes `imagesPerGroup` prompts for each group
(conditioned on the group's representatives) and as many for the whole audience (conditioned on the
size-weighted mean of the groups' representatives). Every prompt is rendered around the cut-out.

Candidates of a group: its own generated images and, with `selection.includeLogged` (the default),
the product's logged creatives — the images the campaign must never do worse than. One scorer
(`selection.scorer`, see `osmf_jobs.scoring`) rates every candidate for the group; the group keeps
the best (a tie keeps the logged creative, the proven one). The group's best generated image is
recorded beside it, so a generated-only campaign can be reported too.

The one-size image is, among the audience's candidates, the groups' picks and the logged creatives,
the one with the highest size-weighted mean score over the product's groups: the best single image
by the scorer's judgement. Each (candidate, group) is scored at most once: a group's own candidates
and every logged creative for every group first, then the one-size pool for the groups it lacks.

Seeds come from (rendering.seed, product id, …), so results do not depend on the number of shards
(which the input hash leaves out).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from osmf_core.api import Role
from osmf_core.layout import Campaign, join
from osmf_jobs.runtime import InvalidInput, JobContext
from osmf_jobs.seeds import stable_seed

from .inputs import (
    CatalogEntry,
    Group,
    LoggedCreative,
    absolute_uri,
    generator_stores,
    label,
    load_catalog,
    load_cutout,
    load_groups,
    load_logged,
    resolve_products,
)

GENERATED, LOGGED = "generated", "logged"


@dataclass
class Candidate:
    image: Any  # PIL image
    source: str  # generated | logged
    owner: int | None = None  # generated: the group id it was written for; None = the whole audience
    n: int = 0  # generated: its index among its owner's prompts
    prompt: str | None = None
    image_id: str | None = None  # logged: the creative's image_id
    image_uri: str | None = None  # logged: where the data root keeps it
    scores: dict[int, float] = field(default_factory=dict)  # group id → score


@dataclass
class ProductResult:
    entry: CatalogEntry
    groups: list[Group]
    candidates: list[Candidate]
    chosen: dict[int, int] = field(default_factory=dict)  # group id → index into candidates
    best_generated: dict[int, int] = field(default_factory=dict)
    best_logged: dict[int, int] = field(default_factory=dict)
    onesize: int = 0


def audience_representatives(groups: list[Group]) -> np.ndarray:
    """The whole audience as one 'group': the size-weighted mean of the groups' representatives."""
    return np.tensordot(size_weights(groups), np.stack([g.representatives.astype(np.float64) for g in groups]), axes=1).astype(np.float32)


def size_weights(groups: list[Group]) -> np.ndarray:
    weights = np.asarray([max(g.size, 0) for g in groups], dtype=np.float64)
    return weights / weights.sum() if weights.sum() > 0 else np.full(len(groups), 1.0 / len(groups))


def best(indices: list[int], candidates: list[Candidate], group_id: int) -> int:
    """The highest-scoring candidate for the group; among equal scores a logged one, then the first."""
    return max(indices, key=lambda i: (candidates[i].scores[group_id], candidates[i].source == LOGGED, -i))


class CampaignGenerator:
    """The loaded generator (+ adapter), scorer and renderer; `run(product)` makes one product."""

    def __init__(self, spec: Any, policy: Any, scorer: Any, selection: dict[str, Any], renderer: Any):
        self.spec, self.policy, self.scorer, self.selection, self.renderer = spec, policy, scorer, selection, renderer

    @classmethod
    def load(cls, ctx: JobContext) -> "CampaignGenerator":
        from osmf_jobs.gmodel import GroupPolicy
        from osmf_jobs.gmodel.location import adapter_dir, gmodel_dir
        from osmf_jobs.gmodel.model import read_gmodel_info
        from osmf_jobs.render import make_renderer
        from osmf_jobs.scoring import make_scorer

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
        if spec.reward_model_ref is not None and not ctx.has_input(Role.REWARD):
            raise InvalidInput(f"spec.rewardModelRef names {spec.reward_model_ref.name} but the job config has no 'reward' input; re-apply the campaign")
        reward = ctx.input_store(Role.REWARD) if ctx.has_input(Role.REWARD) else None
        scorer, selection = make_scorer(spec.selection.scorer, ctx.input_store(Role.GROUPING), reward,
                                        "spec.selection.scorer", device=policy.device)
        return cls(spec, policy, scorer, selection, make_renderer(spec.rendering))

    def run(self, entry: CatalogEntry, cutout: Any, groups: list[Group], logged: list[LoggedCreative]) -> ProductResult:
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
        candidates = [Candidate(image, GENERATED, owner, i, text) for (owner, i, text), image in zip(flat, images)]
        if spec.selection.include_logged:
            candidates += [Candidate(c.image, LOGGED, image_id=c.image_id, image_uri=c.image_uri) for c in logged]
        result = ProductResult(entry, groups, candidates)
        self.choose(result)
        return result

    def score(self, result: ProductResult, pairs: list[tuple[int, int]]) -> None:
        """Score (candidate index, group id) pairs the candidates lack, in one call."""
        by_id = {g.group_id: g for g in result.groups}
        todo = [(i, g) for i, g in dict.fromkeys(pairs) if g not in result.candidates[i].scores]
        values = self.scorer.score_batch([by_id[g].representatives for _, g in todo], [result.entry.title] * len(todo),
                                         [result.candidates[i].image for i, _ in todo])
        for (i, g), value in zip(todo, values):
            result.candidates[i].scores[g] = float(value)

    def choose(self, result: ProductResult) -> None:
        """Fill the picks: per group the best of its own and the logged candidates, and the one-size image."""
        cands = result.candidates
        group_ids = [g.group_id for g in result.groups]
        logged = [i for i, c in enumerate(cands) if c.source == LOGGED]
        own = {gid: [i for i, c in enumerate(cands) if c.source == GENERATED and c.owner == gid] for gid in group_ids}
        self.score(result, [(i, gid) for gid in group_ids for i in own[gid] + logged])
        for gid in group_ids:
            result.best_generated[gid] = best(own[gid], cands, gid)
            if logged:
                result.best_logged[gid] = best(logged, cands, gid)
            result.chosen[gid] = best(own[gid] + logged, cands, gid)
        pool = sorted({i for i, c in enumerate(cands) if c.source == GENERATED and c.owner is None} | set(result.chosen.values()) | set(logged))
        self.score(result, [(i, gid) for i in pool for gid in group_ids])
        weights = size_weights(result.groups)
        result.onesize = max(pool, key=lambda i: (float(np.dot([cands[i].scores[g] for g in group_ids], weights)), -i))


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class ProductWriter:
    """Writes one product's images into the run (each image once) and returns its campaign.json record."""

    def __init__(self, ctx: JobContext, result: ProductResult):
        self.store, self.result = ctx.store, result
        self.written: dict[int, str] = {}  # candidate index → run-relative path

    def path(self, index: int) -> str:
        if index not in self.written:
            cand, pid = self.result.candidates[index], self.result.entry.product_id
            if cand.source == LOGGED:
                rel = Campaign.logged_image(pid, cand.image_id)
            elif cand.owner is None:
                rel = Campaign.audience_image(pid, cand.n)
            else:
                rel = Campaign.group_image(pid, cand.owner, cand.n)
            self.store.write_bytes(rel, png_bytes(cand.image))
            self.written[index] = rel
        return self.written[index]

    def image(self, index: int, group_id: int | None) -> dict[str, Any]:
        """The record of one image: where it is, where it came from, its score for the group."""
        cand = self.result.candidates[index]
        rel = self.path(index)
        record: dict[str, Any] = {"source": cand.source, "image": rel, "image_uri": join(self.store.uri, rel)}
        if cand.source == GENERATED:
            record |= {"prompt": cand.prompt, "n": cand.n}
        else:
            record |= {"prompt": None, "image_id": cand.image_id, "logged_uri": cand.image_uri}
        if group_id is not None:
            record["score"] = cand.scores.get(group_id)
        return record

    def record(self, data_uri_of: Any) -> dict[str, Any]:
        result = self.result
        pid = result.entry.product_id
        onesize = result.candidates[result.onesize]
        groups = []
        for group in result.groups:
            gid = group.group_id
            own = [i for i, c in enumerate(result.candidates) if c.source == GENERATED and c.owner == gid]
            groups.append({
                "group_id": gid, "size": group.size,
                **self.image(result.chosen[gid], gid),
                "onesize_score": onesize.scores.get(gid),
                "generated": self.image(result.best_generated[gid], gid),
                "logged": self.image(result.best_logged[gid], gid) if gid in result.best_logged else None,
                "candidates": [self.image(i, gid) for i in own],
            })
        weights = size_weights(result.groups)
        return {
            "product_id": pid, "title": result.entry.title,
            "cutout_uri": data_uri_of(result.entry.image_uri),
            "groups": groups,
            "onesize": {
                **self.image(result.onesize, None),
                "owner": "audience" if onesize.source == GENERATED and onesize.owner is None else (
                    f"group {onesize.owner}" if onesize.source == GENERATED else LOGGED),
                "score": float(np.dot([onesize.scores[g.group_id] for g in result.groups], weights)),
            },
        }


def generate(ctx: JobContext) -> None:
    """Shard `ctx.shard_index` of `ctx.shard_count`: its products → images + shards/<i>/records.json."""
    spec = ctx.spec
    grouping = ctx.input_store(Role.GROUPING)
    data = ctx.input_store(Role.DATA)
    groups = load_groups(grouping)
    products = resolve_products(list(spec.products), groups, label(ctx, Role.GROUPING))
    mine = ctx.my_products(products)
    catalog = load_catalog(data, mine)
    cutouts = {pid: load_cutout(data, catalog[pid]) for pid in mine}  # every image checked before any model loads
    logged = load_logged(data, mine) if spec.selection.include_logged else {pid: [] for pid in mine}
    ctx.progress(0, len(mine), force=True)
    generator = CampaignGenerator.load(ctx) if mine else None
    records, scores = [], []
    for done, pid in enumerate(mine, start=1):
        result = generator.run(catalog[pid], cutouts[pid], groups[pid], logged[pid])
        record = ProductWriter(ctx, result).record(lambda uri: absolute_uri(data, uri))
        records.append(record)
        scores += [g["score"] for g in record["groups"]]
        ctx.progress(done, len(mine), metrics={"products": done, "mean_score": float(np.mean(scores))})
    ctx.shard_store.write_json(Campaign.SHARD_RECORDS, {
        "shard": ctx.shard_index, "shards": ctx.shard_count, "products": records,
        "selection": generator.selection if generator else None,
    })
    ctx.progress(len(mine), len(mine), force=True)
