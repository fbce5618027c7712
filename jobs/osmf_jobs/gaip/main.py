"""The GAIPDataset job: `aggregate` (one shard of products) and `merge`."""

from __future__ import annotations

from typing import Any

import numpy as np

from osmf_core.api import Role
from osmf_core.layout import METRICS, SHARD_DONE, GAIP, Dataset, Grouping, join
from osmf_jobs import metrics as M
from osmf_jobs import tables as TB
from osmf_jobs.runtime import InvalidInput, JobContext
from osmf_jobs.seeds import stable_unit

USE_SUCCEEDED = "use a Succeeded AudienceGrouping"


def main(ctx: JobContext) -> None:
    {"aggregate": aggregate, "merge": merge}[ctx.step](ctx)


def product_split(product_id: str, eval_fraction: float, seed: int) -> str:
    """train/eval by a hash of (seed, product): the same wherever and in whatever shard it runs."""
    return GAIP.EVAL if stable_unit(seed, product_id) < eval_fraction else GAIP.TRAIN


def _pairs(kept: Any, low: float, high: float) -> Any:
    """Preference pairs of the same (product, group): chosen/rejected CTR ratio within [low, high]."""
    import pandas as pd

    cols = ["product_id", "group_id", "image_id", "ctr", "impressions", "split"]
    left = kept[cols].rename(columns={"image_id": "chosen_image_id", "ctr": "chosen_ctr", "impressions": "chosen_impressions"})
    right = kept[cols[:5]].rename(columns={"image_id": "rejected_image_id", "ctr": "rejected_ctr", "impressions": "rejected_impressions"})
    both = left.merge(right, on=["product_id", "group_id"])
    both = both[(both["rejected_ctr"] > 0) & (both["chosen_ctr"] > both["rejected_ctr"])]
    both = both.assign(ctr_ratio=both["chosen_ctr"] / both["rejected_ctr"])
    both = both[(both["ctr_ratio"] >= low) & (both["ctr_ratio"] <= high)]
    if both.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(GAIP.PAIR_COLUMNS, ["object", "int64", "object", "object", "float64", "float64", "int64", "int64", "float64", "object"])})
    return both[list(GAIP.PAIR_COLUMNS)].sort_values(["product_id", "group_id", "chosen_image_id", "rejected_image_id"]).reset_index(drop=True)


def aggregate(ctx: JobContext) -> None:

    from osmf_jobs.caption import make_captioner

    spec = ctx.spec
    grouping, data = ctx.input_store(Role.GROUPING), ctx.input_store(Role.DATA)
    label = f"AudienceGrouping {spec.grouping_ref.name!r}"
    groups = TB.read_parquet(grouping, GAIP.GROUPS, ["product_id", "group_id", "centroid"], label, USE_SUCCEEDED)
    mine = ctx.my_products(list(groups["product_id"].astype(str).unique()))
    assignments = TB.read_parquet(grouping, Grouping.ASSIGNMENTS, ["product_id", "user_id", "group_id"], label, USE_SUCCEEDED)
    assignments = assignments[assignments["product_id"].isin(set(mine))]
    impressions = TB.read_table(data, Dataset.IMPRESSIONS, Dataset.SCHEMAS[Dataset.IMPRESSIONS])
    products = TB.read_table(data, Dataset.PRODUCTS, {"product_id": TB.STRING, "title": TB.STRING})
    images = TB.read_table(data, Dataset.IMAGES, Dataset.SCHEMAS[Dataset.IMAGES])
    impressions = impressions[impressions["product_id"].isin(set(mine))]
    joined = impressions.merge(assignments, on=["product_id", "user_id"], how="left")
    unassigned = int(joined["group_id"].isna().sum())
    joined = joined.dropna(subset=["group_id"]).astype({"group_id": "int64", "clicked": "int64"})
    ctx.progress(1, 3, force=True)

    agg = joined.groupby(["product_id", "group_id", "image_id"], sort=True).agg(
        impressions=("clicked", "size"), clicks=("clicked", "sum")).reset_index()
    agg["ctr"] = agg["clicks"] / agg["impressions"]
    kept = agg[agg["impressions"] >= spec.min_impressions].copy()
    max_impressions = int(agg["impressions"].max()) if len(agg) else 0

    kept = kept.merge(images[["image_id", "image_uri"]], on="image_id", how="left")
    missing = kept["image_uri"].isna()
    if missing.any():
        raise InvalidInput(f"table 'impressions': image_id {kept['image_id'][missing].iloc[0]!r} is absent from table 'images'; add it there")
    kept = kept.merge(products, on="product_id", how="left")
    centroid = {(p, int(g)): list(map(float, c)) for p, g, c in zip(groups["product_id"], groups["group_id"], groups["centroid"])}
    kept["group_embedding"] = [centroid.get((p, int(g))) for p, g in zip(kept["product_id"], kept["group_id"])]
    if kept["group_embedding"].isna().any():
        bad = kept[kept["group_embedding"].isna()].iloc[0]
        raise InvalidInput(f"{label}: assignments name group {int(bad['group_id'])} of product {bad['product_id']!r} that groups.parquet lacks; re-run the AudienceGrouping")
    kept["split"] = [product_split(p, spec.split.eval_fraction, spec.split.seed) for p in kept["product_id"]]

    captioner = make_captioner(spec.captioner)
    unique = kept.drop_duplicates("image_id")[["image_id", "image_uri"]]
    pictures = [TB.read_image(data, uri, f"table 'images': image {iid!r}") for iid, uri in zip(unique["image_id"], unique["image_uri"])]
    captions = dict(zip(unique["image_id"], captioner.caption(pictures))) if pictures else {}
    kept["caption"] = kept["image_id"].map(captions)
    kept["image_uri"] = [uri if ("://" in uri or uri.startswith("/")) else join(data.uri, uri) for uri in kept["image_uri"]]
    ctx.progress(2, 3, force=True)

    samples = kept[list(GAIP.SAMPLE_COLUMNS)].sort_values(["product_id", "group_id", "image_id"]).reset_index(drop=True)
    pairs = _pairs(samples, spec.pairs.min_ctr_ratio, spec.pairs.max_ctr_ratio)
    shard = ctx.shard_store
    TB.write_parquet(shard, GAIP.SAMPLES, samples)
    TB.write_parquet(shard, GAIP.PAIRS, pairs)
    shard.write_json(SHARD_DONE, {
        "shard": ctx.shard_index, "shards": ctx.shard_count, "products": mine, "unassigned_impressions": unassigned,
        "impressions": int(len(joined)), "max_impressions_per_cell": max_impressions,
    })
    ctx.progress(3, 3, force=True)


