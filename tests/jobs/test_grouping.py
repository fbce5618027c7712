"""The AudienceGrouping job end to end on a tiny world, and its bad-input behaviour."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.jobs.conftest import job_config, run_job_step, tiny_grouping_spec

from osmf_jobs.grouping.config import AudienceGroupingConfig
from osmf_jobs.runtime import InvalidInput

REPO = Path(__file__).resolve().parents[2]


def test_outputs_follow_the_contract(tiny_grouping_artifact, tiny_world):
    run = tiny_grouping_artifact
    groups = pd.read_parquet(run / "groups.parquet")
    assert list(groups.columns)[:6] == ["product_id", "group_id", "size", "centroid", "representatives", "silhouette"]
    products = pd.read_parquet(tiny_world / "products.parquet")["product_id"]
    assert sorted(groups["product_id"].unique()) == sorted(products)
    for _, frame in groups.groupby("product_id"):
        assert frame["group_id"].tolist() == list(range(len(frame)))
        assert 1 <= len(frame) <= 4
    assert all(len(c) == 128 for c in groups["centroid"])
    assert all(len(r) == 10 and all(len(v) == 128 for v in r) for r in groups["representatives"])
    assert (groups["size"] >= 10).all()  # the privacy floor of the tiny spec

    assignments = pd.read_parquet(run / "assignments.parquet")
    assert list(assignments.columns) == ["product_id", "user_id", "group_id"]
    impressions = pd.read_parquet(tiny_world / "impressions.parquet")
    pairs = impressions[["product_id", "user_id"]].drop_duplicates()
    assert len(assignments) == len(pairs)
    sizes = assignments.groupby(["product_id", "group_id"]).size()
    assert sizes.to_dict() == groups.set_index(["product_id", "group_id"])["size"].to_dict()

    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.5 < metrics["auroc"] <= 1.0
    assert metrics["products"] == len(products) and metrics["groups"] == len(groups)
    manifest = json.loads((run / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert {"groups.parquet", "assignments.parquet", "model/config.json", "model/weights.npz", "metrics.json"} <= listed
    assert manifest["metrics"]["auroc"] == metrics["auroc"]
    assert json.loads((run / "progress.json").read_text())["step"] == "merge"
    assert (run / "shards" / "1" / "progress.json").exists()
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["attributes"] == tiny_grouping_spec(tiny_world)["userAttributes"]
    assert "postcode" not in json.dumps(config)  # never read, so never in the model


def _copy_world(world: Path, dest: Path) -> Path:
    shutil.copytree(world, dest, ignore=shutil.ignore_patterns("truth"))
    return dest


def _edit(path: Path, change) -> None:
    frame = pd.read_parquet(path)
    change(frame).to_parquet(path, index=False)


BAD_INPUTS = {
    "missing table": (lambda d: (d / "impressions.parquet").unlink(), {}, "table 'impressions': .* not found"),
    "missing column": (lambda d: _edit(d / "products.parquet", lambda f: f.drop(columns=["title"])), {}, "table 'products': column 'title' missing"),
    "wrong column type": (lambda d: _edit(d / "impressions.parquet", lambda f: f.assign(clicked=f["clicked"].astype(str))), {},
                          "table 'impressions': column 'clicked' has type string"),
    "attribute absent from data": (lambda d: None, {"userAttributes": ["age", "shoe_size"]},
                                   "table 'users': column 'shoe_size' missing; add it to the users table or drop it from spec.userAttributes"),
    "product without impressions": (lambda d: _edit(d / "impressions.parquet", lambda f: f[f["product_id"] != "p0001"]), {},
                                    "product 'p0001' has no impressions"),
    "empty logs": (lambda d: _edit(d / "impressions.parquet", lambda f: f.iloc[:0]), {}, "table 'impressions' is empty"),
    "unreadable image": (lambda d: (d / "images" / "p0002-c1.png").write_bytes(b"garbage"), {},
                         "image 'p0002-c1': image 'images/p0002-c1.png' is not a readable image"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_invalid_input_and_leaves_no_manifest(case, tiny_world, tmp_path):
    breaker, overrides, message = BAD_INPUTS[case]
    data = _copy_world(tiny_world, tmp_path / "data")
    breaker(data)
    spec = tiny_grouping_spec(data, **overrides)
    run = tmp_path / "run"
    with pytest.raises(InvalidInput, match=message) as info:
        run_job_step("grouping", "AudienceGrouping", spec, "train", run, {"data": (None, data)})
    assert "\n" not in str(info.value)
    assert not (run / "manifest.json").exists()


def test_entry_point_exits_65_with_one_line(tiny_world, tmp_path):
    data = _copy_world(tiny_world, tmp_path / "data")
    (data / "users.parquet").unlink()
    run = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(job_config("AudienceGrouping", tiny_grouping_spec(data), "train", run, {"data": (None, data)}))
    out = subprocess.run([sys.executable, "-m", "osmf_jobs.grouping", "--config", str(config)], capture_output=True, text=True,
                         cwd=REPO, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO / "jobs") + os.pathsep + str(REPO / "operator")})
    assert out.returncode == 65, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith("osmf: invalid input: table 'users'")
    assert not (run / "manifest.json").exists()


def test_merge_refuses_a_missing_shard(tiny_grouping_artifact, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_grouping_artifact, run)
    (run / "manifest.json").unlink()
    shutil.rmtree(run / "shards" / "1")
    spec = tiny_grouping_spec(Path("/unused"))
    with pytest.raises(InvalidInput, match="shard 1 of 2 did not finish"):
        run_job_step("grouping", "AudienceGrouping", spec, "merge", run, {"data": (None, tmp_path)}, shards=2)
    assert not (run / "manifest.json").exists()


def test_one_shard_gives_the_same_groups_as_two(tiny_grouping_artifact, tiny_world, tmp_path):
    """Sharding only splits the work: cluster with 1 shard from the same model and compare."""
    run = tmp_path / "run"
    shutil.copytree(tiny_grouping_artifact, run, ignore=shutil.ignore_patterns("shards", "manifest.json", "groups.parquet", "assignments.parquet"))
    spec = tiny_grouping_spec(tiny_world, shards=1)
    run_job_step("grouping", "AudienceGrouping", spec, "cluster", run, {"data": (None, tiny_world)}, shards=1)
    run_job_step("grouping", "AudienceGrouping", spec, "merge", run, {"data": (None, tiny_world)}, shards=1)
    one = pd.read_parquet(run / "groups.parquet")
    two = pd.read_parquet(tiny_grouping_artifact / "groups.parquet")
    assert one.groupby("product_id").size().to_dict() == two.groupby("product_id").size().to_dict()


@pytest.mark.parametrize("outcome", ["succeeds", "invalid"])
def test_run_job_removes_its_scratch_directory(outcome, tmp_path, monkeypatch):
    from osmf_jobs import runtime

    monkeypatch.setattr(runtime.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    config = tmp_path / "config.json"
    config.write_text(job_config("AudienceGrouping", tiny_grouping_spec(tmp_path), "merge", tmp_path / "run", {}))
    used = []

    def main(ctx):
        (ctx.scratch / "download.bin").write_bytes(b"x" * 1024)
        used.append(ctx.scratch)
        if outcome == "invalid":
            raise InvalidInput("spec.data.uri: nothing there")

    with pytest.raises(SystemExit) as exited:
        runtime.run_job(main, AudienceGroupingConfig, ["--config", str(config)])
    assert exited.value.code == (0 if outcome == "succeeds" else 65)
    assert used and not used[0].exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_train_step_is_reproducible(tiny_world, tmp_path):
    """The same logs and seed give the same model, bit for bit, on two threads: without deterministic
    kernels the CPU backward's accumulation order varied between runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name in ("first", "again"):
            run_job_step("grouping", "AudienceGrouping", tiny_grouping_spec(tiny_world), "train", tmp_path / name,
                         {"data": (None, tiny_world)})
    finally:
        torch.set_num_threads(before)
    with np.load(tmp_path / "first" / "model" / "weights.npz") as first, np.load(tmp_path / "again" / "model" / "weights.npz") as again:
        assert sorted(first.files) == sorted(again.files)
        for name in first.files:
            np.testing.assert_array_equal(first[name], again[name], err_msg=name)
