"""The operator's stage metrics (osmf_operator.metrics) that the chart's alert rules read."""

from __future__ import annotations

from prometheus_client import generate_latest

from osmf_operator.metrics import OperatorMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_resources_by_stage_fold_running_steps_together():
    metrics = OperatorMetrics(clock=Clock())
    metrics.set_stage("GMLLMTraining", "a", "x", "Running:train")
    metrics.set_stage("GMLLMTraining", "a", "y", "Running:merge")
    metrics.set_stage("GMLLMTraining", "a", "z", "Failed")
    assert sample(metrics, "osmf_resources", kind="GMLLMTraining", stage="Running") == 2
    assert sample(metrics, "osmf_resources", kind="GMLLMTraining", stage="Failed") == 1


def test_longest_in_stage_counts_from_entering_the_stage_and_restarts_on_a_change():
    clock = Clock()
    metrics = OperatorMetrics(clock=clock)
    metrics.set_stage("GroupDPORun", "a", "first", "Queued")
    clock.now += 600
    metrics.set_stage("GroupDPORun", "a", "second", "Queued")
    metrics.set_stage("GroupDPORun", "a", "first", "Queued")  # a reconcile in the same stage
    clock.now += 60
    assert sample(metrics, "osmf_longest_in_stage_seconds", kind="GroupDPORun", stage="Queued") == 660
    metrics.set_stage("GroupDPORun", "a", "first", "Running:train")  # admitted by Kueue
    assert sample(metrics, "osmf_longest_in_stage_seconds", kind="GroupDPORun", stage="Queued") == 60
    assert sample(metrics, "osmf_longest_in_stage_seconds", kind="GroupDPORun", stage="Running") == 0
    metrics.set_stage("GroupDPORun", "a", "first", "Running:merge")  # another step, same stage
    clock.now += 30
    assert sample(metrics, "osmf_longest_in_stage_seconds", kind="GroupDPORun", stage="Running") == 30
    metrics.forget("GroupDPORun", "a", "second")
    assert sample(metrics, "osmf_longest_in_stage_seconds", kind="GroupDPORun", stage="Queued") is None
    assert "osmf_longest_in_stage_seconds{" in generate_latest(metrics.registry).decode()