def merge(ctx: JobContext) -> None:
    import pandas as pd

    spec = ctx.spec
    grouping = ctx.input_store(Role.GROUPING)
    samples, pairs, done = [], [], []
    for shard, info in ctx.finished_shards(SHARD_DONE, "aggregate"):
        done.append(info)
        samples.append(TB.read_parquet(shard, GAIP.SAMPLES, what="aggregate shard", fix="re-run the aggregate step"))
        pairs.append(TB.read_parquet(shard, GAIP.PAIRS, what="aggregate shard", fix="re-run the aggregate step"))
    samples_frame = pd.concat(samples, ignore_index=True).sort_values(["product_id", "group_id", "image_id"]).reset_index(drop=True)
    pairs_frame = pd.concat(pairs, ignore_index=True).reset_index(drop=True)
    if samples_frame.empty:
        most = max((d["max_impressions_per_cell"] for d in done), default=0)
        raise InvalidInput(f"spec.minImpressions: no (product, group, image) has {spec.min_impressions} impressions (the most is {most}); lower spec.minImpressions")
    TB.write_parquet(ctx.store, GAIP.SAMPLES, samples_frame)
    TB.write_parquet(ctx.store, GAIP.PAIRS, pairs_frame)
    ctx.store.write_bytes(GAIP.GROUPS, grouping.read_bytes(GAIP.GROUPS))

    ndcg, per_product = M.ndcg_between_groups(samples_frame)
    product_split = samples_frame.drop_duplicates("product_id")["split"]
    metrics = {
        "samples": int(len(samples_frame)),
        "pairs": int(len(pairs_frame)),
        "products": int(samples_frame["product_id"].nunique()),
        "groups": int(samples_frame[["product_id", "group_id"]].drop_duplicates().shape[0]),
        "images": int(samples_frame["image_id"].nunique()),
        "train_products": int((product_split == GAIP.TRAIN).sum()),
        "eval_products": int((product_split == GAIP.EVAL).sum()),
        "train_pairs": int((pairs_frame["split"] == GAIP.TRAIN).sum()) if len(pairs_frame) else 0,
        "eval_pairs": int((pairs_frame["split"] == GAIP.EVAL).sum()) if len(pairs_frame) else 0,
        "impressions": int(sum(d["impressions"] for d in done)),
        "unassigned_impressions": int(sum(d["unassigned_impressions"] for d in done)),
        "ndcg_at_5_between_groups": None if np.isnan(ndcg) else ndcg,
        "ndcg_products": len(per_product),
        "mean_ctr": float(samples_frame["clicks"].sum() / samples_frame["impressions"].sum()),
    }
    ctx.store.write_json(METRICS, metrics)
    ctx.write_manifest(metrics)
