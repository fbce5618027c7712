"""Shared fixtures of the job tier: a tiny synthetic world and the grouping / GAIP runs over it.

- `tiny_world` (session): a tiny `osmf_jobs.synth` world written once; returns its root (Path).
- `tiny_grouping_artifact` (session): the AudienceGrouping job (train -> cluster x2 shards -> merge)
  run once on it; returns the run directory (Path).
- `tiny_gaip_artifact` (session): the GAIPDataset job (aggregate x2 -> merge) on that grouping.
- `run_job_step(...)`: drive one step of a job through its real entry point (`main(ctx)` built
  from the JSON config, as `python -m osmf_jobs.<job>` does), in this process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

TINY_ATTRIBUTES = ["age", "gender", "income", "device", "household"]


def tiny_grouping_spec(data: Path, **overrides: Any) -> dict[str, Any]:
    spec = {
        "data": {"uri": data.as_uri()},
        "userAttributes": list(TINY_ATTRIBUTES),
        "model": {"epochs": 4, "batchSize": 1024, "learningRate": 0.01, "heldOutFraction": 0.2, "seed": 0},
        "clustering": {"minGroups": 2, "maxGroups": 4, "silhouetteSampleSize": 200, "maxIterations": 30},
        "privacy": {"minGroupSize": 10},
        "shards": 2,
    }
    spec.update(overrides)
    return spec


def tiny_gaip_spec(**overrides: Any) -> dict[str, Any]:
    spec = {"groupingRef": {"name": "grouping"}, "minImpressions": 5, "split": {"evalFraction": 0.25, "seed": 0}, "shards": 2}
    spec.update(overrides)
    return spec


def job_config(kind: str, spec: dict[str, Any], step: str, run: Path, inputs: dict[str, tuple[str | None, Path]],
               shards: int = 1) -> str:
    return json.dumps({
        "apiVersion": "osmf.dev/v1alpha1", "kind": kind,
        "metadata": {"name": run.name, "namespace": "default", "uid": "uid-test", "generation": 1},
        "spec": spec, "step": step, "shards": shards,
        "run": {"uri": run.as_uri(), "inputHash": run.name},
        "inputs": {name: {"kind": k, "name": name, "uri": p.as_uri()} for name, (k, p) in inputs.items()},
        "codeVersion": "test",
    })


def run_job_step(job: str, kind: str, spec: dict[str, Any], step: str, run: Path,
                 inputs: dict[str, tuple[str | None, Path]], shards: int = 1, shard_index: int = 0) -> None:
    """One step through the job's entry point, in-process (raises what the job raises)."""
    import importlib

    from osmf_jobs.runtime import build_context, load_config
    from tests.factories import job_config_model

    main = importlib.import_module(f"osmf_jobs.{job}.main").main
    previous = os.environ.get("JOB_COMPLETION_INDEX")
    os.environ["JOB_COMPLETION_INDEX"] = str(shard_index)
    try:
        main(build_context(load_config(job_config(kind, spec, step, run, inputs, shards), job_config_model(kind))))
    finally:
        if previous is None:
            os.environ.pop("JOB_COMPLETION_INDEX", None)
        else:
            os.environ["JOB_COMPLETION_INDEX"] = previous


def run_grouping(data: Path, run: Path, **overrides: Any) -> Path:
    spec = tiny_grouping_spec(data, **overrides)
    inputs = {"data": (None, data)}
    run_job_step("grouping", "AudienceGrouping", spec, "train", run, inputs, spec["shards"])
    for index in range(spec["shards"]):
        run_job_step("grouping", "AudienceGrouping", spec, "cluster", run, inputs, spec["shards"], index)
    run_job_step("grouping", "AudienceGrouping", spec, "merge", run, inputs, spec["shards"])
    return run


def run_gaip(grouping: Path, data: Path, run: Path, **overrides: Any) -> Path:
    spec = tiny_gaip_spec(**overrides)
    inputs = {"grouping": ("AudienceGrouping", grouping), "data": (None, data)}
    for index in range(spec["shards"]):
        run_job_step("gaip", "GAIPDataset", spec, "aggregate", run, inputs, spec["shards"], index)
    run_job_step("gaip", "GAIPDataset", spec, "merge", run, inputs, spec["shards"])
    return run


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from osmf_jobs.synth.world import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny-world") / "world"
    generate(root, SynthConfig.tiny(seed=0))
    return root


@pytest.fixture(scope="session")
def tiny_grouping_artifact(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_grouping(tiny_world, tmp_path_factory.mktemp("tiny-grouping") / "grouping")
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_gaip_artifact(tiny_world: Path, tiny_grouping_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_gaip(tiny_grouping_artifact, tiny_world, tmp_path_factory.mktemp("tiny-gaip") / "gaip")
