"""Prometheus metrics of the operator: reconciles (count, errors, duration) by kind and resources by stage."""

from __future__ import annotations

import threading
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class _StageCollector(Collector):
    def __init__(self, metrics: "OperatorMetrics"):
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("osmf_resources", "OSMF resources by kind and stage.", labels=["kind", "stage"])
        for (kind, stage), count in sorted(self.metrics.stage_counts().items()):
            family.add_metric([kind, stage], count)
        yield family


class OperatorMetrics:
    """One registry per operator instance (tests run several in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter("osmf_reconcile", "Reconciles by kind.", ["kind"], registry=self.registry)
        self.errors = Counter("osmf_reconcile_errors", "Reconciles that failed, by kind and error.", ["kind", "error"],
                              registry=self.registry)
        self.duration = Histogram("osmf_reconcile_duration_seconds", "Time per reconcile, by kind.", ["kind"],
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.children = Counter("osmf_children_created", "Child objects created, by kind of child.", ["kind"],
                                registry=self.registry)
        self._stages: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self.registry.register(_StageCollector(self))

    def set_stage(self, kind: str, namespace: str, name: str, stage: str) -> None:
        with self._lock:
            self._stages[(kind, namespace, name)] = stage

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._stages.pop((kind, namespace, name), None)

    def stage_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for (kind, _, _), stage in self._stages.items():
                key = (kind, stage.split(":", 1)[0])  # Running:train → Running: bounded label values
                counts[key] = counts.get(key, 0) + 1
        return counts

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)
