"""Serving latency: in-process assignment and HTTP through the kserve server, each beside a naive baseline.

    python bench/serving.py [--requests 2000] [--rate 200] [--products 48] [--grouping URI --campaign URI]

Two measurements, each with the osmf path and a naive baseline in the same run on the same requests:

1. In-process assignment (GroupImagePredictor.assign: product + viewer attributes → group → image URI),
   sequential calls timed one by one. Baseline: what a predictor without caching does per request —
   compute the viewer's preference embedding (Assigner.embed, numpy), take the nearest of the product's
   centroids, look the image up.
2. HTTP v1 through `kserve.ModelServer` on loopback (a server process with both models registered,
   gRPC off), one keep-alive connection, requests sent at a fixed rate (open loop: request i is due at
   t0 + i/rate; latency counts from when it was due, so a slow reply delays and penalises the next).

Requests: uniform over products; viewer attributes drawn uniformly from the synthetic world's
attribute levels (all of which the grouping allows, as in the demo). By default the grouping is a random PAAG model
at the production sizes (embedding 128, 16 title tokens of 384, 16 image tokens of 128) over 48
products with 2-5 groups each; latency depends on those sizes, not on weight values. `--grouping` and
`--campaign` bench real runs instead (e.g. from `osmf demo --artifacts DIR`).

The server's CPU time per request (from /proc) is printed too: on a shared machine latency percentiles
move with other processes' load, CPU per request much less.

Targets (issue 6, 2 cores): in-process p99 ≤ 0.2 ms; HTTP p99 ≤ 5 ms. Prints a table, the ratios
baseline / osmf, and one JSON line.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from osmf_core.layout import Campaign

ROOT = Path(__file__).resolve().parents[1]
for folder in ("jobs", "operator"):  # runnable from a bare checkout
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))

TARGET_INPROCESS_P99_MS = 0.2
TARGET_HTTP_P99_MS = 5.0


# ---- bench artifacts ---------------------------------------------------------------------------


def build_artifacts(root: Path, products: int, seed: int = 0) -> tuple[str, str]:
    """A grouping artifact (paag layout: model/config.json, model/weights.npz, groups.parquet) and a
    campaign run (campaign.json) for `products` products; returns their URIs."""
    import pandas as pd
    import torch

    from osmf_core.layout import Grouping
    from osmf_jobs.paag.assign import Assigner
    from osmf_jobs.paag.model import PreferenceModel, export_arrays
    from osmf_jobs.synth.world import ATTRIBUTES

    rng = np.random.default_rng(seed)
    grouping, campaign = root / "grouping", root / "campaign"
    (grouping / "model").mkdir(parents=True, exist_ok=True)
    campaign.mkdir(parents=True, exist_ok=True)
    vocab = {a: [str(v) for v in values] for a, values in ATTRIBUTES.items()}  # the demo allows every attribute
    torch.manual_seed(seed)
    model = PreferenceModel([len(v) for v in vocab.values()], text_dim=384, image_token_dim=128, creative_dim=64, d=128,
                            n_products=products, n_categories=4)
    ids = [f"p{i:04d}" for i in range(products)]
    arrays = export_arrays(
        model, rng.normal(size=(products, 16, 384)).astype(np.float32), rng.random((products, 16)) < 0.7,
        rng.normal(size=(products, 16, 128)).astype(np.float32), np.zeros((0, 64), np.float32),
        np.zeros(64, np.float32), np.ones(64, np.float32), rng.integers(1, 5, size=products),
    )
    config = {"attributes": list(vocab), "vocab": vocab, "products": ids, "creatives": []}
    (grouping / Grouping.MODEL_CONFIG).write_text(json.dumps(config))
    np.savez(grouping / Grouping.MODEL_WEIGHTS, **arrays)
    assigner = Assigner(config, arrays)
    groups, entries = [], []
    for pid in ids:
        k = int(rng.integers(2, 6))
        # Centroids: embeddings of k random viewers of the product, so the nearest-centroid choice is real.
        seeds = np.stack([rng.integers(1, len(v) + 1, size=k) for v in vocab.values()], axis=1)
        centroids = assigner.embed_many([pid] * k, seeds)
        for g in range(k):
            groups.append({"product_id": pid, "group_id": g, "size": 100, "centroid": centroids[g].tolist(),
                           "representatives": [centroids[g].tolist()] * 10, "silhouette": 0.3})
        images = [{"group_id": g, "size": 100, "prompt": "", "image": Campaign.group_image(pid, g, 0),
                   "image_uri": f"s3://bench/campaign/{Campaign.group_image(pid, g, 0)}"} for g in range(k)]
        entries.append({"product_id": pid, "groups": images,
                        "onesize": {"image": Campaign.audience_image(pid, 0), "image_uri": f"s3://bench/campaign/{Campaign.audience_image(pid, 0)}"}})
    pd.DataFrame(groups).to_parquet(grouping / Grouping.GROUPS)
    (campaign / Campaign.CAMPAIGN_JSON).write_text(json.dumps({"name": "bench", "grouping": {"uri": grouping.as_uri()}, "products": entries}))
    return campaign.as_uri(), grouping.as_uri()


def requests_for(products: list[str], n: int, seed: int = 1) -> list[dict]:
    from osmf_jobs.synth.world import ATTRIBUTES

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        user = {a: (int(v) if isinstance(v, (int, np.integer)) else str(v)) for a, values in ATTRIBUTES.items()
                for v in [values[int(rng.integers(len(values)))]]}
        out.append({"product_id": products[int(rng.integers(len(products)))], "user": user})
    return out


# ---- the two predictors ----------------------------------------------------------------------


def predictors(campaign: str, grouping: str):
    from osmf_jobs.serving.predictor import GroupImagePredictor

    class NaivePredictor(GroupImagePredictor):
        """The baseline: the viewer's preference embedding recomputed for every request, no caches."""

        def _precompute(self):
            return {}

        def group_of(self, product_id, user):
            e = self.assigner.embed(product_id, user)
            d = ((self.assigner.centroids[product_id] - e) ** 2).sum(1)
            return int(self.assigner.group_ids[product_id][int(np.argmin(d))])

    return (GroupImagePredictor("campaign", campaign_uri=campaign, grouping_uri=grouping),
            NaivePredictor("naive", campaign_uri=campaign, grouping_uri=grouping))


