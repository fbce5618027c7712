"""Per-product grouping of preference embeddings, batched across products (DESIGN §6).

`group_products(problems, ...)` takes one (points [n, d], weights [n]) problem per product — the
points are a product's distinct preference embeddings, the weights how many users share each —
and solves them together, a chunk of products at a time, in padded tensors:

1. on `search_size` users of a sample of at most `sample_size` users per product (their distinct
   points, weighted by how often each was drawn), in the product's top principal components:
   weighted K-means (k-means++ seeding, Lloyd iterations until labels settle, best of `n_init`
   restarts) for every K in [minGroups, maxGroups], all products and restarts at once;
2. silhouette of every K on the whole sample (labels: nearest search centroid), from one pairwise
   distance matrix per product read once for all K (exact silhouette is O(n²)); the chosen K's
   centroids are then refined by Lloyd iterations on all of the product's points;
3. per product: K with the best silhouette (with minGroups 1, K = 1 unless some K >= 2 reaches
   SILHOUETTE_STRUCTURE); fewer users than minGroups x minGroupSize -> one group;
4. the privacy floor: the smallest group under `min_group_size` users merges into the group with
   the nearest centroid, then every point is reassigned to its nearest centroid (what serving does)
   and sizes recounted, until no group is under the floor;
5. groups renumbered by size (0 = largest); representatives: the points nearest to the 15th, 55th
   and 95th percentiles of distance to the centroid, 2 / 3 / 5 of them (10 vectors).

Memory is bounded by the chunk, not by the number of products, so a shard streams its products.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Sequence

import numpy as np
import torch

REPRESENTATIVE_PERCENTILES = ((15, 2), (55, 3), (95, 5))
PCA_COMPONENTS = 16  # K-means and silhouette run in each product's top principal components
SEARCH_SAMPLE = 300  # users of the silhouette sample on which K-means searches K and restarts
SILHOUETTE_STRUCTURE = 0.25  # Kaufman & Rousseeuw: below this there is no substantial structure


@dataclasses.dataclass
class Grouping:
    labels: np.ndarray  # [n] group id per point
    centroids: np.ndarray  # [K, d]
    sizes: np.ndarray  # [K] users per group
    silhouette: float  # of the final grouping on the sample (NaN for one group)
    representatives: np.ndarray  # [K, 10, d]
    k_chosen: int  # K picked by silhouette, before the privacy floor
    merged: int  # groups merged away by the privacy floor


def _pad(problems: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    n_max = max(len(x) for x, _ in problems)
    d = problems[0][0].shape[1]
    X = torch.zeros(len(problems), n_max, d)
    W = torch.zeros(len(problems), n_max)
    for b, (x, w) in enumerate(problems):
        X[b, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.float32))
        W[b, : len(x)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return X, W


def _sq_dist(X: torch.Tensor, C: torch.Tensor, x_sq: torch.Tensor | None = None) -> torch.Tensor:
    """[B, N, d] x [B, K, d] -> [B, N, K] squared distances (x_sq: precomputed [B, N, 1] norms)."""
    if x_sq is None:
        x_sq = (X * X).sum(-1, keepdim=True)
    d = x_sq - 2 * X @ C.transpose(1, 2) + (C * C).sum(-1)[:, None, :]
    return d.clamp_min_(0)


def _principal_subspace(X: torch.Tensor, W: torch.Tensor, components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [B, d], basis [B, d, r]): each problem's top principal components of (X, W).

    Segment structure lives in a few directions; K-means and silhouette there cost a fraction of
    the full width and find the same groups. Centroids and labels are then made in the full space.
    """
    mass = W.sum(1).clamp_min(1e-12)
    mean = (W[..., None] * X).sum(1) / mass[:, None]
    centred = X - mean[:, None, :]
    cov = (centred * W[..., None]).transpose(1, 2) @ centred / mass[:, None, None]  # padding has weight 0
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    return mean, vectors[..., -components:]


