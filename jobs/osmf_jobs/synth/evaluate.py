"""Evaluation of a pipeline's runs against a synthetic world's truth (the jobs never read truth/).

    python -m osmf_jobs.synth.evaluate --world WORLD --grouping G [--dataset D --campaign C] --out DIR
        writes DIR/grouping.json and, with a dataset and a campaign, DIR/campaign-lift.json
        (`osmf_jobs.synth.lift`: held-out products, the baselines, bootstrap intervals)
    evaluate_grouping(world_uri, grouping_uri) -> dict

Reported for the grouping (issue 3 acceptance):
- `auroc`: the grouping's click model (the numpy `Assigner`, as served) on the world's held-out
  impressions (truth/heldout_impressions.parquet, never logged); `oracle_auroc`: ranking the same
  impressions by the generator's explainable logit (attributes + product + image, without the
  per-user noise) — the best any model of those inputs can reach; `auroc_gap` = oracle - auroc.
- `median_ari` / `mean_ari`: adjusted Rand index per product between the discovered groups
  (assignments.parquet) and the users' true segments for the product's category.
- NDCG@5 between groups (`metrics.ndcg_between_groups`, on the CTRs of the logged impressions per
  (product, group, image)) for:
  `ndcg_ours`; `ndcg_one_size`: the one-size baseline — each product's users split at random into
  groups of the same sizes as ours, so groups differ only by sampling noise (a single group has no
  pair to compare; this is its value at equal noise); `ndcg_attribute_only`: K-means on one-hot
  attributes over all users, blind to the product, with the same K per product as ours;
  `ndcg_true_segments`: the truth's segments, for reference.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from osmf_core.layout import ArtifactRoot, Dataset, Grouping, World
from osmf_jobs import metrics as M


def _read(store: Any, rel: str, columns: list[str] | None = None) -> Any:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(store.read_bytes(rel)), columns=columns)


def _ndcg(impressions: Any, labels: Any, min_impressions: int) -> float:
    """NDCG@5 between groups from logged impressions and a (product_id, user_id, group_id) labelling."""
    joined = impressions.merge(labels, on=["product_id", "user_id"], how="inner")
    cells = joined.groupby(["product_id", "group_id", "image_id"]).agg(n=("clicked", "size"), k=("clicked", "sum")).reset_index()
    cells = cells[cells["n"] >= min_impressions]
    cells["ctr"] = cells["k"] / cells["n"]
    value, _ = M.ndcg_between_groups(cells)
    return value


def _attribute_only(users: Any, attributes: list[str], ks: list[int], seed: int) -> dict[int, np.ndarray]:
    """Global K-means on one-hot attributes (product-blind), one labelling per K."""
    import pandas as pd
    from sklearn.cluster import KMeans

    onehot = pd.get_dummies(users[attributes].astype(str)).to_numpy(dtype=np.float64)
    return {k: KMeans(n_clusters=k, n_init=5, random_state=seed).fit_predict(onehot) for k in sorted(set(ks)) if k > 1}


def evaluate_grouping(world_uri: str, grouping_uri: str, min_impressions: int = 1, seed: int = 0) -> dict[str, Any]:
    import pandas as pd

    from osmf_jobs.paag import Assigner
    from osmf_core.store import open_store

    world, grouping = open_store(world_uri), open_store(grouping_uri)
    truth = json.loads(world.read_bytes(World.WORLD))
    assigner = Assigner.load(grouping_uri)
    users = _read(world, Dataset.table_file(Dataset.USERS), ["user_id", *assigner.attributes])

    # AUROC on the never-logged held-out impressions.
    held = _read(world, World.HELDOUT_IMPRESSIONS)
    rows = held[["user_id"]].merge(users, on="user_id", how="left")
    p = assigner.p_click_many(held["product_id"].tolist(), rows, held["image_id"].tolist())
    auroc = M.auroc(held["clicked"], p)
    oracle = M.auroc(held["clicked"], held["logit_explainable"])

    # ARI per product against the true segments.
    assignments = _read(grouping, Grouping.ASSIGNMENTS)
    segments = _read(world, World.SEGMENTS)
    category = {pid: info["category"] for pid, info in truth["products"].items()}
    assignments["category"] = assignments["product_id"].map(category)
    merged = assignments.merge(segments, on=["user_id", "category"], how="left")
    ari = {pid: M.adjusted_rand_index(f["group_id"], f["segment"]) for pid, f in merged.groupby("product_id")}

    # NDCG@5 between groups: ours and the baselines, on the logged impressions.
    impressions = _read(world, Dataset.table_file(Dataset.IMPRESSIONS), ["user_id", "product_id", "image_id", "clicked"])
    labels = assignments[["product_id", "user_id", "group_id"]]
    rng = np.random.default_rng(seed)
    one_size = []
    for pid, f in labels.groupby("product_id"):
        sizes = f["group_id"].value_counts().sort_index().to_numpy()
        shuffled = rng.permutation(f["user_id"].to_numpy())
        one_size.append(pd.DataFrame({"product_id": pid, "user_id": shuffled, "group_id": np.repeat(np.arange(len(sizes)), sizes)}))
    one_size = pd.concat(one_size, ignore_index=True)
    k_of = labels.groupby("product_id")["group_id"].nunique()
    by_k = _attribute_only(users, assigner.attributes, k_of.tolist(), seed)
    user_pos = dict(zip(users["user_id"], range(len(users))))
    attr_rows = []
    for pid, f in labels.groupby("product_id"):
        k = int(k_of[pid])
        lab = by_k[k][f["user_id"].map(user_pos).to_numpy()] if k > 1 else np.zeros(len(f), np.int64)
        attr_rows.append(pd.DataFrame({"product_id": pid, "user_id": f["user_id"].to_numpy(), "group_id": lab}))
    attribute_only = pd.concat(attr_rows, ignore_index=True)
    true_labels = merged[["product_id", "user_id", "segment"]].rename(columns={"segment": "group_id"})

    return {
        "auroc": auroc,
        "oracle_auroc": oracle,
        "auroc_gap": oracle - auroc,
        "heldout_impressions": int(len(held)),
        "median_ari": float(np.median(list(ari.values()))),
        "mean_ari": float(np.mean(list(ari.values()))),
        "min_ari": float(np.min(list(ari.values()))),
        "products": len(ari),
        "mean_groups_per_product": float(k_of.mean()),
        "true_groups_per_product": float(np.mean([len(truth["categories"][category[p]]["preferences"]) for p in ari])),
        "ndcg_ours": _ndcg(impressions, labels, min_impressions),
        "ndcg_one_size": _ndcg(impressions, one_size, min_impressions),
        "ndcg_attribute_only": _ndcg(impressions, attribute_only, min_impressions),
        "ndcg_true_segments": _ndcg(impressions, true_labels, min_impressions),
    }


def reward_accuracies(reward: str | None) -> dict[str, Any]:
    """The reward run's own held-out figures (what the GRM and the preference model scored)."""
    if not reward:
        return {}
    from osmf_core.layout import METRICS
    from osmf_core.store import open_store

    metrics = open_store(reward).read_json(METRICS)
    keys = ("pairwise_accuracy", "pairwise_accuracy_group_blind", "preference_model_pairwise_accuracy")
    return {f"reward_{k}" if not k.startswith("preference") else k: metrics.get(k) for k in keys}


