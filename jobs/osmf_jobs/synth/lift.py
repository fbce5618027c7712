"""What a campaign is worth on a synthetic world: expected CTR under the world's true click model
(DESIGN §6 "Evaluation protocol", §7), with the baselines measured in the same run.

    python -m osmf_jobs.synth.lift --world DIR --grouping URI --dataset URI --campaign URI [--out FILE]
    evaluate_campaign(world, grouping, dataset, campaign) -> dict

Protocol:
- Held-out products only: the GAIPDataset's `eval` split, which no training stage saw.
- Every user of the world is a viewer of every held-out product, assigned to a group the way the
  predictor assigns (the grouping's preference model and centroids, from the user's attributes;
  users who never saw the product are assigned too, never left out).
- A viewer's click probability is σ(intercept + product bias + segment bias + the user's noise +
  the style bonus of the image shown), the bonus read from the image's pixels the way the world
  reads them (`spaces.py`); the truth never enters a production path.
- Ways of choosing the image, each over the same viewers:
  `campaign` (each group's chosen image: generated or logged, as the campaign picked),
  `generated_only` (each group's best generated image, as the campaign's scorer ranked them),
  `onesize` (the product's single best logged creative for its whole audience, by the truth),
  `retrieval` (each group's logged creative with the highest GAIP CTR: grouping + GAIP, no
  generation), `logged_oracle` (each true segment's best logged creative, by the truth) and
  `style_oracle` (each true segment's ideal background: the largest bonus the world allows).
- Lifts are over `onesize`; 95% intervals and p-values come from a paired bootstrap over viewers
  (a viewer's clicks on all held-out products resampled together).
- Collapse: for pairs of a product's groups whose majority true segments prefer different styles,
  the share whose chosen prompts differ.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osmf_core.layout import GAIP, Campaign, join
from osmf_core.store import ArtifactStore, open_store
from osmf_jobs.tables import read_parquet

from .truth import Truth, load_truth

BOOTSTRAP = 2000
METHODS = ("campaign", "generated_only", "onesize", "retrieval", "logged_oracle", "style_oracle")


class EvaluationError(ValueError):
    """The world, grouping, dataset or campaign cannot be evaluated together; the message says why."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class ProductViewers:
    """One held-out product's viewers: their ids, true segments, assigned groups, base logits."""

    product_id: str
    users: np.ndarray
    segments: np.ndarray
    groups: np.ndarray
    base: np.ndarray  # logit without the style bonus, each user's noise included


def viewers(truth: Truth, assigner: Any, product_id: str) -> ProductViewers:
    users = truth.users.index.to_numpy().astype(str)
    groups = assigner.assign_many([product_id] * len(users), truth.users.reset_index())
    segments = truth.user_segments.loc[users, truth.category(product_id)].to_numpy().astype(np.int64)
    return ProductViewers(product_id, users, segments, groups, truth.base_logits(product_id, segments, list(users)))


def image_description(truth: Truth, run: ArtifactStore, rel: str, cache: dict[str, dict]) -> dict[str, Any]:
    from PIL import Image

    if rel not in cache:
        try:
            raw = run.read_bytes(rel)
        except FileNotFoundError:
            raise EvaluationError(f"{join(run.uri, rel)} is missing; the campaign run is incomplete") from None
        cache[rel] = truth.describe(Image.open(io.BytesIO(raw)).convert("RGB"))
    return cache[rel]


def retrieval_choices(samples: Any) -> tuple[dict[tuple[str, int], str], dict[str, str]]:
    """((product, group) → the image with the highest GAIP CTR, product → the best overall)."""
    ranked = samples.sort_values(["ctr", "impressions", "image_id"], ascending=[False, False, True])
    per_group = {(str(p), int(g)): str(i) for (p, g), i in ranked.groupby(["product_id", "group_id"], sort=False)["image_id"].first().items()}
    overall = samples.groupby(["product_id", "image_id"])[["clicks", "impressions"]].sum().reset_index()
    overall["ctr"] = overall["clicks"] / overall["impressions"]
    overall = overall.sort_values(["ctr", "impressions", "image_id"], ascending=[False, False, True])
    return per_group, {str(p): str(i) for p, i in overall.groupby("product_id", sort=False)["image_id"].first().items()}


