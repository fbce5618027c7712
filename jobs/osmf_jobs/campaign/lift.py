"""Expected CTR lift of a campaign on a synthetic world (DESIGN §7), from the world's true click model.

    python -m osmf_jobs.campaign.lift --world DIR --campaign RUN_URI [--grouping URI] [--per-product]

prints one JSON document. Each user the grouping assigned to a campaign product sees their group's
image (the product's one-size image when the group has none); each image's style is estimated with
`style.probe`, the probe the captioner uses. The true click model gives that user's click
probability; CTRs are means over all (product, user) pairs.

Figures:
- `ctr.campaign` — every user sees their group's image;
- `ctr.onesize` — every user sees the campaign's one-size image;
- `ctr.best_logged` — every user sees the product's single best logged creative (by the truth);
- `ctr.oracle` — every user sees the best logged creative of their true segment;
- `lift` = campaign / onesize − 1: what per-group images add over the campaign's own fallback;
- `lift_vs_best_logged` = campaign / best_logged − 1: against the single best one-size image logged;
- `oracle_lift` = oracle / best_logged − 1: what perfect segments with the logged styles would add.

The truth is read from the world's `truth/` folder as `osmf_jobs.synth.world` writes it (world.json,
segments.parquet, user_noise.parquet, images.parquet). The click logit is the synth module's:
intercept + product bias + segment bias + Σ_axis beta[axis]·[style.axis = preferred axis] + user
noise. This module reads those files itself rather than importing `osmf_jobs.synth` (a job package;
jobs never import each other); a test checks it against `osmf_jobs.synth.truth.click_probability`.
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

from osmf_core.layout import Campaign, Grouping, World, join
from osmf_core.store import ArtifactStore, open_store
from osmf_jobs import style as S


class LiftError(ValueError):
    """The world, campaign or grouping cannot be evaluated; the message says which and why."""


def _parquet(store: ArtifactStore, rel: str, columns: list[str] | None = None):
    import pandas as pd

    try:
        raw = store.read_bytes(rel)
    except (FileNotFoundError, IsADirectoryError):
        raise LiftError(f"{store.uri}/{rel} is missing") from None
    return pd.read_parquet(io.BytesIO(raw), columns=columns)


@dataclass
class WorldTruth:
    """The parts of a synthetic world's truth the lift needs."""

    world: dict[str, Any]
    segments: dict[tuple[str, str], int]  # (user id, category) → true segment
    noise: dict[str, float]  # user id → logit noise
    logged: dict[str, list[S.Style]]  # product id → styles of its logged creatives

    @classmethod
    def load(cls, root: str) -> "WorldTruth":
        store = open_store(root)
        try:
            world = json.loads(store.read_bytes(World.WORLD))
        except FileNotFoundError:
            raise LiftError(f"{store.uri}: no {World.WORLD}; --world must be a synthetic world (osmf synth)") from None
        segments = _parquet(store, World.SEGMENTS)
        noise = _parquet(store, World.USER_NOISE)
        images = _parquet(store, World.IMAGE_STYLES)
        logged: dict[str, list[S.Style]] = {}
        for row in images.itertuples(index=False):
            logged.setdefault(str(row.product_id), []).append(S.Style(row.palette, row.pattern, row.lighting, row.mood))
        return cls(
            world=world,
            segments={(str(u), str(c)): int(s) for u, c, s in zip(segments["user_id"], segments["category"], segments["segment"])},
            noise=dict(zip(noise["user_id"].astype(str), noise["noise"].astype(float))),
            logged=logged,
        )

    def category(self, product_id: str) -> str:
        try:
            return self.world["products"][product_id]["category"]
        except KeyError:
            raise LiftError(f"product {product_id!r} is not in this synthetic world; the campaign must come from it") from None

    def base_logits(self, product_id: str, users: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(segment per user, logit without the style bonus per user)."""
        cat = self.category(product_id)
        info = self.world["categories"][cat]
        try:
            segs = np.asarray([self.segments[(u, cat)] for u in users], dtype=np.int64)
            noise = np.asarray([self.noise[u] for u in users], dtype=np.float64)
        except KeyError as error:
            raise LiftError(f"user {error.args[0][0] if isinstance(error.args[0], tuple) else error.args[0]!r} is not in this world's truth") from None
        bias = float(self.world["intercept"]) + float(self.world["products"][product_id]["bias"])
        return segs, bias + np.asarray(info["segment_bias"], dtype=np.float64)[segs] + noise

    def bonus(self, product_id: str, segs: np.ndarray, style: S.Style) -> np.ndarray:
        """Σ beta over the axes where `style` matches each user's segment's preference."""
        prefs = self.world["categories"][self.category(product_id)]["preferences"]
        per_segment = np.asarray([sum(float(self.world["beta"][ax]) for ax in S.AXES if getattr(style, ax) == p[ax]) for p in prefs])
        return per_segment[segs]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def click_probabilities(truth: WorldTruth, product_id: str, users: list[str], styles: list[S.Style]) -> np.ndarray:
    """True click probability of each user (with their noise) seeing the style at the same position."""
    segs, base = truth.base_logits(product_id, users)
    bonus = np.zeros(len(users))
    for st in set(styles):
        shown = np.asarray([s == st for s in styles])
        bonus[shown] = truth.bonus(product_id, segs[shown], st)
    return sigmoid(base + bonus)


def product_lift(truth: WorldTruth, product_id: str, users: list[str], groups: list[int],
                 group_styles: dict[int, S.Style], onesize: S.Style) -> dict[str, Any]:
    """Sums of click probabilities over the product's users for the four ways of choosing an image."""
    segs, base = truth.base_logits(product_id, users)
    campaign = click_probabilities(truth, product_id, users, [group_styles.get(g, onesize) for g in groups])
    one = sigmoid(base + truth.bonus(product_id, segs, onesize))
    logged = truth.logged.get(product_id)
    if not logged:
        raise LiftError(f"product {product_id!r} has no logged creatives in the world's {World.IMAGE_STYLES}")
    per_style = np.stack([sigmoid(base + truth.bonus(product_id, segs, st)) for st in logged])  # styles × users
    best_logged = per_style[int(np.argmax(per_style.sum(axis=1)))]
    oracle = np.zeros(len(users))
    for seg in np.unique(segs):
        members = segs == seg
        oracle[members] = per_style[int(np.argmax(per_style[:, members].sum(axis=1))), members]
    return {
        "product_id": product_id, "users": len(users),
        "sums": {"campaign": float(campaign.sum()), "onesize": float(one.sum()),
                 "best_logged": float(best_logged.sum()), "oracle": float(oracle.sum())},
        "styles": {str(g): S.caption(st) for g, st in sorted(group_styles.items())} | {"onesize": S.caption(onesize)},
    }


def _image_style(run: ArtifactStore, rel: str) -> S.Style:
    from PIL import Image

    try:
        raw = run.read_bytes(rel)
    except FileNotFoundError:
        raise LiftError(f"{run.uri}/{rel} is missing; the campaign run is incomplete") from None
    return S.probe(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))


