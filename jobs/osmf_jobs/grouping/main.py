"""The AudienceGrouping job: `train`, `cluster` (one shard of products) and `merge`."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from osmf_core.api import Role
from osmf_core.layout import METRICS, SHARD_DONE, Dataset, Grouping, join
from osmf_jobs import tables as TB
from osmf_jobs.runtime import InvalidInput, JobContext


def main(ctx: JobContext) -> None:
    steps = {"train": train, "cluster": cluster, "merge": merge}
    steps[ctx.step](ctx)


# ---- train ---------------------------------------------------------------------------------------


def _load_images(data: Any, frame: Any, id_column: str, what: str) -> list[Any]:
    return [TB.read_image(data, uri, f"table '{what}': {id_column.split('_')[0]} {ident!r}")
            for ident, uri in zip(frame[id_column], frame["image_uri"])]


def train(ctx: JobContext) -> None:
    spec = ctx.spec
    data = ctx.input_store(Role.DATA)
    # Every input check comes before the heavy imports, so bad input fails in a second.
    tables = TB.read_tables(data, list(spec.user_attributes))
    products = tables.products.sort_values("product_id").reset_index(drop=True)
    shown = set(tables.impressions["image_id"].unique())
    creatives = tables.images[tables.images["image_id"].isin(shown)].sort_values("image_id").reset_index(drop=True)
    product_images = _load_images(data, products, "product_id", "products")
    creative_images = _load_images(data, creatives, "image_id", "images")
    ctx.progress(0, 1, force=True)

    import torch

    from osmf_jobs.paag import encoders as E
    from osmf_jobs.paag import export, train as T

    # Encoders and the preference model go where the pod's resources say: the GPU when given one.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = E.TextEncoder(spec.model.text_encoder, device=device)
    title_tokens, title_mask = text.encode(list(products["title"]))
    del text
    image = E.ImageEncoder(spec.model.image_encoder, device=device)
    _, image_tokens = image.encode(product_images)
    creative_stats, _ = image.encode(creative_images)
    del image, product_images, creative_images
    # The optional category column becomes a learned product token (1-based; 0 = none).
    categories = sorted(products["category"].unique().tolist()) if "category" in products.columns else []
    product_category = (products["category"].map({c: i + 1 for i, c in enumerate(categories)}).to_numpy().astype(np.int64)
                        if categories else None)
    features = T.Features(title_tokens, title_mask, image_tokens, creative_stats, product_category)
    buffer = io.BytesIO()
    np.savez(buffer, title_tokens=title_tokens, title_mask=title_mask, image_tokens=image_tokens,
             creative_stats=creative_stats, product_category=features.categories(),
             product_ids=np.asarray(products["product_id"], dtype=str), creative_ids=np.asarray(creatives["image_id"], dtype=str))
    ctx.store.write_bytes(Grouping.FEATURES, buffer.getvalue())

    vocab = export.attribute_vocab(tables.users, list(spec.user_attributes))
    attr_matrix = export.encode_attributes(tables.users, list(spec.user_attributes), vocab)
    tuples, tuple_of_user = T.unique_rows(attr_matrix)
    user_index = dict(zip(tables.users["user_id"], range(len(tables.users))))
    product_index = dict(zip(products["product_id"], range(len(products))))
    creative_index = dict(zip(creatives["image_id"], range(len(creatives))))
    imp = tables.impressions
    impressions = T.Impressions(
        tuple_of_user[imp["user_id"].map(user_index).to_numpy()],
        imp["product_id"].map(product_index).to_numpy().astype(np.int64),
        imp["image_id"].map(creative_index).to_numpy().astype(np.int64),
        imp["clicked"].to_numpy().astype(np.float32),
    )
    m = spec.model
    model, metrics = T.train_model(
        tuples, [len(vocab[a]) for a in spec.user_attributes], features, impressions, d=m.embedding_dim,
        epochs=m.epochs, batch_size=m.batch_size, learning_rate=m.learning_rate,
        held_out_fraction=m.held_out_fraction, seed=m.seed,
        progress=lambda step, total, values: ctx.progress(step, total, values), device=device,
    )
    export.write_model(ctx.store, model, features, vocab, list(spec.user_attributes), list(products["product_id"]),
                       list(creatives["image_id"]), list(creatives["product_id"]), spec, categories)
    metrics["users"] = int(len(tables.users))
    metrics["products"] = int(len(products))
    metrics["creatives"] = int(len(creatives))
    metrics["device"] = device.type
    ctx.store.write_json(Grouping.TRAIN_METRICS, metrics)
    ctx.progress(1, 1, {k: v for k, v in metrics.items() if k in ("auroc", "train_loss")}, force=True)


# ---- cluster -------------------------------------------------------------------------------------


def cluster(ctx: JobContext) -> None:
    import pandas as pd

    from osmf_jobs.paag import Assigner
    from osmf_jobs.paag.cluster import group_products

    spec = ctx.spec
    if not ctx.store.exists(Grouping.MODEL_WEIGHTS):
        raise InvalidInput(f"{join(ctx.store.uri, Grouping.MODEL_WEIGHTS)} is missing; run the train step first")
    assigner = Assigner.load(ctx.store.uri, with_groups=False)
    data = ctx.input_store(Role.DATA)
    users = TB.read_users(data, list(spec.user_attributes))
    impressions = TB.read_table(data, Dataset.IMPRESSIONS, {"user_id": TB.STRING, "product_id": TB.STRING})
    mine = ctx.my_products(list(assigner.config["products"]))
    pairs = impressions[impressions["product_id"].isin(set(mine))].drop_duplicates(["product_id", "user_id"])
    pairs = pairs.merge(users, on="user_id", how="left").sort_values(["product_id", "user_id"]).reset_index(drop=True)
    attrs = assigner.attr_matrix(pairs)
    product_rows = {p: rows for p, rows in pairs.groupby("product_id", sort=False).indices.items()}
    user_ids = pairs["user_id"].to_numpy()

    # Stream products in chunks: embed a chunk, group it, keep only its (small) results, so memory
    # follows the chunk, not the shard.
    c = spec.clustering
    group_rows, assignment_frames = [], []
    for start in range(0, len(mine), CLUSTER_CHUNK):
        chunk = mine[start:start + CLUSTER_CHUNK]
        problems, inverses = [], []
        for p in chunk:
            rows = product_rows[p]
            uniq, inverse, counts = np.unique(attrs[rows], axis=0, return_inverse=True, return_counts=True)
            problems.append((assigner.embed_many([p] * len(uniq), uniq), counts.astype(np.float64)))
            inverses.append(inverse.reshape(-1))
        groupings = group_products(
            problems, min_groups=c.min_groups, max_groups=c.max_groups, sample_size=c.silhouette_sample_size,
            search_size=c.search_sample_size,
            max_iterations=c.max_iterations, seed=c.seed, min_group_size=spec.privacy.min_group_size, keys=chunk,
            chunk=CLUSTER_CHUNK,
        )
        for p, grouping, inverse in zip(chunk, groupings, inverses):
            for g in range(len(grouping.centroids)):
                group_rows.append({
                    "product_id": p, "group_id": g, "size": int(grouping.sizes[g]),
                    "centroid": grouping.centroids[g].tolist(),
                    "representatives": [r.tolist() for r in grouping.representatives[g]],
                    "silhouette": float(grouping.silhouette), "k_chosen": int(grouping.k_chosen),
                    "privacy_merges": int(grouping.merged),
                })
            assignment_frames.append(pd.DataFrame({
                "product_id": p, "user_id": user_ids[product_rows[p]], "group_id": grouping.labels[inverse],
            }))
        ctx.progress(start + len(chunk), len(mine))
    shard = ctx.shard_store
    TB.write_parquet(shard, Grouping.GROUPS, pd.DataFrame(group_rows, columns=list(Grouping.GROUP_COLUMNS)))
    frame = pd.concat(assignment_frames, ignore_index=True) if assignment_frames else pd.DataFrame(columns=["product_id", "user_id", "group_id"])
    TB.write_parquet(shard, Grouping.ASSIGNMENTS, frame)
    shard.write_json(SHARD_DONE, {"shard": ctx.shard_index, "shards": ctx.shard_count, "products": mine})
    ctx.progress(len(mine), max(len(mine), 1), force=True)


CLUSTER_CHUNK = 32  # products embedded and grouped together


# ---- merge ---------------------------------------------------------------------------------------


def merge(ctx: JobContext) -> None:
    import pandas as pd

    if not ctx.store.exists(Grouping.TRAIN_METRICS):
        raise InvalidInput(f"{join(ctx.store.uri, Grouping.TRAIN_METRICS)} is missing; run the train step first")
    groups, assignments, covered = [], [], []
    for shard, done in ctx.finished_shards(SHARD_DONE, "cluster"):
        covered += done["products"]
        groups.append(TB.read_parquet(shard, Grouping.GROUPS, what="cluster shard", fix="re-run the cluster step"))
        assignments.append(TB.read_parquet(shard, Grouping.ASSIGNMENTS, what="cluster shard", fix="re-run the cluster step"))
    model_products = ctx.store.read_json(Grouping.MODEL_CONFIG)["products"]
    if sorted(covered) != sorted(model_products):
        raise InvalidInput(f"the shards cover {len(covered)} products, the model has {len(model_products)}; re-run the cluster step with shards={ctx.shard_count}")
    group_frame = pd.concat(groups, ignore_index=True).sort_values(["product_id", "group_id"]).reset_index(drop=True)
    assignment_frame = pd.concat(assignments, ignore_index=True).sort_values(["product_id", "user_id"]).reset_index(drop=True)
    TB.write_parquet(ctx.store, Grouping.GROUPS, group_frame)
    TB.write_parquet(ctx.store, Grouping.ASSIGNMENTS, assignment_frame)

    train_metrics = ctx.store.read_json(Grouping.TRAIN_METRICS)
    per_product = group_frame.groupby("product_id")
    k = per_product.size()
    silhouettes = per_product["silhouette"].first()
    metrics = {
        "auroc": train_metrics.get("auroc"),
        "heldout_impressions": train_metrics.get("heldout_impressions"),
        "train_loss": train_metrics.get("train_loss"),
        "users": train_metrics.get("users"),
        "products": int(len(k)),
        "groups": int(k.sum()),
        "mean_groups_per_product": float(k.mean()) if len(k) else 0.0,
        "one_group_products": int((k == 1).sum()),
        "mean_silhouette": float(silhouettes.dropna().mean()) if silhouettes.notna().any() else None,
        "privacy_merges": int(per_product["privacy_merges"].first().sum()),
        "assignments": int(len(assignment_frame)),
        "min_group_size": int(group_frame["size"].min()) if len(group_frame) else 0,
    }
    ctx.store.write_json(METRICS, metrics)
    ctx.progress(1, 1, force=True)
    ctx.write_manifest(metrics)
