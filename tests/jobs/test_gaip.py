"""The GAIPDataset job end to end on the tiny grouping."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from tests.jobs.conftest import run_job_step, tiny_gaip_spec

from osmf_jobs import style as S
from osmf_jobs.runtime import InvalidInput


def test_samples_pairs_and_metrics(tiny_gaip_artifact, tiny_grouping_artifact, tiny_world):
    run = tiny_gaip_artifact
    samples = pd.read_parquet(run / "samples.parquet")
    assert list(samples.columns) == ["product_id", "title", "image_id", "image_uri", "group_id", "group_embedding",
                                     "impressions", "clicks", "ctr", "caption", "split"]
    assert (samples["impressions"] >= tiny_gaip_spec()["minImpressions"]).all()
    assert np.allclose(samples["ctr"], samples["clicks"] / samples["impressions"])
    # Counts add up to the logged impressions joined with the assignments.
    impressions = pd.read_parquet(tiny_world / "impressions.parquet")
    assignments = pd.read_parquet(tiny_grouping_artifact / "assignments.parquet")
    joined = impressions.merge(assignments, on=["product_id", "user_id"])
    counts = joined.groupby(["product_id", "group_id", "image_id"]).size()
    for row in samples.sample(20, random_state=0).itertuples():
        assert counts[(row.product_id, row.group_id, row.image_id)] == row.impressions
    # Captions describe the background: the probe reads the generator's style exactly.
    truth = pd.read_parquet(tiny_world / "truth" / "images.parquet").set_index("image_id")["style_index"]
    assert all(c == S.caption(S.Style.from_index(int(truth[i]))) for i, c in zip(samples["image_id"], samples["caption"]))
    groups = pd.read_parquet(tiny_grouping_artifact / "groups.parquet").set_index(["product_id", "group_id"])["centroid"]
    row = samples.iloc[0]
    assert np.allclose(row["group_embedding"], groups[(row["product_id"], row["group_id"])])
    assert samples["image_uri"].str.startswith("file://").all()
    # The split is by product.
    assert samples.groupby("product_id")["split"].nunique().max() == 1
    assert set(samples["split"]) <= {"train", "eval"}

    pairs = pd.read_parquet(run / "pairs.parquet")
    assert list(pairs.columns)[:7] == ["product_id", "group_id", "chosen_image_id", "rejected_image_id", "chosen_ctr", "rejected_ctr", "chosen_impressions"]
    assert len(pairs) > 0
    ratio = pairs["chosen_ctr"] / pairs["rejected_ctr"]
    assert ratio.between(1.05, 1.20).all()
    ctr = samples.set_index(["product_id", "group_id", "image_id"])["ctr"]
    for p in pairs.itertuples():
        assert ctr[(p.product_id, p.group_id, p.chosen_image_id)] == p.chosen_ctr
    split = samples.drop_duplicates("product_id").set_index("product_id")["split"]
    assert (pairs["split"] == pairs["product_id"].map(split)).all()

    assert (run / "groups.parquet").read_bytes() == (tiny_grouping_artifact / "groups.parquet").read_bytes()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["samples"] == len(samples) and metrics["pairs"] == len(pairs)
    assert metrics["products"] == samples["product_id"].nunique()
    assert 0 <= metrics["ndcg_at_5_between_groups"] <= 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"samples.parquet", "pairs.parquet", "groups.parquet", "metrics.json"} <= {f["path"] for f in manifest["files"]}


def test_too_high_min_impressions_is_invalid_input(tiny_grouping_artifact, tiny_world, tmp_path):
    spec = tiny_gaip_spec(minImpressions=10**6, shards=1)
    run = tmp_path / "run"
    inputs = {"grouping": ("AudienceGrouping", tiny_grouping_artifact), "data": (None, tiny_world)}
    run_job_step("gaip", "GAIPDataset", spec, "aggregate", run, inputs)
    with pytest.raises(InvalidInput, match="spec.minImpressions: no .* has 1000000 impressions .*; lower spec.minImpressions"):
        run_job_step("gaip", "GAIPDataset", spec, "merge", run, inputs)
    assert not (run / "manifest.json").exists()


def test_missing_grouping_output_is_invalid_input(tiny_grouping_artifact, tiny_world, tmp_path):
    grouping = tmp_path / "grouping"
    shutil.copytree(tiny_grouping_artifact, grouping)
    (grouping / "assignments.parquet").unlink()
    inputs = {"grouping": ("AudienceGrouping", grouping), "data": (None, tiny_world)}
    with pytest.raises(InvalidInput, match=r"AudienceGrouping .grouping.: .*assignments.parquet not found; use a Succeeded AudienceGrouping"):
        run_job_step("gaip", "GAIPDataset", tiny_gaip_spec(shards=1), "aggregate", tmp_path / "run", inputs)