def main(argv: list[str] | None = None) -> int:
    from .lift import EvaluationError, Evaluator, compare_campaigns, summarize

    parser = argparse.ArgumentParser(prog="python -m osmf_jobs.synth.evaluate", description="Evaluate a pipeline's runs against a synthetic world's truth.")
    parser.add_argument("--world", required=True, help="the synthetic world root (with truth/)")
    parser.add_argument("--grouping", required=True, help="the AudienceGrouping run directory")
    parser.add_argument("--dataset", help="the GAIPDataset run (its eval split are the held-out products); needed with --campaign")
    parser.add_argument("--campaign", help="the AdImageCampaign run to evaluate")
    parser.add_argument("--before", help="a campaign from the policy before Group-DPO, over the same products: a paired comparison")
    parser.add_argument("--reward", help="the reward GMLLMTraining run: its held-out accuracy beside the ceiling the pairs allow")
    parser.add_argument("--min-impressions", type=int, default=1, help="cells with fewer impressions are left out of NDCG")
    parser.add_argument("--out", required=True, help="directory for grouping.json and campaign-lift.json")
    args = parser.parse_args(argv)
    if bool(args.dataset) != bool(args.campaign):
        parser.error("--dataset and --campaign go together")
    if (args.before or args.reward) and not args.campaign:
        parser.error("--before and --reward need --campaign")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {ArtifactRoot.GROUPING_EVALUATION: evaluate_grouping(args.world, args.grouping, args.min_impressions)}
    if args.campaign:
        try:
            evaluator = Evaluator(args.world, args.grouping, args.dataset)
            after = evaluator.outcomes(args.campaign)
            lift = summarize(after)
            if args.before:
                lift["versus_before"] = compare_campaigns(after, evaluator.outcomes(args.before))
            lift["reward_pairs"] = evaluator.reward_pairs() | reward_accuracies(args.reward)
            results[ArtifactRoot.CAMPAIGN_LIFT] = lift
        except EvaluationError as error:
            print(f"osmf evaluate: {' '.join(str(error).split())}", file=sys.stderr)
            return 2
    for name, result in results.items():
        (out / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    from osmf_jobs.runtime import exit_cli

    exit_cli(main)
