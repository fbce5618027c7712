"""The local runtime end to end with stand-in jobs: ordering, caching, retries, failures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from tests.factories import body, reward_body

from osmf_core.api import KINDS, parse_resource
from osmf_core.store import open_store
from osmf_operator.local.executor import LocalExecutor
from osmf_operator.local.runner import LocalRuntime

REPO = Path(__file__).resolve().parents[2]
STANDIN = "tests.local.standin_job"


def pipeline(data_uri: str, **grouping_spec) -> list[dict]:
    return [
        body("AudienceGrouping", data={"uri": data_uri}, shards=2, **grouping_spec),
        body("GAIPDataset"),
        body("GMLLMTraining"),
        reward_body(),
        body("GroupDPORun"),
        body("AdImageCampaign"),
    ]


@pytest.fixture
def world(tmp_path: Path) -> Path:
    data = tmp_path / "world"
    data.mkdir()
    (data / "users.parquet").write_bytes(b"not read by stand-ins")
    return data


def run(tmp_path: Path, docs: list[dict], **env: str):
    log = tmp_path / "ran.log"
    executor = LocalExecutor(
        tmp_path / "work", modules={kind: STANDIN for kind in KINDS},
        env={"PYTHONPATH": str(REPO), "STANDIN_LOG": str(log), **env},
    )
    runtime = LocalRuntime(str(tmp_path / "artifacts"), console=Console(file=open(os.devnull, "w")), executor=executor)
    result = runtime.run([parse_resource(d) for d in docs])
    ran = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return runtime, result, ran


def condition(resource, type_):
    return next((c.status, c.reason) for c in resource.status.conditions if c.type == type_)


def test_pipeline_runs_in_dependency_order_and_writes_the_artifact_layout(tmp_path, world):
    docs = pipeline(world.as_uri())
    runtime, result, ran = run(tmp_path, list(reversed(docs)))  # applied in any order
    assert result.succeeded(), [(r.name, r.status.stage) for r in result.resources]
    kinds = [line.split("/")[0] for line in ran]
    assert kinds.index("GAIPDataset") > max(i for i, k in enumerate(kinds) if k == "AudienceGrouping")
    assert ran.index("GroupDPORun/dpo:train:0") > ran.index("GMLLMTraining/grm:train:0") > ran.index("GMLLMTraining/gmllm:train:0")
    assert sorted(l for l in ran if l.startswith("AudienceGrouping/grouping:cluster")) == [
        "AudienceGrouping/grouping:cluster:0", "AudienceGrouping/grouping:cluster:1"]
    grouping = result.resources[0]
    output = grouping.status.artifacts.output
    assert output.uri.startswith((tmp_path / "artifacts").as_uri() + "/default/audiencegrouping/grouping/")
    manifest = open_store(output.uri).read_json("manifest.json")
    assert manifest["inputHash"] == grouping.status.artifacts.input_hash
    assert {f["path"] for f in manifest["files"]} >= {"train.json", "merge.json", "shards/0/part.json", "shards/1/part.json"}
    assert open_store(output.uri).read_json("merge.json")["shards"] == 2  # the merge knows how many to merge
    campaign = next(r for r in result.resources if r.kind == "AdImageCampaign")
    assert {a.name for a in campaign.status.artifacts.inputs} == {"grouping", "data", "generator", "reward", "policy"}
    assert condition(campaign, "Succeeded") == ("True", "Succeeded")
    assert runtime.write_report(result).exists()
    summary = json.loads((tmp_path / "artifacts" / "summary.json").read_text())
    assert [s["stage"] for s in summary] == ["Succeeded"] * 6


def test_second_run_is_a_cache_hit_and_runs_nothing(tmp_path, world):
    run(tmp_path, pipeline(world.as_uri()))
    _, result, ran = run(tmp_path, pipeline(world.as_uri()))
    assert ran == []
    assert all(condition(r, "Succeeded") == ("True", "CacheHit") for r in result.resources)


def test_a_spec_change_makes_new_runs_downstream_and_keeps_the_old_artifacts(tmp_path, world):
    _, first, _ = run(tmp_path, pipeline(world.as_uri()))
    _, second, ran = run(tmp_path, pipeline(world.as_uri(), clustering={"maxGroups": 3}))
    assert {line.split(":")[0] for line in ran} == {r.kind + "/" + r.name for r in second.resources}
    for old, new in zip(first.resources, second.resources):
        assert old.status.artifacts.output.uri != new.status.artifacts.output.uri
        assert open_store(old.status.artifacts.output.uri).exists("manifest.json")


def test_changed_data_makes_a_new_grouping_run(tmp_path, world):
    _, first, _ = run(tmp_path, pipeline(world.as_uri())[:1])
    (world / "impressions.parquet").write_bytes(b"new logs")
    _, second, ran = run(tmp_path, pipeline(world.as_uri())[:1])
    assert ran and first.resources[0].status.artifacts.input_hash != second.resources[0].status.artifacts.input_hash


def test_invalid_input_fails_at_once_and_dependents_wait(tmp_path, world):
    _, result, ran = run(tmp_path, pipeline(world.as_uri()), STANDIN_INVALID="gaip")
    gaip = next(r for r in result.resources if r.kind == "GAIPDataset")
    assert ran.count("GAIPDataset/gaip:aggregate:0") == 1  # no retry of invalid input
    assert condition(gaip, "Stalled") == ("True", "InvalidInput")
    assert "column 'age_band' missing" in next(c.message for c in gaip.status.conditions if c.type == "Stalled")
    trainer = next(r for r in result.resources if r.name == "gmllm")
    assert condition(trainer, "Stalled") == ("True", "DependencyFailed")
    assert not result.succeeded()


def test_retriable_failures_are_retried_within_the_backoff_limit(tmp_path, world):
    docs = pipeline(world.as_uri())[:1]
    _, result, ran = run(tmp_path, docs, STANDIN_FLAKY_DIR=str(tmp_path / "flaky"))
    assert result.succeeded()
    assert ran.count("AudienceGrouping/grouping:train:0") == 2


def test_retries_exhausted_stall_with_the_reason(tmp_path, world):
    docs = pipeline(world.as_uri(), runPolicy={"backoffLimit": 0})[:1]
    _, result, _ = run(tmp_path, docs, STANDIN_FLAKY_DIR=str(tmp_path / "flaky"))
    assert condition(result.resources[0], "Stalled") == ("True", "BackoffLimitExceeded")


def test_missing_dependency_is_reported_not_crashed(tmp_path, world):
    _, result, ran = run(tmp_path, [body("GAIPDataset", groupingRef={"name": "nowhere"})])
    assert ran == []
    assert condition(result.resources[0], "Ready") == ("False", "DependencyNotFound")