def product_probabilities(truth: Truth, view: ProductViewers, product: dict[str, Any], run: ArtifactStore,
                          retrieval: dict[tuple[str, int], str], retrieval_fallback: str | None,
                          cache: dict[str, dict]) -> dict[str, np.ndarray]:
    """Each method's click probability for every viewer of one product."""
    pid = view.product_id
    logged = truth.logged.get(pid)
    if not logged:
        raise EvaluationError(f"product {pid!r} has no logged creatives in the world's truth")
    logged_bonus = {iid: truth.segment_bonuses(pid, desc) for iid, desc in logged}  # image → bonus per segment
    by_segment = np.stack([logged_bonus[iid] for iid, _ in logged])  # images × segments
    segs = view.segments

    def shown(bonus_per_user: np.ndarray) -> np.ndarray:
        return sigmoid(view.base + bonus_per_user)

    per_image = sigmoid(view.base[None, :] + by_segment[:, segs])  # images × viewers
    out = {"onesize": per_image[int(np.argmax(per_image.sum(axis=1)))]}
    oracle = np.zeros(len(segs))
    for seg in np.unique(segs):
        members = segs == seg
        oracle[members] = per_image[int(np.argmax(per_image[:, members].sum(axis=1))), members]
    out["logged_oracle"] = oracle
    out["style_oracle"] = shown(np.full(len(segs), truth.ideal_bonus()))

    groups = {int(g["group_id"]): g for g in product["groups"]}
    chosen = np.zeros(len(segs))
    generated = np.zeros(len(segs))
    retrieved = np.zeros(len(segs))
    for gid in np.unique(view.groups):
        members = view.groups == gid
        record = groups.get(int(gid))
        if record is None:
            raise EvaluationError(f"campaign has no image for group {gid} of product {pid!r}; it must come from the same grouping")
        chosen[members] = truth_bonus(truth, pid, segs[members], record, run, cache)
        best_generated = record.get("generated") or record
        generated[members] = truth_bonus(truth, pid, segs[members], best_generated, run, cache)
        image_id = retrieval.get((pid, int(gid)), retrieval_fallback)
        if image_id is None or image_id not in logged_bonus:
            raise EvaluationError(f"no logged creative of product {pid!r} for group {gid} in the GAIPDataset or the world")
        retrieved[members] = logged_bonus[image_id][segs[members]]
    out["campaign"] = shown(chosen)
    out["generated_only"] = shown(generated)
    out["retrieval"] = shown(retrieved)
    return out


def truth_bonus(truth: Truth, pid: str, segs: np.ndarray, record: dict[str, Any], run: ArtifactStore,
                cache: dict[str, dict]) -> np.ndarray:
    """The bonus each viewer gets from a campaign record's image (a logged creative by id, else its pixels)."""
    image_id = record.get("image_id")
    if record.get("source") == "logged" and image_id:
        description = dict(truth.logged_description(pid, image_id))
    else:
        description = image_description(truth, run, record["image"], cache)
    return truth.segment_bonuses(pid, description)[segs]


def bootstrap_lifts(per_user: dict[str, np.ndarray], seed: int = 0, rounds: int = BOOTSTRAP) -> dict[str, Any]:
    """Lift of every method over onesize with a paired bootstrap over viewers; campaign vs retrieval."""
    rng = np.random.default_rng(seed)
    n = len(per_user["onesize"])
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=rounds).astype(np.float64)  # rounds × viewers
    totals = {m: weights @ v for m, v in per_user.items()}  # method → rounds
    point = {m: float(v.sum()) for m, v in per_user.items()}
    out: dict[str, Any] = {"lift_vs_onesize": {}}
    for m in per_user:
        if m == "onesize":
            continue
        samples = totals[m] / totals["onesize"] - 1.0
        out["lift_vs_onesize"][m] = {"value": point[m] / point["onesize"] - 1.0, "ci95": _interval(samples)}
    oracle_gain = totals["logged_oracle"] - totals["onesize"]
    for m in ("campaign", "generated_only", "retrieval"):
        share = (totals[m] - totals["onesize"]) / np.where(oracle_gain == 0, np.nan, oracle_gain)
        value = (point[m] - point["onesize"]) / (point["logged_oracle"] - point["onesize"]) if point["logged_oracle"] != point["onesize"] else float("nan")
        out.setdefault("share_of_logged_oracle_lift", {})[m] = {"value": value, "ci95": _interval(share)}
    for m in ("campaign", "generated_only"):
        diff = (totals[m] - totals["retrieval"]) / totals["onesize"]
        out.setdefault("vs_retrieval", {})[m] = {
            "lift_difference": (point[m] - point["retrieval"]) / point["onesize"], "ci95": _interval(diff),
            "p_not_better": float(np.mean(diff <= 0)),
        }
    return out


def _interval(samples: np.ndarray) -> list[float]:
    finite = samples[np.isfinite(samples)]
    return [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))] if len(finite) else [float("nan")] * 2


