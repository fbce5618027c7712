"""AUROC, NDCG@5 between groups and ARI on small cases computed by hand."""

import math

import numpy as np
import pytest

from osmf_jobs import metrics as M


def test_auroc_hand_cases():
    assert M.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)  # 3 of 4 pos/neg pairs ordered
    assert M.auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts half
    assert M.auroc([1, 0, 1, 0], [3, 1, 2, 2]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert M.auroc([1, 1, 0], [0.1, 0.2, 0.9]) == 0.0
    assert math.isnan(M.auroc([1, 1], [0.1, 0.2]))


def test_auroc_matches_sklearn_on_random_data():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.1
    s = np.round(rng.normal(size=500) + y, 1)  # rounding makes ties
    assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_ndcg_at_k_hand_case():
    # Ranking by a: items 0,1,2 (a = 3,2,1); relevance b = 0, 1, 2; k = 2.
    # DCG = 0/log2(2) + 1/log2(3); ideal = 2/1 + 1/log2(3).
    got = M.ndcg_at_k([3, 2, 1], [0, 1, 2], k=2)
    assert got == pytest.approx((1 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert M.ndcg_at_k([1, 2, 3], [1, 2, 3], k=5) == pytest.approx(1.0)
    assert math.isnan(M.ndcg_at_k([1, 2], [0, 0]))


def test_ndcg_ties_share_the_average_discount():
    # All tied: each item gets the mean discount of positions 1..2 with k = 2; order of input irrelevant.
    d = (1 + 1 / math.log2(3)) / 2
    expected = (1 * d + 0 * d + 0 * 0) / 1.0  # relevance (1, 0, 0); ideal = 1 at position 1
    assert M.ndcg_at_k([5, 5, 1], [1, 0, 0], k=2) == pytest.approx(expected)
    assert M.ndcg_at_k([5, 5, 1], [0, 1, 0], k=2) == pytest.approx(expected)


def test_ndcg_between_groups_hand_case():
    images = [f"i{j}" for j in range(5)]
    ctr_a = [0.5, 0.4, 0.3, 0.2, 0.1]
    rows = [{"product_id": "p", "group_id": 0, "image_id": i, "ctr": c} for i, c in zip(images, ctr_a)]
    rows += [{"product_id": "p", "group_id": 1, "image_id": i, "ctr": c} for i, c in zip(images, ctr_a[::-1])]
    # Identical preferences in product q: NDCG 1.
    rows += [{"product_id": "q", "group_id": g, "image_id": i, "ctr": c} for g in (0, 1) for i, c in zip(images, ctr_a)]
    # One group only, or fewer than 5 images: left out.
    rows += [{"product_id": "r", "group_id": 0, "image_id": i, "ctr": c} for i, c in zip(images, ctr_a)]
    rows += [{"product_id": "s", "group_id": g, "image_id": i, "ctr": 0.1} for g in (0, 1) for i in images[:4]]
    mean, per = M.ndcg_between_groups(rows)
    disc = [1 / math.log2(i + 2) for i in range(5)]
    reversed_dcg = sum(r * d for r, d in zip(ctr_a[::-1], disc))
    ideal = sum(r * d for r, d in zip(ctr_a, disc))
    assert set(per) == {"p", "q"}
    assert per["p"] == pytest.approx(reversed_dcg / ideal)  # both ordered pairs are the reversal
    assert per["q"] == pytest.approx(1.0)
    assert mean == pytest.approx((reversed_dcg / ideal + 1.0) / 2)


def test_ari_hand_cases():
    assert M.adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
    # a = [0,0,1,1], b = [0,0,0,1]: sum C(nij,2) = 1; sum C(ai,2) = 2; sum C(bj,2) = 3; C(4,2) = 6.
    expected = (1 - 2 * 3 / 6) / ((2 + 3) / 2 - 2 * 3 / 6)
    assert M.adjusted_rand_index([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected)
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 300), rng.integers(0, 3, 300)
    assert M.adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b))
    with pytest.raises(ValueError, match="length"):
        M.adjusted_rand_index([0, 1], [0])
