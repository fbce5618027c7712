"""The operator under load on the real control plane: N AudienceGroupings applied at once.

    python bench/operator_cluster.py [--count 200] [--baseline 10]

Starts the cluster tier's control plane (etcd, kube-apiserver, controller manager, scheduler,
KWOK nodes; binaries from `make control-plane`), SeaweedFS, and the operator from the rendered
chart with its own RBAC, exactly as tests/cluster does. Then, in one run: a baseline of
`--baseline` resources, and `--count` resources, each applied with one `kubectl apply`. Prints for
each the seconds until every resource has its children (a Job and its config ConfigMap) and a
status, the operator's RSS before and after, and the per-resource time against the baseline.
Pods are not run (no pod bridge for these namespaces): the operator's own work is measured.
Exit status 1 when a resource did not get its children within the timeout.
"""

from __future__ import annotations

import argparse
import os
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
    cp.apply([grouping(n, data_uri) for n in sorted(names)], namespace=namespace)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900)
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
        bridge = PodBridge(cp, work / "pods")
        bridge.start()
        chart = render_chart(bins.helm, tier_chart_values(tier_values(), s3.endpoint, s3.bucket),
                             work)
        operator = InstalledOperator(cp, bridge, chart)
        operator.install()
        print(f"control plane, S3 and operator up in {time.monotonic() - t0:.1f} s "
              f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
        os.environ.update(AWS_ENDPOINT_URL=s3.endpoint, AWS_ACCESS_KEY_ID="osmf",
                          AWS_SECRET_ACCESS_KEY="osmf-secret", AWS_REGION="us-east-1")
        data_uri = upload_tiny_world(s3, "world")  # listed by the operator; pods never run here
        rss_idle = operator.rss_bytes()
        base = apply_and_wait(cp, "bench-baseline", args.baseline, data_uri, args.timeout)
        load = apply_and_wait(cp, "bench-load", args.count, data_uri, args.timeout)
        rss_loaded = operator.rss_bytes()
        per_base = base["children_s"] / base["count"]
        per_load = load["children_s"] / load["count"]
        print(f"baseline: {base['count']} AudienceGroupings → children in "
              f"{base['children_s']:.1f} s ({per_base:.2f} s each)")
        print(f"load:     {load['count']} AudienceGroupings → children in "
              f"{load['children_s']:.1f} s ({per_load:.2f} s each; apply took "
              f"{load['apply_s']:.1f} s)")
        print(f"per-resource time, load / baseline: {per_load / per_base:.2f}x")
        print(f"operator RSS: {rss_idle / 2**20:.0f} MiB idle → {rss_loaded / 2**20:.0f} MiB "
              f"with {args.baseline + args.count} resources")
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