def collapse(truth: Truth, views: dict[str, ProductViewers], products: dict[str, dict]) -> dict[str, Any]:
    """Do groups that want different backgrounds get different prompts?"""
    differing = distinct = 0
    prompts, groups_total = set(), 0
    for pid, view in views.items():
        records = {int(g["group_id"]): g for g in products[pid]["groups"]}
        majority = {}
        for gid in np.unique(view.groups):
            segs = view.segments[view.groups == gid]
            majority[int(gid)] = int(np.bincount(segs).argmax())
        for gid, record in records.items():
            prompt = (record.get("generated") or record).get("prompt")
            if prompt:
                prompts.add(prompt)
            groups_total += 1
        ids = sorted(g for g in majority if g in records)
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                if truth.preference(pid, majority[a]) == truth.preference(pid, majority[b]):
                    continue
                differing += 1
                pa = (records[a].get("generated") or records[a]).get("prompt")
                pb = (records[b].get("generated") or records[b]).get("prompt")
                distinct += int(pa != pb)
    return {
        "group_pairs_with_different_true_preferences": differing,
        "share_with_different_prompts": distinct / differing if differing else float("nan"),
        "distinct_prompts": len(prompts), "groups": groups_total,
    }


@dataclass
class Outcomes:
    """One campaign's evaluation before aggregation: each method's clicks per viewer (summed over the
    held-out products), and what the collapse and source counts need."""

    truth: Truth
    per_user: dict[str, np.ndarray]
    per_group: dict[tuple[str, int], dict[str, float]]  # (product, group) → method → its viewers' mean CTR
    products: dict[str, dict]
    evaluated: list[str]
    views: dict[str, ProductViewers]


class Evaluator:
    """The world, grouping and held-out split, loaded once for any number of campaigns."""

    def __init__(self, world: str, grouping: str, dataset: str):
        from osmf_jobs.paag import Assigner

        self.truth = load_truth(world)
        self.dataset = open_store(dataset)
        samples = read_parquet(self.dataset, GAIP.SAMPLES, what="--dataset")
        self.samples = samples.assign(product_id=samples["product_id"].astype(str))
        self.held_out = sorted(set(self.samples.loc[self.samples["split"] == GAIP.EVAL, "product_id"]))
        self.assigner = Assigner.load(grouping)
        self.retrieval, self.fallback = retrieval_choices(self.samples)
        self.views: dict[str, ProductViewers] = {}

    def outcomes(self, campaign: str) -> Outcomes:
        run = open_store(campaign)
        try:
            doc = run.read_json(Campaign.CAMPAIGN_JSON)
        except FileNotFoundError:
            raise EvaluationError(f"{run.uri}: no {Campaign.CAMPAIGN_JSON}; --campaign must be a finished AdImageCampaign run") from None
        products = {str(p["product_id"]): p for p in doc["products"]}
        evaluated = [p for p in self.held_out if p in products]
        if not evaluated:
            raise EvaluationError(f"the campaign covers none of the GAIPDataset's {len(self.held_out)} held-out products; evaluate a campaign over them")
        cache: dict[str, dict] = {}
        for pid in evaluated:
            if pid not in self.views:
                self.views[pid] = viewers(self.truth, self.assigner, pid)
        per_product = {pid: product_probabilities(self.truth, self.views[pid], products[pid], run, self.retrieval, self.fallback.get(pid), cache)
                       for pid in evaluated}
        per_user = {m: np.sum([per_product[pid][m] for pid in evaluated], axis=0) for m in METHODS}  # summed over products
        per_group = {(pid, int(g)): {m: float(per_product[pid][m][self.views[pid].groups == g].mean()) for m in METHODS}
                     for pid in evaluated for g in np.unique(self.views[pid].groups)}
        return Outcomes(self.truth, per_user, per_group, products, evaluated, {pid: self.views[pid] for pid in evaluated})


    def reward_pairs(self) -> dict[str, Any]:
        """What the GAIP held-out pairs allow a reward model: the share whose two images the truth
        rates equally for the group (no scorer can rank those better than ½), the ceiling that leaves
        (1 − ties / 2), and how often the truth agrees with the pair's logged order."""
        pairs = read_parquet(self.dataset, GAIP.PAIRS, what="--dataset")
        pairs = pairs[(pairs["split"] == GAIP.EVAL)].assign(product_id=lambda f: f["product_id"].astype(str))
        ties, agree = 0, 0.0
        for row in pairs.itertuples(index=False):
            view = self.views.get(row.product_id) or self.views.setdefault(row.product_id, viewers(self.truth, self.assigner, row.product_id))
            members = view.groups == int(row.group_id)
            if not members.any():
                continue
            segs, base = view.segments[members], view.base[members]
            ctr = [float(np.mean(sigmoid(base + self.truth.segment_bonuses(row.product_id, self.truth.logged_description(row.product_id, iid))[segs])))
                   for iid in (row.chosen_image_id, row.rejected_image_id)]
            tie = abs(ctr[0] - ctr[1]) < 1e-12
            ties += tie
            agree += 0.5 if tie else float(ctr[0] > ctr[1])
        n = len(pairs)
        return {"heldout_pairs": n, "true_tie_share": ties / n if n else None,
                "ceiling_ties_allow": 1 - ties / (2 * n) if n else None, "truth_agrees_with_logged_order": agree / n if n else None}