def _project(X: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    return (X - mean[:, None, :]) @ basis


def _kmeanspp(X: torch.Tensor, W: torch.Tensor, k: int, uniforms: torch.Tensor) -> torch.Tensor:
    """k-means++ seeding for every problem at once; uniforms [B, k] drive the draws (per-problem streams)."""
    B = X.shape[0]
    rows = torch.arange(B)

    def draw(prob: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        cdf = prob.cumsum(1)
        target = (u * cdf[:, -1]).clamp_max(cdf[:, -1] * (1 - 1e-7))[:, None]
        return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_max(X.shape[1] - 1)

    x_sq = (X * X).sum(-1, keepdim=True)
    first = draw(W, uniforms[:, 0])
    C = X[rows, first][:, None, :]
    best = _sq_dist(X, C, x_sq)[..., 0]
    for j in range(1, k):
        prob = W * best
        prob = torch.where(prob.sum(1, keepdim=True) > 0, prob, W)
        nxt = draw(prob, uniforms[:, j])
        C = torch.cat([C, X[rows, nxt][:, None, :]], dim=1)
        best = torch.minimum(best, _sq_dist(X, C[:, -1:, :], x_sq)[..., 0])
    return C


def _argmin_over_clusters(scores: torch.Tensor) -> torch.Tensor:
    """argmin over axis 1 of [B, K, N] for small K, first minimum winning. torch's argmin over a short
    axis is an order of magnitude slower than its amin/amax there, so: the minimum, then each
    cluster reaching it coded K - j and the largest code taken (3.5x faster than a loop over K)."""
    k = scores.shape[1]
    codes = (k - torch.arange(k, dtype=torch.uint8))[None, :, None]
    hits = scores <= scores.amin(1, keepdim=True)
    return k - (hits * codes).amax(1).long()


def _lloyd(X: torch.Tensor, W: torch.Tensor, C: torch.Tensor, max_iterations: int, tol: float = 1e-4
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lloyd iterations for every problem at once. A problem leaves the batch when its labels stop
    changing or its centroids move less than `tol` x its mean per-dimension variance (scikit-learn's
    criterion)."""
    k = C.shape[1]
    C = C.clone()
    mass_all = W.sum(1).clamp_min(1e-12)
    mean = (W[..., None] * X).sum(1) / mass_all[:, None]
    variance = ((W[..., None] * (X - mean[:, None]) ** 2).sum(1) / mass_all[:, None]).mean(-1)  # [B]
    labels = torch.full(X.shape[:2], -1, dtype=torch.long)
    active = torch.arange(X.shape[0])
    clusters = torch.arange(k)[None, :, None]
    Xa, XTa, Wa = X, X.transpose(1, 2).contiguous(), W
    for _ in range(max_iterations):
        if len(active) == 0:
            break
        Ca = C[active]
        # argmin over K of |c|^2 - 2<c, x> (|x|^2 is the same for every K of a point), laid out
        # [B, K, N] so the reduction runs over the short outer axis, vectorised along N.
        new = _argmin_over_clusters(torch.baddbmm((Ca * Ca).sum(-1)[..., None], Ca, XTa, alpha=-2))  # [B, N]
        changed = (new != labels[active]).any(1)
        labels[active] = new
        members = torch.where(new[:, None, :] == clusters, Wa[:, None, :], 0.0)  # [B, K, N], weighted
        mass = members.sum(-1)  # [B, K]
        updated = torch.where(mass[..., None] > 0, (members @ Xa) / mass.clamp_min(1e-12)[..., None], Ca)
        shift = ((updated - Ca) ** 2).sum((1, 2))
        C[active] = updated
        keep = changed & (shift > tol * variance[active])
        if not bool(keep.all()):  # gather the still-active problems only when some left
            active = active[keep]
            Xa, XTa, Wa = Xa[keep], XTa[keep], Wa[keep]
    dist = _sq_dist(X, C)
    labels = dist.argmin(-1)
    inertia = (dist.min(-1).values * W).sum(1)
    return C, labels, inertia


def _silhouettes(D: torch.Tensor, labelings: list[tuple[torch.Tensor, int]], valid: torch.Tensor) -> list[torch.Tensor]:
    """Mean silhouette per problem of several labelings ([B, S] labels, K) in one pass over D [B, S, S]
    (D is the big operand: reading it once for every K is most of the cost)."""
    onehots = [torch.nn.functional.one_hot(labels, k).float() * valid[..., None] for labels, k in labelings]
    sums = torch.split(D @ torch.cat(onehots, dim=-1), [k for _, k in labelings], dim=-1)
    return [_silhouette_from_sums(part, onehot, valid) for part, onehot in zip(sums, onehots)]


def _silhouette(D: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Mean silhouette per problem. D [B, S, S] distances, labels [B, S], valid [B, S] bool."""
    return _silhouettes(D, [(labels, k)], valid)[0]


def _silhouette_from_sums(sums: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """sums [B, S, K]: each sample point's summed distance to each cluster's members."""
    counts = onehot.sum(1, keepdim=True)  # [B, 1, K]
    own = onehot.bool()
    own_count = (counts * onehot).sum(-1)  # [B, S]
    a = (sums * onehot).sum(-1) / (own_count - 1).clamp_min(1)
    other = torch.where(own | (counts == 0), torch.full_like(sums, float("inf")), sums / counts.clamp_min(1))
    b = other.min(-1).values
    s = (b - a) / torch.maximum(a, b).clamp_min(1e-12)
    s = torch.where((own_count > 1) & torch.isfinite(b), s, torch.zeros_like(s))
    s = s * valid
    return s.sum(1) / valid.sum(1).clamp_min(1)


def _sample_users(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Point indices of a sample of users (without replacement among users)."""
    counts = np.asarray(weights).astype(np.int64)
    total = int(counts.sum())
    if total <= size:
        return np.repeat(np.arange(len(counts)), counts)
    chosen = rng.choice(total, size=size, replace=False)
    return np.searchsorted(np.cumsum(counts), chosen, side="right")


def _representatives(points: np.ndarray, weights: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    dist = np.linalg.norm(points - centroid, axis=1)
    user_dist = np.repeat(dist, np.asarray(weights).astype(np.int64))
    targets = np.percentile(user_dist, [pct for pct, _ in REPRESENTATIVE_PERCENTILES])  # one sort for all three
    reps = []
    for target, (_, count) in zip(targets, REPRESENTATIVE_PERCENTILES):
        gap = np.abs(dist - target)
        nearest = np.argpartition(gap, count)[:count] if len(gap) > count else np.arange(len(gap))
        order = nearest[np.lexsort((nearest, gap[nearest]))]  # by gap, ties by index
        reps += [points[order[i % len(order)]] for i in range(count)]
    return np.stack(reps).astype(np.float32)


NEAR_TIE = 1e-3  # relative gap under which _nearest defers to the serving rule (float32 error is ~1e-6)


def _serving_nearest(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Nearest centroid exactly as `Assigner` computes it (float32 squared differences)."""
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), 8192):  # bounded memory for products with many users
        out[s:s + 8192] = np.argmin(((x[s:s + 8192, None, :] - c[None]) ** 2).sum(-1), axis=1)
    return out


def _nearest(points: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """The serving rule's nearest centroid, at matrix-product speed: |c|² - 2<x, c> decides every
    point whose two nearest centroids are clearly apart; the few near-ties are decided by the
    serving rule itself, so a user's group here is always the group `Assigner.assign` returns."""
    c = np.asarray(cents, dtype=np.float32)
    x = np.asarray(points, dtype=np.float32)
    if len(c) == 1:
        return np.zeros(len(x), dtype=np.int64)
    c_sq = (c * c).sum(1)
    scores = c_sq[None, :] - 2 * (x @ c.T)
    labels = scores.argmin(1)
    two = np.partition(scores, 1, axis=1)[:, :2]
    scale = (x * x).sum(1) + c_sq.max()
    unsure = np.flatnonzero(two[:, 1] - two[:, 0] <= NEAR_TIE * scale)
    if len(unsure):
        labels[unsure] = _serving_nearest(x[unsure], c)
    return labels


def _weighted_means(points: np.ndarray, weights: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """[k, d] weighted mean of each label's points (one matrix product instead of k masked copies)."""
    members = np.zeros((k, len(labels)))
    members[labels, np.arange(len(labels))] = weights
    # Both operands float64: a mixed-dtype matmul skips BLAS and was 100x slower.
    return ((members @ points.astype(np.float64)) / members.sum(1)[:, None]).astype(np.float32)


def _finish(points: np.ndarray, weights: np.ndarray, labels: np.ndarray, k: int, min_group_size: int,
            sample: np.ndarray, with_silhouette: bool = True) -> Grouping:
    """Privacy floor, renumbering by size, representatives, final silhouette (unless the caller
    computes it, batched)."""
    k_chosen = k
    cents = _weighted_means(points, weights, labels, k)
    merged = 0
    while True:
        # Labels always follow the serving rule (nearest stored centroid), so a user's group here
        # is the group `Assigner.assign` returns.
        labels = _nearest(points, cents)
        present = np.unique(labels)
        if len(present) < len(cents):
            cents = cents[present]
            labels = np.searchsorted(present, labels)
        sizes = np.bincount(labels, weights=weights, minlength=len(cents))
        small = [g for g in np.argsort(sizes, kind="stable") if sizes[g] < min_group_size]
        if not small or len(cents) == 1:
            break
        g = small[0]
        others = [h for h in range(len(cents)) if h != g]
        h = others[int(np.argmin([np.linalg.norm(cents[g] - cents[o]) for o in others]))]
        members = (labels == g) | (labels == h)
        cents[h] = np.average(points[members], axis=0, weights=weights[members])
        cents = np.delete(cents, g, axis=0)
        merged += 1
    sizes = np.bincount(labels, weights=weights, minlength=len(cents))
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels, cents, sizes = rank[labels], cents[order], sizes[order]
    reps = np.stack([_representatives(points[labels == g], weights[labels == g], cents[g]) for g in range(len(cents))])
    silhouette = float("nan")
    if with_silhouette and len(cents) > 1 and len(sample) > 2:
        xs = torch.from_numpy(points[sample][None].astype(np.float32))
        D = torch.cdist(xs, xs)
        lab = torch.from_numpy(labels[sample][None])
        silhouette = float(_silhouette(D, lab, torch.ones_like(lab, dtype=torch.bool), len(cents))[0])
    return Grouping(labels.astype(np.int64), cents.astype(np.float32), sizes.astype(np.int64), silhouette, reps,
                    k_chosen, merged)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two labelings split the points the same way (labels may be numbered differently)."""
    pairs = np.unique(a.astype(np.int64) * (int(b.max()) + 1) + b)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def _final_silhouettes(out: list, solvable: list[int], sidx: torch.Tensor, svalid: torch.Tensor, D: torch.Tensor,
                       search_labels: torch.Tensor, search_scores: torch.Tensor) -> None:
    """The final groupings' silhouettes on the sample. Where the final grouping splits the sample as
    the chosen K's search labels did (the usual case: refinement and the privacy floor moved no
    sample user), the search already computed it; the rest at once, one distance matrix per product."""
    labels = torch.stack([torch.from_numpy(out[i].labels)[sidx[b]] for b, i in enumerate(solvable)])
    rows = []
    for b, i in enumerate(solvable):
        n = int(svalid[b].sum())
        if len(out[i].sizes) < 2 or n <= 2:
            continue
        if _same_partition(labels[b, :n].numpy(), search_labels[b, :n].numpy()):
            out[i] = dataclasses.replace(out[i], silhouette=float(search_scores[b]))
        else:
            rows.append(b)
    if rows:
        pick = torch.tensor(rows)
        k = max(len(out[solvable[b]].sizes) for b in rows)
        scores = _silhouette(D[pick], labels[pick], svalid[pick], k)
        for score, b in zip(scores.tolist(), rows):
            out[solvable[b]] = dataclasses.replace(out[solvable[b]], silhouette=score)


def _stream(seed: int, key: str) -> np.random.Generator:
    """A random stream per product: results do not depend on which shard or chunk a product lands in."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def group_products(problems: Sequence[tuple[np.ndarray, np.ndarray]], *, min_groups: int, max_groups: int,
                   sample_size: int, max_iterations: int, seed: int, min_group_size: int, n_init: int = 3,
                   search_size: int = SEARCH_SAMPLE, chunk: int = 32, keys: Sequence[str] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[Grouping]:
    """Group every product's users; `problems[i]` = (distinct points [n_i, d], users per point [n_i]).

    `search_size`: users of the silhouette sample on which K-means searches K and restarts.
    `keys` (e.g. product ids) name each problem's random stream; by default its position.
    """
    out: list[Grouping | None] = [None] * len(problems)
    keys = [str(i) for i in range(len(problems))] if keys is None else [str(k) for k in keys]
    streams = [_stream(seed, key) for key in keys]
    k_lo, k_hi = max(2, min_groups), max_groups
    # Per problem: the silhouette sample, then uniforms for every (K, restart) seeding.
    samples_all = [_sample_users(w, sample_size, streams[i]) for i, (_, w) in enumerate(problems)]
    seeds_all = [streams[i].random((max(k_hi - k_lo + 1, 0), n_init, max(k_hi, 1))).astype(np.float32) for i in range(len(problems))]
    searches_all = [streams[i].permutation(samples_all[i])[:search_size] for i in range(len(problems))]
    # Group products of similar size together so padding stays small.
    order = sorted(range(len(problems)), key=lambda i: len(problems[i][0]))
    done = 0
    for start in range(0, len(order), chunk):
        ids = order[start:start + chunk]
        samples = {i: samples_all[i] for i in ids}
        solvable = [i for i in ids if k_hi >= 2 and len(problems[i][0]) >= 2
                    and problems[i][1].sum() >= max(min_groups, 2) * min_group_size]
        for i in ids:
            if i not in solvable:
                x, w = problems[i]
                out[i] = _finish(np.asarray(x, np.float32), np.asarray(w, np.float64), np.zeros(len(x), np.int64), 1,
                                 min_group_size, samples[i])
        if solvable:
            S = max(len(samples[i]) for i in solvable)
            sidx = torch.zeros(len(solvable), S, dtype=torch.long)
            for b, i in enumerate(solvable):
                sidx[b, : len(samples[i])] = torch.from_numpy(samples[i])
            Xs, svalid = _pad([(problems[i][0][samples[i]], np.ones(len(samples[i]))) for i in solvable])
            svalid = svalid > 0
            if Xs.shape[-1] > PCA_COMPONENTS:  # the subspace of the sample's users: the same directions, half the work
                mean, basis = _principal_subspace(Xs, svalid.float(), PCA_COMPONENTS)
                Xs = _project(Xs, mean, basis)
                # Each product projected before padding: the full-width points are never copied.
                X, W = _pad([(_project(torch.from_numpy(np.asarray(problems[i][0], np.float32))[None], mean[b:b + 1], basis[b:b + 1])[0].numpy(),
                              problems[i][1]) for b, i in enumerate(solvable)])
            else:
                X, W = _pad([problems[i] for i in solvable])
            D = torch.cdist(Xs, Xs)
            # The search over K and restarts runs on `search_size` of the silhouette sample's users (their
            # distinct points, weighted by how often each was drawn): centroids good enough for
            # silhouette to tell the K values apart, at a fraction of the Lloyd work (most of the
            # search's time). Silhouette then scores every K on the whole sample, and the chosen K is
            # refined on all points from the search's centroids (a few iterations).
            Xq, Wq = _pad([(X[b, np.unique(searches_all[i])].numpy(), np.bincount(searches_all[i])[np.unique(searches_all[i])])
                           for b, i in enumerate(solvable)])
            Xqr, Wqr = Xq.repeat(n_init, 1, 1), Wq.repeat(n_init, 1)
            best_centroids, sample_labels = {}, []
            for k in range(k_lo, k_hi + 1):
                u = torch.from_numpy(np.stack([seeds_all[i][k - k_lo] for i in solvable]))  # [B, n_init, k_hi]
                C0 = _kmeanspp(Xqr, Wqr, k, u.transpose(0, 1).reshape(n_init * len(solvable), -1))
                C, _, inertia = _lloyd(Xqr, Wqr, C0, max_iterations)
                pick = inertia.view(n_init, len(solvable)).argmin(0)
                C = C.view(n_init, len(solvable), k, -1)[pick, torch.arange(len(solvable))]
                best_centroids[k] = C
                sample_labels.append((_sq_dist(Xs, C).argmin(-1), k))
            best_score, best_k = None, None
            for (_, k), score in zip(sample_labels, _silhouettes(D, sample_labels, svalid)):
                if best_score is None:
                    best_score, best_k = score, torch.full_like(score, k, dtype=torch.long)
                else:
                    better = score > best_score
                    best_k = torch.where(better, torch.full_like(best_k, k), best_k)
                    best_score = torch.maximum(score, best_score)
            search_labels = torch.stack([sample_labels[int(k) - k_lo][0][b] for b, k in enumerate(best_k.tolist())])
            best_labels = torch.zeros(X.shape[:2], dtype=torch.long)
            for k in best_k.unique().tolist():
                rows = torch.nonzero(best_k == k).squeeze(1)
                _, labels, _ = _lloyd(X[rows], W[rows], best_centroids[k][rows], max_iterations)
                best_labels[rows] = labels
            for b, i in enumerate(solvable):
                x, w = problems[i]
                n = len(x)
                labels = best_labels[b, :n].numpy().astype(np.int64)
                k = int(best_k[b])
                if min_groups <= 1 and float(best_score[b]) < SILHOUETTE_STRUCTURE:
                    labels, k = np.zeros(n, np.int64), 1
                present = np.unique(labels)
                if len(present) < k:  # an empty cluster: renumber
                    labels = np.searchsorted(present, labels)
                    k = len(present)
                out[i] = _finish(np.asarray(x, np.float32), np.asarray(w, np.float64), labels, k, min_group_size, samples[i],
                                 with_silhouette=False)
            _final_silhouettes(out, solvable, sidx, svalid, D, search_labels, best_score)
        done += len(ids)
        if progress:
            progress(done, len(problems))
    return [g for g in out if g is not None]