def serve(port: int, campaign: str, grouping: str) -> None:
    """The server process: both models in one kserve ModelServer, configured as `python -m osmf_jobs.serving` does."""
    from osmf_jobs.serving.server import parser, start

    models = predictors(campaign, grouping)
    for model in models:
        model.load()
    args, _ = parser().parse_known_args([f"--http_port={port}"])
    start(list(models), args)


# ---- measuring -------------------------------------------------------------------------------


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "n": len(a)}


def in_process(campaign: str, grouping: str, reqs: list[dict]) -> dict[str, dict]:
    results = {}
    for model in predictors(campaign, grouping):
        start = time.perf_counter()
        model.load()
        load_s = time.perf_counter() - start
        for r in reqs[:200]:  # warm the interpreter paths, not the caches (those start from load())
            model.assign(r["product_id"], r["user"]) if model.name == "naive" else None
        times, answers = [], []
        for r in reqs:
            t = time.perf_counter_ns()
            answers.append(model.assign(r["product_id"], r["user"]))
            times.append((time.perf_counter_ns() - t) / 1e6)
        results[model.name] = {**percentiles(times), "load_s": load_s, "answers": answers}
    if results["campaign"]["answers"] != results["naive"]["answers"]:
        diff = sum(a != b for a, b in zip(results["campaign"]["answers"], results["naive"]["answers"]))
        print(f"note: {diff} of {len(reqs)} in-process answers differ between osmf and the baseline (float ties)", file=sys.stderr)
    for r in results.values():
        r.pop("answers")
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/models/naive")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc), so server cost shows apart from scheduling noise."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_phase(port: int, model: str, reqs: list[dict], rate: float) -> tuple[dict, list]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    bodies = [json.dumps({"instances": [r]}).encode() for r in reqs]
    for body in bodies[:50]:  # warm-up: connection, interpreter paths
        conn.request("POST", f"/v1/models/{model}:predict", body, headers)
        conn.getresponse().read()
    latencies, answers = [], []
    interval = 1.0 / rate
    t0 = time.perf_counter() + 0.05
    for i, body in enumerate(bodies):
        due = t0 + i * interval
        while (now := time.perf_counter()) < due:
            if due - now > 0.002:
                time.sleep(due - now - 0.001)
        conn.request("POST", f"/v1/models/{model}:predict", body, headers)
        response = conn.getresponse()
        data = response.read()
        end = time.perf_counter()
        if response.status != 200:
            raise RuntimeError(f"{model}: HTTP {response.status}: {data[:300]!r}")
        latencies.append((end - due) * 1000)
        answers.append(json.loads(data)["predictions"][0])
    conn.close()
    return percentiles(latencies), answers


