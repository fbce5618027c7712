"""Per-product grouping: the batched clustering of `osmf_jobs.paag.cluster` against a naive loop.

    python bench/grouping.py [--products 200] [--users 2000] [--dim 128] [--seed 0]

Data: per product, preference-like embeddings of `--users` users drawn around 2-5 segment centres
in `--dim` dimensions (noise and centre spread vary by product, so silhouette has real work to
do); the generating segments are the truth for ARI. Products are generated chunk by chunk, as the
grouping job's cluster step embeds them, so nothing holds all products at once.

- naive: for each product, for each K in 2..5, scikit-learn `KMeans` (its defaults: k-means++, one
  initialisation) and `silhouette_score` on all points; K = best silhouette.
- ours: `group_products` with the job's defaults (in each product's top 16 principal components,
  32 products at once: K-means for every K and 3 restarts on 300 users of a 1,000-user sample,
  silhouette on the whole sample from one distance matrix per product, the chosen K refined on all
  users; centroids and labels in the full space).

Times are of the clustering calls only (generating the data is the same work for both). Each method runs in its own process so peak RSS (ru_maxrss) is its own; ours also runs at twice
the products to show its memory does not grow with them. Target (issue 3): >= 20x faster at equal
ARI (+-0.01) with >= 200 products x 2,000 users. The machine's load is printed: on a shared
machine absolute times move, the ratio less so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHUNK = 32
K_RANGE = (2, 5)
N_INIT = 3


def product_data(seed: int, index: int, users: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, index])
    k = int(rng.integers(K_RANGE[0], K_RANGE[1] + 1))
    centres = rng.normal(size=(k, dim)) * rng.uniform(0.35, 0.6)
    weights = rng.dirichlet(np.full(k, 4.0))
    labels = rng.choice(k, size=users, p=weights)
    points = centres[labels] + rng.normal(size=(users, dim)) * rng.uniform(0.8, 1.2) / np.sqrt(dim) * 2
    return points.astype(np.float32), labels


def run_naive(products: int, users: int, dim: int, seed: int) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    aris, seconds = [], 0.0
    for p in range(products):
        x, truth = product_data(seed, p, users, dim)
        started = time.perf_counter()
        best, best_labels = -2.0, None
        for k in range(K_RANGE[0], K_RANGE[1] + 1):
            labels = KMeans(n_clusters=k, random_state=seed).fit_predict(x)  # scikit-learn's defaults
            score = silhouette_score(x, labels)
            if score > best:
                best, best_labels = score, labels
        seconds += time.perf_counter() - started
        aris.append(adjusted_rand_score(truth, best_labels))
    return {"aris": aris, "seconds": seconds}


def run_ours(products: int, users: int, dim: int, seed: int) -> dict:
    from osmf_jobs.metrics import adjusted_rand_index
    from osmf_jobs.paag.cluster import group_products

    aris, seconds = [], 0.0
    for start in range(0, products, CHUNK):
        ids = range(start, min(start + CHUNK, products))
        data = [product_data(seed, p, users, dim) for p in ids]
        started = time.perf_counter()
        groupings = group_products([(x, np.ones(len(x))) for x, _ in data], min_groups=K_RANGE[0], max_groups=K_RANGE[1],
                                   sample_size=1000, max_iterations=50, seed=seed, min_group_size=1, n_init=N_INIT,
                                   chunk=CHUNK, keys=[str(p) for p in ids])
        seconds += time.perf_counter() - started
        aris += [adjusted_rand_index(truth, g.labels) for (_, truth), g in zip(data, groupings)]
    return {"aris": aris, "seconds": seconds}


def worker(method: str, products: int, users: int, dim: int, seed: int) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OSMF_BENCH_THREADS", "2")))
    result = (run_ours if method == "ours" else run_naive)(products, users, dim, seed)
    seconds = result["seconds"]  # clustering only: generating the data is the same work for both
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    aris = np.asarray(result["aris"])
    print(json.dumps({"method": method, "products": products, "seconds": seconds, "median_ari": float(np.median(aris)),
                      "mean_ari": float(aris.mean()), "peak_rss_mb": peak_mb}))


def measure(method: str, products: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--products", str(products), "--users", str(args.users),
           "--dim", str(args.dim), "--seed", str(args.seed)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "jobs"), str(REPO / "operator"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["ours", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.products, args.users, args.dim, args.seed)
        return
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {args.products} products x {args.users} users, dim {args.dim}")
    ours = measure("ours", args.products, args)
    naive = measure("naive", args.products, args)
    ours_double = measure("ours", 2 * args.products, args)
    for r in (naive, ours, ours_double):
        print(f"{r['method']:>5} {r['products']:>5} products: {r['seconds']:8.1f} s  median ARI {r['median_ari']:.4f}  "
              f"mean ARI {r['mean_ari']:.4f}  peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"speed-up {naive['seconds'] / ours['seconds']:.1f}x; ARI difference (ours - naive, mean) {ours['mean_ari'] - naive['mean_ari']:+.4f}; "
          f"peak RSS at {2 * args.products} vs {args.products} products: {ours_double['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
