"""Prometheus metrics of the operator: reconciles (count, errors, duration) by kind, resources by stage,
and how long the longest-waiting resource of a kind has been in its stage (the queue-wait alert's metric)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


def stage_family(stage: str) -> str:
    """Running:train → Running: bounded label values."""
    return stage.split(":", 1)[0]


class _StageCollector(Collector):
    def __init__(self, metrics: "OperatorMetrics"):
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("osmf_resources", "OSMF resources by kind and stage.", labels=["kind", "stage"])
        for (kind, stage), count in sorted(self.metrics.stage_counts().items()):
            family.add_metric([kind, stage], count)
        yield family
        longest = GaugeMetricFamily(
            "osmf_longest_in_stage_seconds",
            "Seconds the longest-staying resource of a kind has been in its current stage, as this operator "
            "has seen it (counted from its start for resources already there).",
            labels=["kind", "stage"])
        for (kind, stage), seconds in sorted(self.metrics.longest_in_stage().items()):
            longest.add_metric([kind, stage], seconds)
        yield longest


class OperatorMetrics:
    """One registry per operator instance (tests run several in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time):
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        self.reconciles = Counter("osmf_reconcile", "Reconciles by kind.", ["kind"], registry=self.registry)
        self.errors = Counter("osmf_reconcile_errors", "Reconciles that failed, by kind and error.", ["kind", "error"],
                              registry=self.registry)
        self.duration = Histogram("osmf_reconcile_duration_seconds", "Time per reconcile, by kind.", ["kind"],
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.children = Counter("osmf_children_created", "Child objects created, by kind of child.", ["kind"],
                                registry=self.registry)
        # (kind, namespace, name) → (stage family, when this operator first saw it in that stage)
        self._stages: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.registry.register(_StageCollector(self))

    def set_stage(self, kind: str, namespace: str, name: str, stage: str) -> None:
        family = stage_family(stage)
        with self._lock:
            key = (kind, namespace, name)
            previous = self._stages.get(key)
            if previous is None or previous[0] != family:
                self._stages[key] = (family, self.clock())

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._stages.pop((kind, namespace, name), None)

    def stage_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for (kind, _, _), (stage, _) in self._stages.items():
                counts[(kind, stage)] = counts.get((kind, stage), 0) + 1
        return counts

    def longest_in_stage(self) -> dict[tuple[str, str], float]:
        now = self.clock()
        longest: dict[tuple[str, str], float] = {}
        with self._lock:
            for (kind, _, _), (stage, since) in self._stages.items():
                longest[(kind, stage)] = max(longest.get((kind, stage), 0.0), now - since)
        return longest

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)