def over_http(campaign: str, grouping: str, reqs: list[dict], rate: float, workdir: Path) -> dict[str, dict]:
    port = free_port()
    log = workdir / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--campaign", campaign, "--grouping", grouping],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_ready(port, proc, log)
        results, answers = {}, {}
        for model in ("campaign", "naive"):
            cpu = process_cpu_seconds(proc.pid)
            results[model], answers[model] = http_phase(port, model, reqs, rate)
            # the 50 warm-up requests ran on the server too
            results[model]["server_cpu_ms"] = (process_cpu_seconds(proc.pid) - cpu) * 1000 / (len(reqs) + 50)
        if answers["campaign"] != answers["naive"]:
            diff = sum(a != b for a, b in zip(answers["campaign"], answers["naive"]))
            print(f"note: {diff} of {len(reqs)} HTTP answers differ between osmf and the baseline (float ties)", file=sys.stderr)
        return results
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement (default 2000: 10 s at 200/s)")
    parser.add_argument("--rate", type=float, default=200.0, help="HTTP requests per second (default 200)")
    parser.add_argument("--products", type=int, default=48, help="products of the generated grouping (default 48)")
    parser.add_argument("--campaign", help="a campaign run URI (default: generated)")
    parser.add_argument("--grouping", help="its grouping run URI (default: generated, or the one campaign.json names)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.campaign, args.grouping)
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="osmf-bench-serving-"))
    campaign, grouping = args.campaign, args.grouping
    if campaign is None:
        campaign, grouping = build_artifacts(workdir, args.products)
    from osmf_jobs.serving.catalog import CampaignImages, read_campaign
    from osmf_core.store import open_store

    images = CampaignImages.from_manifest(read_campaign(open_store(campaign)))
    grouping = grouping or images.grouping_uri
    reqs = requests_for(sorted(images.products), args.requests)
    load = os.getloadavg()[0]
    print(f"serving bench: {len(images.products)} products, {args.requests} requests per measurement, HTTP at {args.rate:g}/s; "
          f"cores {os.cpu_count()}, load average {load:.2f}")
    local = in_process(campaign, grouping, reqs)
    remote = over_http(campaign, grouping, reqs, args.rate, workdir)

    print(f"\n{'measurement':<24}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}   target")
    for label, rows, target in (("in-process", local, TARGET_INPROCESS_P99_MS), ("HTTP v1 loopback", remote, TARGET_HTTP_P99_MS)):
        for name, tag in (("campaign", "osmf"), ("naive", "baseline")):
            r = rows[name]
            mark = f"p99 ≤ {target:g} ms: {'met' if r['p99'] <= target else 'MISSED'}" if name == "campaign" else ""
            print(f"{label + ' ' + tag:<24}{r['p50']:>10.4f}{r['p99']:>10.4f}{r['mean']:>10.4f}   {mark}")
        print(f"{'':<24}baseline/osmf: p50 ×{rows['naive']['p50'] / rows['campaign']['p50']:.1f}, p99 ×{rows['naive']['p99'] / rows['campaign']['p99']:.1f}")
    print(f"HTTP server CPU per request: osmf {remote['campaign']['server_cpu_ms']:.3f} ms, baseline {remote['naive']['server_cpu_ms']:.3f} ms "
          f"(×{remote['naive']['server_cpu_ms'] / remote['campaign']['server_cpu_ms']:.2f}); kserve's own stack is most of it")
    print(f"osmf load (incl. precomputed groups): {local['campaign']['load_s']:.2f} s; baseline load {local['naive']['load_s']:.2f} s; "
          f"load average now {os.getloadavg()[0]:.2f}")
    summary = {"bench": "serving", "products": len(images.products), "requests": args.requests, "rate": args.rate,
               "in_process_ms": {k: {m: round(v[m], 5) for m in ("p50", "p99", "mean")} for k, v in local.items()},
               "http_ms": {k: {m: round(v[m], 4) for m in ("p50", "p99", "mean", "server_cpu_ms")} for k, v in remote.items()},
               "targets_met": {"in_process_p99": local["campaign"]["p99"] <= TARGET_INPROCESS_P99_MS,
                               "http_p99": remote["campaign"]["p99"] <= TARGET_HTTP_P99_MS}}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