def expected_lift(world: str, campaign: str, grouping: str | None = None, per_product: bool = False) -> dict[str, Any]:
    """The figures of the module docstring for a campaign run (URI) on a world (URI or path)."""
    run = open_store(campaign)
    try:
        doc = run.read_json(Campaign.CAMPAIGN_JSON)
    except FileNotFoundError:
        raise LiftError(f"{run.uri}: no {Campaign.CAMPAIGN_JSON}; --campaign must be a finished AdImageCampaign run") from None
    grouping_uri = grouping or (doc.get("grouping") or {}).get("uri")
    if not grouping_uri:
        raise LiftError(f"{join(run.uri, Campaign.CAMPAIGN_JSON)} names no grouping; pass --grouping")
    truth = WorldTruth.load(world)
    assignments = _parquet(open_store(grouping_uri), Grouping.ASSIGNMENTS, columns=["product_id", "user_id", "group_id"])
    assignments = assignments.assign(product_id=assignments["product_id"].astype(str), user_id=assignments["user_id"].astype(str))
    by_product = {pid: frame for pid, frame in assignments.groupby("product_id")}
    rows = []
    for product in doc["products"]:
        pid = product["product_id"]
        frame = by_product.get(pid)
        if frame is None or frame.empty:
            continue  # no logged users to show it to
        styles = {int(g["group_id"]): _image_style(run, g["image"]) for g in product["groups"]}
        onesize = _image_style(run, product["onesize"]["image"])
        rows.append(product_lift(truth, pid, list(frame["user_id"]), [int(g) for g in frame["group_id"]], styles, onesize))
    if not rows:
        raise LiftError(f"no campaign product has users in {join(grouping_uri, Grouping.ASSIGNMENTS)}; nothing to evaluate")
    users = sum(r["users"] for r in rows)
    total = {k: sum(r["sums"][k] for r in rows) for k in ("campaign", "onesize", "best_logged", "oracle")}
    out: dict[str, Any] = {
        "products": len(rows), "users": users,
        "ctr": {k: v / users for k, v in total.items()},
        "lift": total["campaign"] / total["onesize"] - 1.0,
        "lift_vs_best_logged": total["campaign"] / total["best_logged"] - 1.0,
        "oracle_lift": total["oracle"] / total["best_logged"] - 1.0,
    }
    if per_product:
        out["per_product"] = [
            {"product_id": r["product_id"], "users": r["users"], "lift": r["sums"]["campaign"] / r["sums"]["onesize"] - 1.0,
             "oracle_lift": r["sums"]["oracle"] / r["sums"]["best_logged"] - 1.0, "styles": r["styles"]}
            for r in rows
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m osmf_jobs.campaign.lift", description="Expected CTR lift of a campaign on a synthetic world.")
    parser.add_argument("--world", required=True, help="the synthetic world's root (with truth/)")
    parser.add_argument("--campaign", required=True, help="the AdImageCampaign run directory (URI or path)")
    parser.add_argument("--grouping", help="the AudienceGrouping run (default: the one campaign.json names)")
    parser.add_argument("--per-product", action="store_true", help="add each product's lift and image styles")
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        result = expected_lift(args.world, args.campaign, args.grouping, args.per_product)
    except LiftError as error:
        print(f"osmf lift: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    from osmf_jobs.runtime import exit_cli

    exit_cli(main)
