"""The honest evaluation (`osmf_jobs.synth.lift` / `evaluate`): held-out products, every user assigned
as the predictor would, the world's true click model read from the images' pixels, the baselines in
the same run, bootstrap intervals. Checked against independent computations on known campaigns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osmf_jobs import style as S
from osmf_jobs.paag import Assigner
from osmf_jobs.synth import truth as T
from osmf_jobs.synth.evaluate import main as evaluate_main
from osmf_jobs.synth.lift import EvaluationError, ProductViewers, collapse, evaluate_campaign


def held_out(gaip: Path) -> list[str]:
    samples = pd.read_parquet(gaip / "samples.parquet")
    return sorted(samples.loc[samples["split"] == "eval", "product_id"].unique())


def majority_segments(truth: T.Truth, grouping: Path, pid: str) -> dict[int, int]:
    assigner = Assigner.load(str(grouping))
    users = truth.users.reset_index()
    groups = assigner.assign_many([pid] * len(users), users)
    segments = truth.user_segments.loc[users["user_id"], truth.category(pid)].to_numpy()
    return {int(g): int(np.bincount(segments[groups == g]).argmax()) for g in np.unique(groups)}


def write_campaign(run: Path, world: Path, grouping: Path, pick, prompt=lambda pid, g: f"{pid}-{g}") -> Path:
    """A finished campaign over every product of the grouping: group g of product p shows a
    background painted in `pick(truth, p, majority segment of g)`."""
    truth = T.load_truth(str(world))
    groups = pd.read_parquet(grouping / "groups.parquet")
    products = []
    for pid, frame in groups.groupby("product_id"):
        majority = majority_segments(truth, grouping, pid)
        cutout = np.asarray(Image.open(world / "products" / f"{pid}.png"))
        records = []
        for g in sorted(frame["group_id"]):
            rel = f"images/{pid}/{g}/0.png"
            (run / rel).parent.mkdir(parents=True, exist_ok=True)
            style = pick(truth, pid, majority.get(int(g), 0))
            Image.fromarray(S.compose(cutout, S.paint_background(style, 96, seed=int(g)))[0]).save(run / rel)
            records.append({"group_id": int(g), "image": rel, "prompt": prompt(pid, g), "source": "generated"})
        products.append({"product_id": pid, "groups": records})
    (run / "campaign.json").write_text(json.dumps({"products": products}))
    return run


def preferred(truth, pid, segment) -> S.Style:
    return truth.preferences(pid, segment)


def expected_ctr(world: Path, grouping: Path, gaip: Path, style_of_group) -> float:
    """Independently: every user × held-out product, the user's own probability for the image of their group."""
    truth = T.load_truth(str(world))
    assigner = Assigner.load(str(grouping))
    users = truth.users.reset_index()
    total, count = 0.0, 0
    for pid in held_out(gaip):
        groups = assigner.assign_many([pid] * len(users), users)
        for user, group in zip(users["user_id"], groups):
            total += T.click_probability(truth, user, pid, style_of_group(truth, pid, int(group)), with_user_noise=True)
            count += 1
    return total / count


def test_a_campaign_is_scored_by_the_worlds_truth_beside_its_baselines(tiny_world, tiny_grouping_artifact, tiny_gaip_artifact, tmp_path):
    run = write_campaign(tmp_path / "run", tiny_world, tiny_grouping_artifact, preferred)
    result = evaluate_campaign(str(tiny_world), str(tiny_grouping_artifact), str(tiny_gaip_artifact), str(run))
    truth = T.load_truth(str(tiny_world))
    majority = {pid: majority_segments(truth, tiny_grouping_artifact, pid) for pid in held_out(tiny_gaip_artifact)}
    want = expected_ctr(tiny_world, tiny_grouping_artifact, tiny_gaip_artifact,
                        lambda truth, pid, g: truth.preferences(pid, majority[pid][g]))
    assert result["heldout_products"] == len(held_out(tiny_gaip_artifact)) > 0
    assert result["viewer_product_pairs"] == len(truth.users) * result["heldout_products"]
    assert result["ctr"]["campaign"] == pytest.approx(want, rel=1e-9)
    assert result["ctr"]["generated_only"] == result["ctr"]["campaign"]  # every group's pick is generated
    # Baselines in the same run, ordered as they must be.
    ctr = result["ctr"]
    assert ctr["style_oracle"] >= ctr["logged_oracle"] >= ctr["onesize"]
    assert ctr["style_oracle"] >= ctr["campaign"]
    lifts = result["lift_vs_onesize"]
    assert lifts["campaign"]["value"] == pytest.approx(ctr["campaign"] / ctr["onesize"] - 1)
    for method in ("campaign", "retrieval", "logged_oracle", "style_oracle"):
        low, high = lifts[method]["ci95"]
        assert low <= lifts[method]["value"] <= high
    groups = pd.read_parquet(tiny_grouping_artifact / "groups.parquet")
    assert result["sources"] == {"generated": int(groups["product_id"].isin(held_out(tiny_gaip_artifact)).sum())}


