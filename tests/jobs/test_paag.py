"""PAAG library: numpy inference equals torch, batched clustering, the Assigner and its CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osmf_jobs import metrics as M

REPO = Path(__file__).resolve().parents[2]


def _random_model(seed: int = 0):
    import torch

    from osmf_jobs.paag.model import PreferenceModel

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PreferenceModel([3, 4, 2], text_dim=24, image_token_dim=12, creative_dim=20, d=32, n_products=5, n_categories=2)
    for p in model.parameters():  # move off the init so LayerNorm/bias paths are exercised
        p.data.add_(0.05 * torch.randn_like(p))
    feats = {
        "title_tokens": rng.normal(size=(5, 6, 24)).astype(np.float32),
        "title_mask": np.ones((5, 6), bool),
        "image_tokens": rng.normal(size=(5, 16, 12)).astype(np.float32),
        "creative_stats": rng.normal(3.0, 2.0, size=(7, 20)).astype(np.float32),
        "category": np.array([1, 2, 0, 1, 2], np.int64),
    }
    feats["title_mask"][:, 4:] = False
    feats["title_mask"][2, 2:] = False
    return model, feats


def test_numpy_inference_equals_torch():
    import torch

    from osmf_jobs.paag.inference import NumpyPreferenceModel
    from osmf_jobs.paag.model import export_arrays

    model, f = _random_model()
    mu, sd = f["creative_stats"].mean(0), f["creative_stats"].std(0) + 1e-6
    arrays = export_arrays(model, f["title_tokens"], f["title_mask"], f["image_tokens"], f["creative_stats"], mu, sd,
                           f["category"])
    numpy_model = NumpyPreferenceModel(arrays)
    attrs = np.array([[0, 1, 2], [3, 4, 1], [1, 0, 0], [2, 2, 2]])
    products = np.array([0, 2, 4, 2])
    creatives = np.array([1, 6, 0, 3])
    with torch.no_grad():
        keys = model.product_keys(torch.from_numpy(f["title_tokens"]), torch.from_numpy(f["image_tokens"]),
                                  torch.arange(5), torch.from_numpy(f["category"]))
        e = model.embed(torch.from_numpy(attrs), keys, torch.from_numpy(products), torch.from_numpy(f["title_mask"]))
        v = model.creative(torch.from_numpy(((f["creative_stats"] - mu) / sd).astype(np.float32)))
        logits = model.click_logit(e, v[torch.from_numpy(creatives)])
    e_np = numpy_model.embed(attrs, products)
    np.testing.assert_allclose(e_np, e.numpy(), atol=2e-5)
    np.testing.assert_allclose(numpy_model.click_logit(e_np, creatives), logits.numpy(), atol=2e-5)
    # New creatives from raw statistics go through the same standardisation and MLP.
    np.testing.assert_allclose(numpy_model.creative_vectors(f["creative_stats"]), v.numpy(), atol=2e-5)


def _blobs(rng, centers, counts, spread=0.05):
    pts = np.concatenate([c + spread * rng.normal(size=(n, len(c))) for c, n in zip(centers, counts)])
    labels = np.repeat(np.arange(len(centers)), counts)
    return pts.astype(np.float32), labels


def test_group_products_finds_k_and_applies_the_privacy_floor():
    from osmf_jobs.paag.cluster import group_products

    rng = np.random.default_rng(0)
    d = 8
    centers = rng.normal(size=(5, d)) * 3
    three, three_labels = _blobs(rng, centers[:3], [120, 80, 60])
    two, two_labels = _blobs(rng, centers[3:], [150, 90])
    tiny_group, tiny_labels = _blobs(rng, centers[:3], [200, 150, 8])  # the 8-user group is under the floor
    few, _ = _blobs(rng, centers[:2], [5, 4])  # fewer users than 2 x the floor: one group
    problems = [(x, np.ones(len(x))) for x in (three, two, tiny_group, few)]
    out = group_products(problems, min_groups=2, max_groups=5, sample_size=150, max_iterations=50, seed=0, min_group_size=20)
    assert [len(g.centroids) for g in out] == [3, 2, 2, 1]
    assert M.adjusted_rand_index(out[0].labels, three_labels) == pytest.approx(1.0)
    assert M.adjusted_rand_index(out[1].labels, two_labels) == pytest.approx(1.0)
    assert out[2].k_chosen == 3 and out[2].merged == 1 and out[2].sizes.min() >= 20
    for (x, _), g in zip(problems, out):
        assert g.representatives.shape == (len(g.centroids), 10, d)
        assert list(g.sizes) == sorted(g.sizes, reverse=True)  # group 0 is the largest
        # Labels agree with nearest-centroid assignment (what serving does).
        nearest = np.argmin(((x[:, None] - g.centroids[None]) ** 2).sum(-1), axis=1)
        assert (nearest == g.labels).all()
    assert np.isnan(out[3].silhouette) and out[0].silhouette > 0.8


def test_group_products_silhouette_is_the_final_groupings_own():
    """Whether the final silhouette is reused from the K search (same split of the sample) or
    recomputed (the privacy floor merged a group), it is scikit-learn's silhouette of the final labels."""
    from sklearn.metrics import silhouette_score

    from osmf_jobs.paag.cluster import group_products

    rng = np.random.default_rng(2)
    centers = rng.normal(size=(3, 6)) * 3
    clean, _ = _blobs(rng, centers, [120, 80, 60], spread=0.6)
    merged, _ = _blobs(rng, centers, [200, 150, 12], spread=0.1)
    problems = [(x, np.ones(len(x))) for x in (clean, merged)]
    # The sample is every user (sample_size above the count), so silhouette is over all points.
    out = group_products(problems, min_groups=2, max_groups=4, sample_size=1000, search_size=60, max_iterations=50,
                         seed=0, min_group_size=20)
    assert out[0].merged == 0 and out[1].merged == 1
    for (x, _), g in zip(problems, out):
        assert g.silhouette == pytest.approx(silhouette_score(x, g.labels), abs=1e-4)


