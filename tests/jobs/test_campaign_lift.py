"""Expected CTR lift on a synthetic world: checked against the world's own click model
(`osmf_jobs.synth.truth`) on campaigns whose images are known."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osmf_jobs import style as S
from osmf_jobs.campaign.lift import WorldTruth, click_probabilities, expected_lift
from osmf_jobs.synth import truth as T
from osmf_jobs.synth.world import SynthConfig, generate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lift-world")
    generate(root, SynthConfig.tiny(seed=3))
    return root


@pytest.fixture(scope="module")
def true_grouping(world, tmp_path_factory) -> Path:
    """A grouping whose groups are the true segments, over the users each product was shown to."""
    out = tmp_path_factory.mktemp("true-grouping")
    truth = T.load_truth(str(world))
    shown = pd.read_parquet(world / "impressions.parquet", columns=["user_id", "product_id"]).drop_duplicates()
    shown["group_id"] = [T.segment_of(truth, u, p) for u, p in zip(shown["user_id"], shown["product_id"])]
    shown[["product_id", "user_id", "group_id"]].to_parquet(out / "assignments.parquet")
    return out


def write_campaign(run: Path, world: Path, grouping: Path, pick, onesize: S.Style, skip_group=None) -> Path:
    """A finished campaign run whose group images are painted in `pick(product, group)`."""
    truth = T.load_truth(str(world))
    assignments = pd.read_parquet(grouping / "assignments.parquet")
    products = []
    for pid, frame in sorted(assignments.groupby("product_id")):
        cutout = np.asarray(Image.open(world / "products" / f"{pid}.png"))
        groups = []
        for g in sorted(frame["group_id"].unique()):
            if skip_group is not None and skip_group(pid, int(g)):
                continue
            rel = f"images/{pid}/{g}/0.png"
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(S.compose(cutout, S.paint_background(pick(truth, pid, int(g)), 96, seed=int(g)))[0]).save(run / rel)
            groups.append({"group_id": int(g), "size": int((frame["group_id"] == g).sum()), "image": rel, "prompt": ""})
        rel = f"images/{pid}/onesize.png"
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(S.compose(cutout, S.paint_background(onesize, 96, seed=7))[0]).save(run / rel)
        products.append({"product_id": pid, "groups": groups, "onesize": {"image": rel, "prompt": ""}})
    (run / "campaign.json").write_text(json.dumps({"grouping": {"uri": grouping.as_uri()}, "products": products}))
    return run


def preferred(truth, pid, segment) -> S.Style:
    return truth.preferences(pid, segment)


def test_click_model_matches_the_worlds_truth(world):
    ours, theirs = WorldTruth.load(str(world)), T.load_truth(str(world))
    rng = np.random.default_rng(0)
    users = list(theirs.users.index[rng.choice(len(theirs.users), 12, replace=False)])
    styles = [S.Style.from_index(int(i)) for i in rng.choice(360, len(users))]
    for pid in ("p0000", "p0001", "p0002", "p0003"):
        got = click_probabilities(ours, pid, users, styles)
        want = [T.click_probability(theirs, u, pid, st, with_user_noise=True) for u, st in zip(users, styles)]
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_segment_preferred_images_beat_the_onesize_and_the_oracle(world, true_grouping, tmp_path):
    run = write_campaign(tmp_path, world, true_grouping, preferred, S.Style.default())
    result = expected_lift(str(world), run.as_uri(), per_product=True)
    # Independently: each shown user, their own probability for their segment's preferred style.
    truth = T.load_truth(str(world))
    assignments = pd.read_parquet(true_grouping / "assignments.parquet")
    want = np.mean([T.click_probability(truth, u, p, truth.preferences(p, g), with_user_noise=True)
                    for p, u, g in assignments[["product_id", "user_id", "group_id"]].itertuples(index=False)])
    onesize = np.mean([T.click_probability(truth, u, p, S.Style.default(), with_user_noise=True)
                       for p, u in assignments[["product_id", "user_id"]].itertuples(index=False)])
    assert result["users"] == len(assignments) and result["products"] == assignments["product_id"].nunique()
    assert result["ctr"]["campaign"] == pytest.approx(want, rel=1e-9)
    assert result["ctr"]["onesize"] == pytest.approx(onesize, rel=1e-9)
    assert result["lift"] == pytest.approx(want / onesize - 1, rel=1e-9)
    # The preferred style is each segment's best possible, so it reaches at least the logged oracle.
    assert result["ctr"]["campaign"] >= result["ctr"]["oracle"] >= result["ctr"]["best_logged"]
    assert result["lift_vs_best_logged"] >= result["oracle_lift"] > 0
    # style.probe read every painted background back exactly
    first = result["per_product"][0]
    for g, caption in first["styles"].items():
        if g != "onesize":
            assert caption == S.caption(truth.preferences(first["product_id"], int(g)))


def test_onesize_everywhere_has_no_lift_and_missing_groups_fall_back(world, true_grouping, tmp_path):
    same = write_campaign(tmp_path / "same", world, true_grouping, lambda *_: S.Style.default(), S.Style.default())
    result = expected_lift(str(world), same.as_uri())
    assert result["lift"] == 0.0 and result["ctr"]["campaign"] == result["ctr"]["onesize"]
    # Without any group images every user sees the one-size image: the same figures.
    empty = write_campaign(tmp_path / "empty", world, true_grouping, preferred, S.Style.default(), skip_group=lambda p, g: True)
    assert expected_lift(str(world), empty.as_uri()) == result


def test_cli_prints_json_and_one_line_errors(world, true_grouping, tmp_path):
    run = write_campaign(tmp_path / "run", world, true_grouping, preferred, S.Style.default())
    done = subprocess.run([sys.executable, "-m", "osmf_jobs.campaign.lift", "--world", str(world), "--campaign", run.as_uri()],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["lift"] > 0
    done = subprocess.run([sys.executable, "-m", "osmf_jobs.campaign.lift", "--world", str(tmp_path), "--campaign", run.as_uri()],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "truth/world.json" in done.stderr
