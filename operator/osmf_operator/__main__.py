"""`python -m osmf_operator`: run the kopf operator (what the Helm chart's Deployment starts)."""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m osmf_operator", description="The OSMF Kubernetes operator.")
    parser.add_argument("--liveness", metavar="URL", default="http://0.0.0.0:8080/healthz",
                        help="kopf's liveness endpoint for the probes (default: %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port; 0 turns it off (default: %(default)s)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--peering", metavar="NAME",
                        help="run with kopf peering under this name (several replicas); default: standalone (one replica)")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority (the highest reconciles, the others pause); default: the oldest replica wins")
    return parser.parse_args(argv)


def seniority_priority(now_ns: int, tiebreak: int) -> int:
    """A peering priority that falls with start time, so the oldest replica reconciles.

    kopf pauses every operator that sees a live peer of higher *or equal* priority, so replicas of one
    Deployment must differ. Oldest-first means a newcomer (a rollout's new pod, a restarted replica)
    waits instead of taking over from a replica mid-work; `tiebreak` (0-999) separates replicas started
    in the same millisecond."""
    return -(now_ns // 1_000_000) * 1000 - tiebreak


# glibc's mallopt(M_ARENA_MAX): by default each thread that allocates may get its own malloc arena
# (up to 8 per core), and memory freed in one stays mapped there. The operator's worker threads parse
# API responses in turn, so arenas multiplied its resident memory (docs/operator.md, "Memory").
M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """Before any thread starts; a no-op where the C library is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit_malloc_arenas()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kubernetes.client.rest").setLevel(logging.WARNING)

    import kopf

    from .handlers import Operator, register
    from .kube import Kube
    from .metrics import OperatorMetrics
    from .settings import SettingsError, load_settings

    try:
        settings = load_settings()  # once, at start-up; a settings change rolls the pod
    except SettingsError as error:
        print(f"osmf-operator: {error}", file=sys.stderr)
        return 2
    metrics = OperatorMetrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    operator = Operator(settings, Kube.from_config(), metrics)
    registry = register(kopf.OperatorRegistry(), operator)
    # kopf's own connection uses the same credentials as the operator's client (in-cluster or kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)
    priority = args.priority
    if args.peering is not None and priority is None:
        priority = seniority_priority(time.time_ns(), random.SystemRandom().randrange(1000))
    kopf.run(
        registry=registry,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        clusterwide=not settings.watched_namespaces,
        namespaces=settings.watched_namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
