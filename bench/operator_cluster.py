"""The operator under load on the real control plane: N AudienceGroupings applied at once.

    python bench/operator_cluster.py [--count 200] [--baseline 10]

Starts the cluster tier's control plane (etcd, kube-apiserver, controller manager, scheduler,
KWOK nodes; binaries from `make control-plane`), SeaweedFS, and the operator from the rendered
chart with its own RBAC, exactly as tests/cluster does. Then, in one run: a baseline of
`--baseline` resources, and `--count` resources, each applied with one `kubectl apply`. Prints for
each the seconds until every resource has its children (a Job and its config ConfigMap) and a
status, the operator's RSS before and after, and the per-resource time against the baseline.
Pods are not run (no pod bridge for these namespaces): the operator's own work is measured.
For the load run it also prints where the operator's work went: its API requests per resource by
verb and resource (from the API server's audit log) and its reconciles per resource (its /metrics).
Exit status 1 when a resource did not get its children within the timeout.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def grouping(name: str, data_uri: str) -> dict:
    return {"apiVersion": "osmf.dev/v1alpha1", "kind": "AudienceGrouping",
            "metadata": {"name": name},
            "spec": {"data": {"uri": data_uri}, "userAttributes": ["age", "gender"],
                     "resources": {"gpusPerNode": 0}}}


def apply_and_wait(cp, namespace: str, count: int, data_uri: str, timeout: float) -> dict:
    """Apply `count` AudienceGroupings at once; seconds until each has a Job, a ConfigMap, a status."""
    from tests.cluster.chartinstall import s3_secret
    from tests.cluster.controlplane import wait_for

    cp.create_namespace(namespace)
    cp.apply([s3_secret(namespace)])
    names = {f"ag-{i:04d}" for i in range(count)}
    start = time.monotonic()
    cp.apply([grouping(n, data_uri) for n in sorted(names)], namespace=namespace, timeout=timeout)
    applied = time.monotonic() - start

    def owners(kind: str) -> set[str]:
        items = cp.get_json(kind, "-n", namespace, "-l", "osmf.dev/kind=AudienceGrouping")["items"]
        return {i["metadata"]["labels"]["osmf.dev/name"] for i in items}

    def all_children() -> bool:
        with_status = {o["metadata"]["name"] for o in
                       cp.get_json("audiencegroupings", "-n", namespace)["items"]
                       if o.get("status", {}).get("observedGeneration")}
        return names <= owners("jobs") and names <= owners("configmaps") and names <= with_status

    wait_for(f"{count} AudienceGroupings to get their children", all_children, timeout=timeout,
             interval=1.0)
    return {"count": count, "apply_s": applied, "children_s": time.monotonic() - start}


def reconciles(metrics_text: str) -> float:
    return sum(float(m) for m in re.findall(r'^osmf_reconcile_total\{[^}]*\} ([0-9.e+]+)$', metrics_text, flags=re.M))


def requests_by_kind(events: list[dict], namespace: str) -> collections.Counter:
    """(verb, resource[/subresource]) → count of the operator's audited requests in `namespace`."""
    counts: collections.Counter = collections.Counter()
    for event in events:
        ref = event.get("objectRef") or {}
        if ref.get("namespace") != namespace:
            continue
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        counts[(event["verb"], resource)] += 1
    return counts


def cpu_seconds(cp, operator) -> dict[str, float]:
    """CPU time (user + system) each process of the test cluster has used so far."""
    import psutil

    pids = {name: proc.popen.pid for name, proc in cp.processes.items()}
    pids["operator"] = operator.process().pid
    pids["bench (kubectl excluded)"] = os.getpid()
    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system
        except psutil.Error:
            pass
    return out


