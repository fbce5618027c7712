"""Group scorers (`osmf_jobs.scoring`): the preference model reads any image for a group, `auto` takes
the better measured scorer, and what a scorer cannot do is one line naming the field."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.jobs.test_campaign_world import shared_campaign_world

from osmf_core.store import open_store
from osmf_jobs.runtime import InvalidInput
from osmf_jobs.scoring import PreferenceModelScorer, pairwise_accuracy, resolve_choice


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_campaign_world(tmp_path_factory)


def group_vectors(world, product: str, group: int) -> np.ndarray:
    groups = pd.read_parquet(world.grouping / "groups.parquet")
    row = groups[(groups["product_id"] == product) & (groups["group_id"] == group)].iloc[0]
    return np.stack([np.asarray(v, np.float32) for v in row["representatives"]])


def test_the_preference_model_scores_a_groups_expected_ctr_for_any_image(world):
    scorer = PreferenceModelScorer(open_store(world.uri("grouping")), "spec.selection.scorer")
    logged = [Image.open(world.data / "images" / f"p01-c{j}.png") for j in range(2)]
    reps = [group_vectors(world, "p01", 0), group_vectors(world, "p01", 1)]
    scores = scorer.score_batch([reps[0], reps[0], reps[1]], ["t"] * 3, [logged[0], logged[1], logged[0]])
    assert all(0 < s < 1 for s in scores)  # probabilities: comparable across groups and products
    assert scores[0] != scores[1] and scores[0] != scores[2]  # the image and the group both matter
    assert scorer.score_batch([reps[0]], ["t"], [logged[0]]) == [scores[0]]  # deterministic
    assert pairwise_accuracy(scorer, [(reps[0], "t", logged[0], logged[1])]) == (1.0 if scores[0] > scores[1] else 0.0)
    with pytest.raises(InvalidInput, match=r"spec.selection.scorer: group vectors have 3 dimensions"):
        scorer.score_batch([np.zeros((10, 3), np.float32)], ["t"], [logged[0]])


def test_auto_takes_the_better_measured_scorer(world, tmp_path):
    reward = open_store(tmp_path)
    assert resolve_choice("auto", None, "f") == ("preferenceModel", {})
    (tmp_path / "metrics.json").write_text(json.dumps({"pairwise_accuracy": 0.8, "preference_model_pairwise_accuracy": 0.7}))
    assert resolve_choice("auto", reward, "f")[0] == "rewardModel"
    (tmp_path / "metrics.json").write_text(json.dumps({"pairwise_accuracy": 0.6, "preference_model_pairwise_accuracy": 0.9}))
    assert resolve_choice("auto", reward, "f") == ("preferenceModel", {"rewardModel": 0.6, "preferenceModel": 0.9})
    assert resolve_choice("rewardModel", reward, "f")[0] == "rewardModel"  # an explicit choice is kept
    with pytest.raises(InvalidInput, match=r"^spec.dpo.reward: rewardModel needs a reward model reference"):
        resolve_choice("rewardModel", None, "spec.dpo.reward")


def test_a_grouping_without_a_preference_model_is_one_line(tmp_path):
    with pytest.raises(InvalidInput, match=r"^spec.selection.scorer: the grouping .* has no exported preference model"):
        PreferenceModelScorer(open_store(tmp_path), "spec.selection.scorer")