def test_nearest_is_the_serving_rule_even_at_ties():
    from osmf_jobs.paag.cluster import _nearest, _serving_nearest

    rng = np.random.default_rng(3)
    cents = rng.normal(size=(4, 16)).astype(np.float32) * 2
    points = rng.normal(size=(3000, 16)).astype(np.float32) * 3
    # Points on the bisector of centroids 0 and 1 (and a hair off it): the matrix-product shortcut
    # cannot tell these apart, the serving rule decides.
    t = rng.uniform(size=(500, 1)).astype(np.float32)
    normal = rng.normal(size=(500, 16)).astype(np.float32)
    axis = cents[1] - cents[0]
    normal -= (normal @ axis)[:, None] * axis / (axis @ axis)
    ties = (cents[0] + cents[1]) / 2 + normal * t + axis * rng.normal(scale=1e-6, size=(500, 1)).astype(np.float32)
    both = np.concatenate([points, ties])
    np.testing.assert_array_equal(_nearest(both, cents), _serving_nearest(both, cents))
    assert (_nearest(points[:5], cents[:1]) == 0).all()


def test_argmin_over_clusters_takes_the_first_minimum():
    import torch

    from osmf_jobs.paag.cluster import _argmin_over_clusters

    scores = torch.randn(3, 5, 200)
    scores[:, 3] = scores[:, 1]  # exact ties: the lower index wins, as argmin's does
    scores[0, :, 0] = 0.0
    expected = torch.from_numpy(scores.numpy().argmin(1))
    assert torch.equal(_argmin_over_clusters(scores), expected)
    assert int(_argmin_over_clusters(scores)[0, 0]) == 0


def test_group_products_uses_weights_of_shared_points():
    from osmf_jobs.paag.cluster import group_products

    rng = np.random.default_rng(1)
    pts, labels = _blobs(rng, rng.normal(size=(3, 4)) * 3, [10, 10, 10])
    weights = np.array([5.0] * 10 + [1.0] * 10 + [3.0] * 10)
    (g,) = group_products([(pts, weights)], min_groups=2, max_groups=4, sample_size=100, max_iterations=50, seed=0, min_group_size=5)
    assert sorted(g.sizes.tolist()) == [10, 30, 50]
    assert M.adjusted_rand_index(g.labels, labels) == pytest.approx(1.0)


