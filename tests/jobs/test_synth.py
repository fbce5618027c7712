"""The synthetic world: tables in the DESIGN §5 format, truth that is consistent with the logs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osmf_jobs import style as S
from osmf_jobs.synth.__main__ import _main as synth_main
from osmf_jobs.synth.truth import click_logit, click_probability, load_truth, segment_of


def test_tables_follow_the_contract(tiny_world):
    users = pd.read_parquet(tiny_world / "users.parquet")
    products = pd.read_parquet(tiny_world / "products.parquet")
    images = pd.read_parquet(tiny_world / "images.parquet")
    impressions = pd.read_parquet(tiny_world / "impressions.parquet")
    assert {"user_id", "age", "gender", "household", "postcode"} <= set(users.columns)
    assert users["household"].dtype.kind == "i" and users["age"].dtype == object
    assert list(products.columns) == ["product_id", "title", "image_uri", "category"]
    assert list(images.columns) == ["image_id", "product_id", "image_uri"]
    assert list(impressions.columns) == ["user_id", "product_id", "image_id", "clicked", "ts"]
    assert 0.01 < impressions["clicked"].mean() < 0.1  # a few percent
    assert set(impressions["product_id"]) == set(products["product_id"])
    cutout = Image.open(tiny_world / products["image_uri"].iloc[0])
    assert cutout.mode == "RGBA" and np.asarray(cutout)[..., 3].min() == 0
    creative = Image.open(tiny_world / images["image_uri"].iloc[0])
    assert creative.size == (64, 64)


def test_truth_is_consistent_with_the_logs(tiny_world):
    truth = load_truth(str(tiny_world))
    styles = pd.read_parquet(tiny_world / "truth" / "images.parquet")
    # Every creative's background is the recorded style, as the probe reads it.
    for row in styles.itertuples():
        assert S.probe(np.asarray(Image.open(tiny_world / "images" / f"{row.image_id}.png"))) == S.Style.from_index(row.style_index)
    logged = pd.read_parquet(tiny_world / "truth" / "impressions.parquet")
    style_of = dict(zip(styles["image_id"], styles["style_index"]))
    for row in logged.sample(50, random_state=0).itertuples():
        st = S.Style.from_index(style_of[row.image_id])
        assert click_logit(truth, row.user_id, row.product_id, st) == pytest.approx(row.logit_explainable, abs=1e-6)
        assert click_probability(truth, row.user_id, row.product_id, st, with_user_noise=True) == pytest.approx(row.p_click, rel=1e-9)
    held = pd.read_parquet(tiny_world / "truth" / "heldout_impressions.parquet")
    assert {"clicked", "logit", "logit_explainable", "p_click"} <= set(held.columns) and len(held) > 0


def test_segments_depend_on_category_specific_attributes(tiny_world):
    truth = load_truth(str(tiny_world))
    world = truth.world
    used = {cat: tuple(info["attributes"]) for cat, info in world["categories"].items()}
    assert len(set(used.values())) == len(used)  # each category uses its own pair of attributes
    pid = next(p for p, info in world["products"].items() if info["category"] == "apparel")
    a1, a2 = used["apparel"]
    base = {a1: world["attributes"][a1][0], a2: world["attributes"][a2][0]}
    flipped = {**base, a1: world["attributes"][a1][-1]}
    assert segment_of(truth, base, pid) != segment_of(truth, flipped, pid)
    # A segment's expected CTR is highest on its own preferred style.
    seg = segment_of(truth, base, pid)
    liked = truth.preferences(pid, seg)
    other = S.Style(*(words[(words.index(w) + 1) % len(words)] for w, words in zip(liked.words(), S.AXES.values())))
    assert click_probability(truth, seg, pid, liked) > click_probability(truth, seg, pid, other)


def test_cli_is_deterministic_by_seed(tmp_path, capsys):
    assert synth_main([str(tmp_path / "a"), "--tiny", "--users", "60", "--products", "4", "--seed", "5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["impressions"] > 0
    assert synth_main([str(tmp_path / "b"), "--tiny", "--users", "60", "--products", "4", "--seed", "5"]) == 0
    a = pd.read_parquet(tmp_path / "a" / "impressions.parquet")
    b = pd.read_parquet(tmp_path / "b" / "impressions.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "a" / "images" / "p0000-c0.png").read_bytes() == (tmp_path / "b" / "images" / "p0000-c0.png").read_bytes()
    assert synth_main([str(tmp_path / "c"), "--users", "0"]) == 2


@pytest.fixture(scope="module")
def painted_world(tmp_path_factory):
    from osmf_jobs.synth.world import SynthConfig, generate

    root = tmp_path_factory.mktemp("painted") / "world"
    generate(root, SynthConfig.tiny(seed=1, style_space="painted"))
    return root


def test_a_painted_world_keeps_the_contract_and_its_truth_reads_pixels(painted_world):
    from osmf_jobs.synth.spaces import FEATURES, image_features

    images = pd.read_parquet(painted_world / "images.parquet")
    assert list(images.columns) == ["image_id", "product_id", "image_uri"]
    truth = load_truth(str(painted_world))
    assert truth.world["style_space"] == "painted" and set(truth.world["beta"]) == set(FEATURES)
    recorded = pd.read_parquet(painted_world / "truth" / "images.parquet").set_index("image_id")
    for image_id in recorded.index[:10]:
        pixels = np.asarray(Image.open(painted_world / "images" / f"{image_id}.png").convert("RGB"))
        # The truth is a function of the saved pixels: what the world recorded is what it reads back.
        assert image_features(pixels) == pytest.approx({f: recorded.loc[image_id, f] for f in FEATURES})
    logged = pd.read_parquet(painted_world / "truth" / "impressions.parquet")
    for row in logged.sample(40, random_state=0).itertuples():
        description = {f: recorded.loc[row.image_id, f] for f in FEATURES}
        assert click_logit(truth, row.user_id, row.product_id, description) == pytest.approx(row.logit_explainable, abs=1e-6)


def test_a_painted_worlds_backgrounds_are_only_approximated_by_the_vocabulary(painted_world):
    """OSMF's probe names the nearest vocabulary words, which no longer describe the truth exactly:
    two creatives with the same probed words can earn different true bonuses."""
    from osmf_jobs.synth.spaces import FEATURES

    truth = load_truth(str(painted_world))
    recorded = pd.read_parquet(painted_world / "truth" / "images.parquet")
    recorded["words"] = [S.caption(S.probe(np.asarray(Image.open(painted_world / "images" / f"{i}.png").convert("RGB"))))
                         for i in recorded["image_id"]]
    spreads = []
    for (pid, words), frame in recorded.groupby(["product_id", "words"]):
        if len(frame) > 1:
            bonus = [truth.bonus(pid, 0, {f: r[f] for f in FEATURES}) for r in frame.to_dict("records")]
            spreads.append(max(bonus) - min(bonus))
    assert len(recorded["words"].unique()) > 1
    assert any(spread > 0.05 for spread in spreads) or not spreads
    # A segment's preferred point earns the most; the vocabulary renderer's best style still earns less.
    pid = next(iter(truth.world["products"]))
    ideal = truth.bonus(pid, 0, truth.preference(pid, 0))
    assert ideal == pytest.approx(truth.ideal_bonus())
    best_vocabulary = max(truth.bonus(pid, 0, truth.describe(S.paint_background(st, 64, seed=0))) for st in S.Style.all()[::7])
    assert best_vocabulary < ideal


def test_the_style_space_is_chosen_on_the_command_line(tmp_path, capsys):
    assert synth_main([str(tmp_path / "p"), "--tiny", "--users", "60", "--products", "4", "--style-space", "painted"]) == 0
    assert json.loads((tmp_path / "p" / "truth" / "world.json").read_text())["style_space"] == "painted"
    with pytest.raises(SystemExit) as exit_:
        synth_main([str(tmp_path / "q"), "--style-space", "photographs"])
    assert exit_.value.code == 2 and "invalid choice: 'photographs'" in capsys.readouterr().err