def summarize(outcomes: Outcomes, seed: int = 0) -> dict[str, Any]:
    per_user, evaluated = outcomes.per_user, outcomes.evaluated
    users = len(per_user["onesize"])
    pairs = users * len(evaluated)
    return {
        "world_style_space": outcomes.truth.space.name,
        "heldout_products": len(evaluated), "viewers": users, "viewer_product_pairs": pairs,
        "ctr": {m: float(per_user[m].sum() / pairs) for m in METHODS},
        **bootstrap_lifts(per_user, seed),
        "sources": source_counts(outcomes.products, evaluated),
        "collapse": collapse(outcomes.truth, outcomes.views, outcomes.products),
    }


def evaluate_campaign(world: str, grouping: str, dataset: str, campaign: str, seed: int = 0) -> dict[str, Any]:
    return summarize(Evaluator(world, grouping, dataset).outcomes(campaign), seed)


def compare_campaigns(after: Outcomes, before: Outcomes, seed: int = 0, rounds: int = BOOTSTRAP) -> dict[str, Any]:
    """Is `after` (e.g. the post-Group-DPO campaign) better than `before` on the same viewers? For the
    generated-only and the combined campaign: the relative CTR difference with a paired bootstrap
    interval over viewers and its one-sided p-value (the share of resamples where `after` is not
    better); and, since each group's image is one draw of the generator, a paired test over the
    (product, group)s themselves: a one-sided Wilcoxon signed-rank test of their viewers' mean CTR
    (`p_groups`), with the counts of groups better and worse."""
    from scipy.stats import wilcoxon

    if after.evaluated != before.evaluated:
        raise EvaluationError("the two campaigns cover different held-out products; compare campaigns over the same products")
    rng = np.random.default_rng(seed)
    n = len(after.per_user["onesize"])
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=rounds).astype(np.float64)
    out = {}
    for method in ("generated_only", "campaign"):
        a, b = after.per_user[method], before.per_user[method]
        samples = (weights @ a) / (weights @ b) - 1.0
        out[method] = {"ctr_after": float(a.sum() / (n * len(after.evaluated))), "ctr_before": float(b.sum() / (n * len(before.evaluated))),
                       "relative_difference": float(a.sum() / b.sum() - 1.0), "ci95": _interval(samples),
                       "p_not_better": float(max(np.mean(samples <= 0), 1.0 / rounds))}
        diffs = np.asarray([after.per_group[k][method] - before.per_group[k][method] for k in sorted(after.per_group)])
        changed = diffs[diffs != 0]
        out[method] |= {"groups_better": int((diffs > 0).sum()), "groups_worse": int((diffs < 0).sum()),
                        "p_groups": float(wilcoxon(changed, alternative="greater").pvalue) if len(changed) else 1.0}
    return out


def source_counts(products: dict[str, dict], evaluated: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pid in evaluated:
        for group in products[pid]["groups"]:
            source = group.get("source", "generated")
            counts[source] = counts.get(source, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m osmf_jobs.synth.lift", description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True, help="the synthetic world's root (with truth/)")
    parser.add_argument("--grouping", required=True, help="the AudienceGrouping run (URI or path)")
    parser.add_argument("--dataset", required=True, help="the GAIPDataset run: its eval split are the held-out products")
    parser.add_argument("--campaign", required=True, help="the AdImageCampaign run")
    parser.add_argument("--before", help="another campaign over the same products (e.g. before Group-DPO): a paired comparison")
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        evaluator = Evaluator(args.world, args.grouping, args.dataset)
        after = evaluator.outcomes(args.campaign)
        result = summarize(after)
        if args.before:
            result["versus_before"] = compare_campaigns(after, evaluator.outcomes(args.before))
    except (EvaluationError, KeyError) as error:
        print(f"osmf lift: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    from osmf_jobs.runtime import exit_cli

    exit_cli(main)