def test_the_retrieval_baseline_is_each_groups_best_logged_creative_by_gaip_ctr(tiny_world, tiny_grouping_artifact, tiny_gaip_artifact, tmp_path):
    truth = T.load_truth(str(tiny_world))
    samples = pd.read_parquet(tiny_gaip_artifact / "samples.parquet")
    best = samples.sort_values(["ctr", "impressions", "image_id"], ascending=[False, False, True]).groupby(["product_id", "group_id"])["image_id"].first()
    style_of = {iid: S.Style(**{a: desc[a] for a in S.AXES}) for p in truth.logged for iid, desc in truth.logged[p]}
    want = expected_ctr(tiny_world, tiny_grouping_artifact, tiny_gaip_artifact, lambda truth, pid, g: style_of[best[(pid, g)]])
    run = write_campaign(tmp_path / "run", tiny_world, tiny_grouping_artifact, preferred)
    result = evaluate_campaign(str(tiny_world), str(tiny_grouping_artifact), str(tiny_gaip_artifact), str(run))
    assert result["ctr"]["retrieval"] == pytest.approx(want, rel=1e-9)


def test_collapse_counts_groups_that_want_different_backgrounds_but_get_one_prompt(tiny_world):
    truth = T.load_truth(str(tiny_world))
    pid = next(p for p in truth.world["products"] if truth.segments(p) >= 3)
    segments = np.repeat(np.arange(truth.segments(pid)), 5)
    view = ProductViewers(pid, np.asarray([f"u{i}" for i in range(len(segments))]), segments, segments.copy(), np.zeros(len(segments)))
    groups = range(truth.segments(pid))
    differing = sum(truth.preference(pid, a) != truth.preference(pid, b) for a in groups for b in groups if a < b)
    same = {pid: {"groups": [{"group_id": g, "prompt": "warm palette"} for g in groups]}}
    result = collapse(truth, {pid: view}, same)
    assert result == {"group_pairs_with_different_true_preferences": differing, "share_with_different_prompts": 0.0,
                      "distinct_prompts": 1, "groups": len(groups)}
    # The best generated candidate's prompt counts, not the final pick's.
    own = {pid: {"groups": [{"group_id": g, "prompt": "warm palette", "generated": {"prompt": f"p{g}"}} for g in groups]}}
    assert collapse(truth, {pid: view}, own)["share_with_different_prompts"] == 1.0


def test_the_cli_writes_the_evaluation_folder_and_rejects_what_it_cannot_evaluate(tiny_world, tiny_grouping_artifact, tiny_gaip_artifact, tmp_path, capsys):
    run = write_campaign(tmp_path / "run", tiny_world, tiny_grouping_artifact, preferred)
    out = tmp_path / "evaluation"
    args = ["--world", str(tiny_world), "--grouping", str(tiny_grouping_artifact), "--out", str(out)]
    assert evaluate_main([*args, "--dataset", str(tiny_gaip_artifact), "--campaign", str(run)]) == 0
    assert json.loads((out / "grouping.json").read_text())["median_ari"] >= 0
    assert json.loads((out / "campaign-lift.json").read_text())["heldout_products"] > 0
    # A campaign over none of the held-out products cannot be evaluated: one line, exit 2.
    doc = json.loads((run / "campaign.json").read_text())
    doc["products"] = [p for p in doc["products"] if p["product_id"] not in held_out(tiny_gaip_artifact)]
    (run / "campaign.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert evaluate_main([*args, "--dataset", str(tiny_gaip_artifact), "--campaign", str(run)]) == 2
    assert "held-out products" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match="no campaign.json"):
        evaluate_campaign(str(tiny_world), str(tiny_grouping_artifact), str(tiny_gaip_artifact), str(tmp_path / "nothing"))
