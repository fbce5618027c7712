"""The campaign job: `generate` (one shard of products) and `merge` (campaign.json, report, manifest)."""

from __future__ import annotations

from typing import Any

import numpy as np

from osmf_core.api import Role
from osmf_core.layout import Campaign, join, shard_file
from osmf_jobs.runtime import InvalidInput, JobContext

from .generate import generate
from .inputs import label, load_groups, resolve_products
from .report import REPORT_MAX_PRODUCTS, build_report, defining_attributes, image_reader, pipeline_stages


def read_shard_records(ctx: JobContext) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every shard's products (sorted) and how their images were selected (the same for every shard)."""
    records: list[dict[str, Any]] = []
    selection = None
    for index in range(ctx.shard_count):
        rel = shard_file(index, Campaign.SHARD_RECORDS)
        if not ctx.store.exists(rel):
            raise InvalidInput(f"shard {index} of {ctx.shard_count} wrote no records ({join(ctx.store.uri, rel)}); re-run the generate step")
        doc = ctx.store.read_json(rel)
        if doc.get("shards") != ctx.shard_count or doc.get("shard") != index:
            raise InvalidInput(f"{join(ctx.store.uri, rel)} is from a run with {doc.get('shards')} shards, not {ctx.shard_count}; re-run the generate step")
        records += doc["products"]
        selection = selection or doc.get("selection")
    return sorted(records, key=lambda r: r["product_id"]), selection


def campaign_metrics(products: list[dict[str, Any]], images_per_group: int) -> dict[str, float]:
    """Counts, where each group's image came from, and the scorer's view of the picks."""
    groups = [g for p in products for g in p["groups"]]
    metrics: dict[str, float] = {
        "products": len(products),
        "groups": len(groups),
        "images": len(groups) + len(products),  # served: one per group and the one-size
        "candidates": len(groups) * images_per_group,
        "groups_generated": sum(g["source"] == "generated" for g in groups),
        "groups_logged": sum(g["source"] == "logged" for g in groups),
    }
    if groups:
        gains = np.asarray([g["score"] - g["onesize_score"] for g in groups])
        metrics["mean_score"] = float(np.mean([g["score"] for g in groups]))
        metrics["mean_generated_score"] = float(np.mean([g["generated"]["score"] for g in groups]))
        logged = [g["logged"]["score"] for g in groups if g.get("logged")]
        if logged:
            metrics["mean_best_logged_score"] = float(np.mean(logged))
        metrics["onesize_mean_score"] = float(np.mean([p["onesize"]["score"] for p in products]))
        metrics["mean_score_gain"] = float(gains.mean())
        metrics["win_rate_vs_onesize"] = float(np.mean(gains > 0))
    return metrics


def merge(ctx: JobContext) -> None:
    spec = ctx.spec
    grouping = ctx.input_store(Role.GROUPING)
    data = ctx.input_store(Role.DATA)
    expected = resolve_products(list(spec.products), load_groups(grouping), label(ctx, Role.GROUPING))
    products, selection = read_shard_records(ctx)
    got = [p["product_id"] for p in products]
    if got != expected:
        missing = sorted(set(expected) - set(got)) or sorted(set(got) - set(expected))
        raise InvalidInput(f"the shards' records cover {len(got)} products, the campaign has {len(expected)} (e.g. {missing[0]!r} differs); re-run the generate step")
    inputs = {role: art.model_dump(mode="json", exclude_none=True) for role, art in sorted(ctx.config.inputs.items())}
    meta = ctx.config.metadata
    reward = ctx.config.inputs.get(Role.REWARD)
    campaign = {
        "apiVersion": ctx.config.api_version, "kind": ctx.config.kind, "name": meta.name, "namespace": meta.namespace,
        "inputHash": ctx.config.run.input_hash, "uri": ctx.store.uri,
        "grouping": inputs.get(Role.GROUPING),
        "generator": {"kind": spec.generator_ref.kind, "name": spec.generator_ref.name, "uri": inputs.get(Role.GENERATOR, {}).get("uri")},
        "reward": None if reward is None else {"name": spec.reward_model_ref.name if spec.reward_model_ref else reward.name, "uri": reward.uri},
        "imagesPerGroup": spec.images_per_group,
        "selection": (selection or {}) | {"includeLogged": spec.selection.include_logged},
        "rendering": spec.rendering.wire(),
        "products": products,
    }
    ctx.store.write_json(Campaign.CAMPAIGN_JSON, campaign)
    ctx.store.write_json(Campaign.SERVING_CAMPAIGN_JSON, campaign)
    metrics = campaign_metrics(products, spec.images_per_group)
    shown = [p["product_id"] for p in products[: REPORT_MAX_PRODUCTS]]
    profiles, note = defining_attributes(grouping, data, shown)
    page = build_report(campaign, metrics, pipeline_stages(inputs), profiles, note, image_reader(ctx.store))
    ctx.store.write_bytes(Campaign.REPORT_HTML, page.encode())
    ctx.progress(1, 1, metrics=metrics, force=True)
    ctx.write_manifest(metrics=metrics)


def main(ctx: JobContext) -> None:
    if ctx.step == "generate":
        generate(ctx)
    elif ctx.step == "merge":
        merge(ctx)
    else:  # JobConfig validation makes this unreachable; keep the message clear anyway
        raise InvalidInput(f"step {ctx.step!r} is not a campaign step; use generate or merge")