def test_representatives_sit_at_distance_percentiles():
    from osmf_jobs.paag.cluster import _representatives

    pts = np.zeros((101, 2), np.float32)
    pts[:, 0] = np.arange(101)  # distances 0..100 from the origin
    reps = _representatives(pts, np.ones(101), np.zeros(2, np.float32))
    assert sorted(reps[:2, 0].tolist()) == [14.0, 15.0] or sorted(reps[:2, 0].tolist()) == [15.0, 16.0]
    assert 55.0 in reps[2:5, 0] and 95.0 in reps[5:, 0] and len(reps) == 10


def test_assigner_matches_the_jobs_assignments(tiny_grouping_artifact, tiny_world):
    from osmf_jobs.paag import Assigner, UnknownProduct

    assigner = Assigner.load(str(tiny_grouping_artifact))
    users = pd.read_parquet(tiny_world / "users.parquet").set_index("user_id")
    assignments = pd.read_parquet(tiny_grouping_artifact / "assignments.parquet")
    sample = assignments.sample(200, random_state=0)
    got = [assigner.assign(p, users.loc[u].to_dict()) for p, u in zip(sample["product_id"], sample["user_id"])]
    assert got == sample["group_id"].tolist()
    batched = assigner.assign_many(sample["product_id"].tolist(), users.loc[sample["user_id"]].reset_index())
    assert batched.tolist() == got
    # Latency is a benchmark's job (bench/serving.py), not a test's: tests stay deterministic.
    attrs = [users.loc[u].to_dict() for u in sample["user_id"]]
    p = assigner.p_click(sample["product_id"].iloc[0], attrs[0], f"{sample['product_id'].iloc[0]}-c0")
    assert 0 < p < 1
    with pytest.raises(UnknownProduct, match="'nope' is not in this grouping artifact"):
        assigner.assign("nope", attrs[0])
    # Attributes outside the allow-list are ignored; unknown values fall back to "unknown".
    assert assigner.attr_index({**attrs[0], "postcode": "P1"}) == assigner.attr_index(attrs[0])
    assert assigner.attr_index({"age": "999"})[0] == 0


