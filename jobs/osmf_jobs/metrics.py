"""Metrics used everywhere (DESIGN §7): AUROC, NDCG@5 between groups, adjusted Rand index.

- `auroc(labels, scores)`: area under the ROC curve, ties counted as half (Mann-Whitney U).
  NaN when only one class is present.
- `ndcg_at_k(rank_scores, relevance, k=5)`: rank items by `rank_scores` (descending), score the top
  k with `relevance` as graded gain (linear gain, log2 discount), normalised by the ideal ordering.
  Tied rank scores share the average discount of the positions they span (the expected DCG over
  the tie's orderings), so ties never depend on input order. NaN when the ideal DCG is 0.
- `ndcg_between_groups(rows, k=5, min_images=5)`: for every product with at least two groups and
  at least `min_images` images, for every ordered pair of groups a != b: rank the images by ctr_a
  and score with ctr_b. The pair scores are averaged per product, then over products (each product
  weighs the same). Lower = the groups prefer different images. Rows are (product_id, group_id,
  image_id, ctr) in any iterable of mappings or a pandas frame; an image missing for a group is
  left out of that pair. Returns (mean, {product_id: product mean}).
- `adjusted_rand_index(a, b)`: ARI between two labelings of the same items (1 = identical up to
  renaming, about 0 = chance).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # 1-based average rank
    return ranks


def auroc(labels: Any, scores: Any) -> float:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape}) and scores ({s.shape}) differ in length")
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _discounts(k: int, n: int) -> np.ndarray:
    pos = np.arange(n)
    return np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0)


def ndcg_at_k(rank_scores: Any, relevance: Any, k: int = 5) -> float:
    r = np.asarray(rank_scores, dtype=np.float64)
    g = np.asarray(relevance, dtype=np.float64)
    n = len(r)
    disc = _discounts(k, n)
    ideal = float(np.sum(np.sort(g)[::-1] * disc))
    if ideal <= 0:
        return float("nan")
    order = np.argsort(-r, kind="mergesort")
    sorted_r = r[order]
    item_disc = np.empty(n)
    boundaries = np.flatnonzero(np.diff(sorted_r)) + 1
    for s, e in zip(np.concatenate([[0], boundaries]), np.concatenate([boundaries, [n]])):
        item_disc[order[s:e]] = disc[s:e].mean()
    return float(np.sum(g * item_disc) / ideal)


def ndcg_between_groups(rows: Any, k: int = 5, min_images: int = 5) -> tuple[float, dict[str, float]]:
    table: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for product, group, image, ctr in _rows(rows):
        table[str(product)][int(group)][str(image)] = float(ctr)
    per_product: dict[str, float] = {}
    for product, groups in sorted(table.items()):
        images = set().union(*(g.keys() for g in groups.values()))
        if len(groups) < 2 or len(images) < min_images:
            continue
        scores = []
        for a, ctr_a in groups.items():
            for b, ctr_b in groups.items():
                if a == b:
                    continue
                shared = sorted(set(ctr_a) & set(ctr_b))
                if len(shared) < min_images:
                    continue
                value = ndcg_at_k([ctr_a[i] for i in shared], [ctr_b[i] for i in shared], k)
                if not math.isnan(value):
                    scores.append(value)
        if scores:
            per_product[product] = float(np.mean(scores))
    mean = float(np.mean(list(per_product.values()))) if per_product else float("nan")
    return mean, per_product


def _rows(rows: Any) -> Iterable[tuple[Any, Any, Any, Any]]:
    if hasattr(rows, "columns"):  # a pandas frame
        return zip(rows["product_id"], rows["group_id"], rows["image_id"], rows["ctr"])
    return ((r["product_id"], r["group_id"], r["image_id"], r["ctr"]) for r in rows)


def adjusted_rand_index(labels_a: Any, labels_b: Any) -> float:
    a = np.asarray(labels_a).ravel()
    b = np.asarray(labels_b).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labelings differ in length ({len(a)} vs {len(b)})")
    n = len(a)
    if n < 2:
        return 1.0
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(table, (ai, bi), 1)

    def pairs(x: np.ndarray) -> float:
        return float(np.sum(x * (x - 1)) / 2.0)

    index = pairs(table)
    rows, cols = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2.0)
    maximum = (rows + cols) / 2.0
    if maximum == expected:  # both labelings put everything in one cluster (or all singletons)
        return 1.0
    return float((index - expected) / (maximum - expected))