def print_breakdown(cp, operator, namespace: str, count: int, reconciles_before: float) -> None:
    counts = requests_by_kind(cp.audit_events(), namespace)
    total = sum(counts.values())
    done = reconciles(operator.metrics()) - reconciles_before
    print(f"operator work per resource: {done / count:.2f} reconciles, {total / count:.2f} API requests:")
    for (verb, resource), n in counts.most_common():
        print(f"  {n / count:6.2f}  {verb} {resource}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--apply-only", action="store_true",
                        help="no operator: only time the one `kubectl apply` of --count resources (the floor under the load run)")
    parser.add_argument("--requeue-seconds", type=float, default=30.0,
                        help="the operator's requeueSeconds and progressIntervalSeconds (default: the settings' "
                             "default, as the chart installs it; the cluster tests use 5 and 2)")
    args = parser.parse_args()

    from tests.cluster.chartinstall import InstalledOperator, render_chart, tier_chart_values
    from tests.cluster.controlplane import ControlPlane, fake_nodes, find_binaries, tier_values
    from tests.cluster.pipeline import upload_tiny_world
    from tests.cluster.podbridge import PodBridge
    from tests.conftest import S3Server, weed_binary

    bins, reason = find_binaries()
    if bins is None:
        print(f"operator_cluster: {reason}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="osmf-bench-cluster-"))
    cp = ControlPlane(bins, work)
    s3 = S3Server(weed_binary(), work / "s3")
    bridge = None
    try:
        t0 = time.monotonic()
        cp.start(kwok_config=ROOT / "tests" / "cluster" / "kwok-stages.yaml")
        cp.add_nodes(fake_nodes(tier_values()["settings"]))
        s3.start()
        cp.install_crds(sorted((ROOT / "crds").glob("*.yaml"))
                        + [ROOT / "tests" / "cluster" / "kserve-crd.yaml"])
        if args.apply_only:
            cp.create_namespace("bench-apply")
            start = time.monotonic()
            cp.apply([grouping(f"ag-{i:04d}", "s3://unused/world") for i in range(args.count)],
                     namespace="bench-apply", timeout=args.timeout)
            print(f"no operator: kubectl apply of {args.count} AudienceGroupings took {time.monotonic() - start:.1f} s "
                  f"(load {os.getloadavg()[0]:.1f})")
            return 0
        bridge = PodBridge(cp, work / "pods")
        bridge.start()
        values = tier_values()
        values["settings"].update(requeueSeconds=args.requeue_seconds, progressIntervalSeconds=args.requeue_seconds)
        chart = render_chart(bins.helm, tier_chart_values(values, s3.endpoint, s3.bucket), work)
        operator = InstalledOperator(cp, bridge, chart)
        operator.install()
        print(f"control plane, S3 and operator up in {time.monotonic() - t0:.1f} s "
              f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; requeueSeconds {args.requeue_seconds:g})")
        os.environ.update(AWS_ENDPOINT_URL=s3.endpoint, AWS_ACCESS_KEY_ID="osmf",
                          AWS_SECRET_ACCESS_KEY="osmf-secret", AWS_REGION="us-east-1")
        data_uri = upload_tiny_world(s3, "world")  # listed by the operator; pods never run here
        rss_idle = operator.rss_bytes()
        base = apply_and_wait(cp, "bench-baseline", args.baseline, data_uri, args.timeout)
        rss_base = operator.rss_bytes()
        before = reconciles(operator.metrics())
        cpu_before = cpu_seconds(cp, operator)
        load = apply_and_wait(cp, "bench-load", args.count, data_uri, args.timeout)
        cpu_after = cpu_seconds(cp, operator)
        rss_loaded = operator.rss_bytes()
        per_base = base["children_s"] / base["count"]
        per_load = load["children_s"] / load["count"]
        print(f"baseline: {base['count']} AudienceGroupings → children in "
              f"{base['children_s']:.1f} s ({per_base:.2f} s each)")
        print(f"load average during the runs: {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min)")
        print(f"load:     {load['count']} AudienceGroupings → children in "
              f"{load['children_s']:.1f} s ({per_load:.2f} s each; apply took "
              f"{load['apply_s']:.1f} s)")
        print(f"per-resource time, load / baseline: {per_load / per_base:.2f}x")
        print(f"operator RSS: {rss_idle / 2**20:.0f} MiB idle → {rss_base / 2**20:.0f} MiB with {args.baseline} "
              f"→ {rss_loaded / 2**20:.0f} MiB with {args.baseline + args.count} resources "
              f"({(rss_loaded - rss_base) / args.count / 1024:.0f} KiB per resource)")
        print_breakdown(cp, operator, "bench-load", args.count, before)
        print("CPU seconds used during the load run, by process:")
        for name, used in sorted(((n, cpu_after[n] - cpu_before.get(n, 0.0)) for n in cpu_after), key=lambda x: -x[1]):
            print(f"  {used:7.1f}  {name}")
        return 0
    except TimeoutError as error:
        print(f"operator_cluster: {error}", file=sys.stderr)
        return 1
    finally:
        if bridge is not None:
            bridge.stop()
        cp.stop()
        s3.stop()


if __name__ == "__main__":
    sys.exit(main())