def test_assigner_does_not_import_torch(tiny_grouping_artifact):
    code = (
        "import sys; from osmf_jobs.paag import Assigner; "
        f"a = Assigner.load({str(tiny_grouping_artifact)!r}); p = next(iter(a.products())); "
        "print(a.assign(p, {'age': '25-34'})); assert 'torch' not in sys.modules, 'torch imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().isdigit()


def test_cli_assign_and_score(tiny_grouping_artifact, tiny_world, tmp_path):
    from osmf_jobs.paag.__main__ import main

    users = pd.read_parquet(tiny_world / "users.parquet")
    assignments = pd.read_parquet(tiny_grouping_artifact / "assignments.parquet")
    row = assignments.iloc[0]
    attrs = users.set_index("user_id").loc[row["user_id"]].to_dict()
    attrs = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in attrs.items()}
    out = subprocess.run([sys.executable, "-m", "osmf_jobs.paag", "assign", "--artifact", str(tiny_grouping_artifact),
                          "--product", row["product_id"], "--user", json.dumps(attrs)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == row["group_id"]
    held = pd.read_parquet(tiny_world / "truth" / "heldout_impressions.parquet")[["user_id", "product_id", "image_id", "clicked"]]
    held.to_parquet(tmp_path / "imp.parquet")
    assert main(["score", "--artifact", str(tiny_grouping_artifact), "--data", str(tiny_world),
                 "--impressions", str(tmp_path / "imp.parquet"), "--out", str(tmp_path / "scored.csv")]) == 0
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == len(held) and scored["p_click"].between(0, 1).all()
    assert main(["assign", "--artifact", str(tiny_grouping_artifact), "--product", "nope", "--user", "{}"]) == 65
    assert main(["assign", "--artifact", str(tiny_grouping_artifact), "--product", "p0000", "--user", "[1]"]) == 65


def test_cli_assigns_an_offline_audience_as_the_predictor_would(tiny_grouping_artifact, tiny_world, tmp_path):
    """`osmf grouping assign --users FILE --out FILE`: every user of the file (logged or not) × every
    product, each group the same as the one-user form and the serving Assigner give."""
    from osmf_jobs.paag import Assigner
    from osmf_jobs.paag.__main__ import main

    users = pd.read_parquet(tiny_world / "users.parquet")
    audience = pd.concat([users.head(30), pd.DataFrame([{**users.iloc[0].to_dict(), "user_id": "never-seen", "age": "18-24"}])])
    audience.to_parquet(tmp_path / "audience.parquet")
    assigner = Assigner.load(str(tiny_grouping_artifact))
    products = sorted(assigner.products())[:3]
    assert main(["assign", "--artifact", str(tiny_grouping_artifact), "--users", str(tmp_path / "audience.parquet"),
                 "--products", *products, "--out", str(tmp_path / "groups.parquet")]) == 0
    got = pd.read_parquet(tmp_path / "groups.parquet")
    assert list(got.columns) == ["user_id", "product_id", "group_id"] and len(got) == len(audience) * len(products)
    for row in got.sample(20, random_state=0).itertuples():
        attrs = audience.set_index("user_id").loc[row.user_id].to_dict()
        assert assigner.assign(row.product_id, attrs) == row.group_id
    assert set(got["user_id"]) == set(audience["user_id"])  # never "unassigned"
    # Every product of the grouping when --products is left out.
    assert main(["assign", "--artifact", str(tiny_grouping_artifact), "--users", str(tmp_path / "audience.parquet"),
                 "--out", str(tmp_path / "all.csv")]) == 0
    assert pd.read_csv(tmp_path / "all.csv")["product_id"].nunique() == len(list(assigner.products()))
    # Bad input: one line, exit 65, nothing written.
    audience.drop(columns=["age"]).to_parquet(tmp_path / "no-age.parquet")
    for argv in (["--users", str(tmp_path / "no-age.parquet"), "--out", str(tmp_path / "x.parquet")],
                 ["--users", str(tmp_path / "audience.parquet"), "--products", "nope", "--out", str(tmp_path / "x.parquet")],
                 ["--users", str(tmp_path / "audience.parquet")],
                 ["--users", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "x.parquet")]):
        assert main(["assign", "--artifact", str(tiny_grouping_artifact), *argv]) == 65
    assert not (tmp_path / "x.parquet").exists()


def test_score_encodes_creatives_the_model_has_not_seen(tiny_grouping_artifact, tiny_world, tmp_path):
    """A new creative (not in the artifact) is encoded with the grouping's image encoder."""
    import shutil

    from osmf_jobs.paag.__main__ import main

    data = tmp_path / "data"
    shutil.copytree(tiny_world, data, ignore=shutil.ignore_patterns("truth"))
    images = pd.read_parquet(data / "images.parquet")
    first = images.iloc[0]
    shutil.copy(data / first["image_uri"], data / "images" / "new.png")
    pd.concat([images, pd.DataFrame([{"image_id": "new", "product_id": first["product_id"], "image_uri": "images/new.png"}])]).to_parquet(data / "images.parquet")
    user = pd.read_parquet(data / "users.parquet")["user_id"].iloc[0]
    pd.DataFrame({"user_id": [user, user], "product_id": [first["product_id"]] * 2, "image_id": [first["image_id"], "new"]}).to_parquet(tmp_path / "imp.parquet")
    assert main(["score", "--artifact", str(tiny_grouping_artifact), "--data", str(data), "--impressions", str(tmp_path / "imp.parquet"),
                 "--out", str(tmp_path / "out.parquet")]) == 0
    p = pd.read_parquet(tmp_path / "out.parquet")["p_click"].to_numpy()
    assert p[0] == pytest.approx(p[1], rel=1e-4)  # the same pixels -> the same probability


def test_builtin_image_stats_encoder_is_deterministic_and_sees_the_background():
    from PIL import Image

    from osmf_jobs import style as S
    from osmf_jobs.paag.encoders import BUILTIN_IMAGE_STATS, ImageEncoder

    encoder = ImageEncoder(BUILTIN_IMAGE_STATS)
    product = np.zeros((30, 24, 4), np.uint8)
    product[..., :3], product[..., 3] = 120, 255
    a = S.Style("warm", "striped", "bright", "calm")
    b = S.Style("cool", "striped", "bright", "calm")  # only the palette differs
    images = [Image.fromarray(S.compose(product, S.paint_background(st, 64, 0))[0]) for st in (a, a, b)]
    stats, tokens = encoder.encode(images)
    assert stats.shape[0] == 3 and tokens.shape == (3, 4, tokens.shape[2])
    assert np.array_equal(stats[0], stats[1])
    assert np.abs(stats[0] - stats[2]).max() > 0.1
