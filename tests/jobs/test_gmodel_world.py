"""A small synthetic world for the G-MLLM / GRM / Group-DPO job tests, written as the grouping and
GAIP stages would (DESIGN §5), and a check that its CTRs carry the group preferences.

Like `osmf synth`: three latent segments each prefer one palette, pattern, lighting and mood, and a
creative's true click logit gains BETA[axis] for each preferred word; a product's groups are some of
the segments; a group's 10 representative vectors are its segment's prototype plus noise (so held-out
products' groups look like training products' groups, as PAAG embeddings of one segment do).

Two flavours:
- planted (the fast tests): among a product's 8 creatives, one per segment has all of that segment's
  preferred words, so each group's best creative is its segment's ideal — a clean, quickly learnt signal.
- random (`planted=False`, the slow acceptance test): 8 random styles, so a group's best creative
  rarely has every preferred word; the GRM can learn the words, and Group-DPO can beat the logged best.
`truth.json` maps "product/group" to the segment, for checks against the true click model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from osmf_jobs import style

SEGMENTS = (
    style.Style("warm", "striped", "bright", "energetic"),
    style.Style("cool", "dotted", "dim", "calm"),
    style.Style("fresh", "wavy", "soft", "playful"),
)
BETA = {"palette": 1.0, "pattern": 0.6, "lighting": 0.6, "mood": 0.5}  # logit gain of each preferred word
INTERCEPT = -3.6
AGE_BANDS = ("18-24", "25-34", "35-54")
NOUNS = ("mug", "lamp", "sneaker", "backpack", "watch", "bottle", "headphones", "vase")
ADJECTIVES = ("red", "blue", "green", "black", "white", "yellow")
SIZE = 64


@dataclass
class World:
    data: Path
    grouping: Path
    gaip: Path


def _cutout(rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    colour = tuple(int(c) for c in rng.integers(40, 220, size=3)) + (255,)
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.5:
        draw.ellipse((14, 10, 50, 54), fill=colour)
    else:
        draw.rectangle((16, 12, 48, 52), fill=colour)
    return image


def _manifest(path: Path, kind: str, inputs: list[dict]) -> None:
    (path / "manifest.json").write_text(json.dumps({"kind": kind, "name": path.name, "inputs": inputs, "metrics": {}, "files": []}))


def build_world(root: Path, n_products: int = 12, n_eval: int = 4, seed: int = 0, pairs_per_group: int = 8, with_pairs: bool = True, planted: bool = True) -> World:
    rng = np.random.default_rng(seed)
    data, grouping, gaip = root / "data", root / "grouping", root / "gaip"
    for path in (data / "products", data / "images", grouping, gaip):
        path.mkdir(parents=True, exist_ok=True)
    prototypes = rng.normal(size=(len(SEGMENTS), 128)).astype(np.float32)
    products, images, groups, samples, pairs, users, assignments = [], [], [], [], [], [], []
    truth: dict[str, int] = {}
    all_styles = style.Style.all()
    for p in range(n_products):
        pid = f"p{p:03d}"
        title = f"{ADJECTIVES[p % len(ADJECTIVES)]} {NOUNS[p % len(NOUNS)]}"
        cutout = _cutout(rng)
        cutout.save(data / "products" / f"{pid}.png")
        products.append({"product_id": pid, "title": title, "image_uri": f"products/{pid}.png"})
        split = "eval" if p >= n_products - n_eval else "train"
        segments = sorted(rng.choice(len(SEGMENTS), size=int(rng.integers(2, 4)), replace=False).tolist())
        styles = [all_styles[int(i)] for i in rng.choice(len(all_styles), size=8, replace=False)]
        if planted:
            styles = list(SEGMENTS) + styles[: 8 - len(SEGMENTS)]
        product_images = []
        for i, st in enumerate(styles):
            iid = f"{pid}-i{i}"
            pixels, _ = style.compose(cutout, style.paint_background(st, SIZE, seed=p * 10 + i))
            Image.fromarray(pixels).save(data / "images" / f"{iid}.png")
            images.append({"image_id": iid, "product_id": pid, "image_uri": f"images/{iid}.png"})
            product_images.append((iid, st))
        for g, s in enumerate(segments):
            truth[f"{pid}/{g}"] = s
            reps = prototypes[s] + 0.3 * rng.normal(size=(10, 128)).astype(np.float32)
            groups.append({"product_id": pid, "group_id": g, "size": 50, "centroid": reps.mean(0).tolist(),
                           "representatives": [v.tolist() for v in reps], "silhouette": 0.4})
            for u in range(6):
                uid = f"u{p}-{g}-{u}"
                users.append({"user_id": uid, "age_band": AGE_BANDS[s] if u < 5 else AGE_BANDS[(s + 1) % 3], "region": str(rng.choice(["north", "south"]))})
                assignments.append({"product_id": pid, "user_id": uid, "group_id": g})
            ctrs = {}
            for iid, st in product_images:
                logit = INTERCEPT + sum(b for axis, b in BETA.items() if getattr(st, axis) == getattr(SEGMENTS[s], axis))
                ctr = float(1 / (1 + np.exp(-logit))) + float(rng.uniform(0, 0.002))
                ctrs[iid] = ctr
                impressions = 2000
                samples.append({"product_id": pid, "title": title, "image_id": iid, "image_uri": f"images/{iid}.png",
                                "group_id": g, "group_embedding": reps.mean(0).tolist(), "impressions": impressions,
                                "clicks": int(round(ctr * impressions)), "ctr": ctr, "caption": style.caption(st), "split": split})
            ordered = sorted(ctrs, key=ctrs.get, reverse=True)
            candidates = [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :] if ctrs[a] > 1.2 * ctrs[b]]
            for j in sorted(rng.permutation(len(candidates))[:pairs_per_group]):
                a, b = candidates[j]
                pairs.append({"product_id": pid, "group_id": g, "chosen_image_id": a, "rejected_image_id": b,
                              "chosen_ctr": ctrs[a], "rejected_ctr": ctrs[b], "split": split})
    (root / "truth.json").write_text(json.dumps(truth))
    pd.DataFrame(products).to_parquet(data / "products.parquet")
    pd.DataFrame(images).to_parquet(data / "images.parquet")
    pd.DataFrame(users).drop_duplicates("user_id").to_parquet(data / "users.parquet")
    pd.DataFrame(groups).to_parquet(grouping / "groups.parquet")
    pd.DataFrame(assignments).to_parquet(grouping / "assignments.parquet")
    # The grouping's preference model (random, over builtin:image-stats): the campaign's and Group-DPO's
    # preference-model scorer and the GRM's group × image term read it.
    from tests.jobs.test_campaign_world import write_preference_model

    write_preference_model(grouping, [p["product_id"] for p in products], seed, dim=128, vocab={"age_band": list(AGE_BANDS)})
    pd.DataFrame(samples).to_parquet(gaip / "samples.parquet")
    if with_pairs:
        pd.DataFrame(pairs).to_parquet(gaip / "pairs.parquet")
    _manifest(grouping, "AudienceGrouping", [{"name": "data", "kind": None, "uri": data.as_uri(), "digest": None}])
    _manifest(gaip, "GAIPDataset", [{"name": "grouping", "kind": "AudienceGrouping", "uri": grouping.as_uri(), "digest": None},
                                    {"name": "data", "kind": None, "uri": data.as_uri(), "digest": None}])
    return World(data, grouping, gaip)


def true_logit(segment: int, text: str) -> float:
    """The world's click logit of the background a prompt renders to (procedural renderer)."""
    painted = style.parse_prompt(text)
    return INTERCEPT + sum(b for axis, b in BETA.items() if getattr(painted, axis) == getattr(SEGMENTS[segment], axis))


@pytest.fixture(scope="session")
def gmodel_world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("gmodel-world"))


def test_world_ctrs_follow_segment_preferences(gmodel_world: World) -> None:
    samples = pd.read_parquet(gmodel_world.gaip / "samples.parquet")
    best = samples.sort_values("ctr", ascending=False).drop_duplicates(["product_id", "group_id"])
    # Groups of a product mostly differ in their best creative, which shares preferred words with
    # some segment more often than a random creative does.
    assert best.groupby("product_id")["caption"].nunique().mean() > 1.5
    preferred = {w for seg in SEGMENTS for w in seg.words()}
    share = lambda captions: np.mean([len(set(c.replace(",", "").split()) & preferred) for c in captions])  # noqa: E731
    assert share(best["caption"]) > share(samples["caption"]) + 0.3
    pairs = pd.read_parquet(gmodel_world.gaip / "pairs.parquet")
    assert (pairs["chosen_ctr"] > 1.2 * pairs["rejected_ctr"]).all()
    assert set(pairs["split"]) == {"train", "eval"}


def job_config(path: Path, kind: str, spec: dict, run: Path, inputs: dict[str, tuple[str | None, Path]]) -> Path:
    """Write the one JSON document a Job receives (docs/contracts.md) and return its path."""
    doc = {
        "apiVersion": "osmf.dev/v1alpha1", "kind": kind, "metadata": {"name": run.name, "namespace": "default"},
        "spec": spec, "step": "train", "run": {"uri": run.as_uri(), "inputHash": run.name},
        "inputs": {name: {"kind": k, "name": name, "uri": p.as_uri()} for name, (k, p) in inputs.items()},
        "codeVersion": "test",
    }
    path.write_text(json.dumps(doc))
    return path


def world_inputs(world: World) -> dict[str, tuple[str | None, Path]]:
    return {"dataset": ("GAIPDataset", world.gaip), "grouping": ("AudienceGrouping", world.grouping)}


TINY = {"baseModel": {"uri": "builtin:tiny-llava"}, "datasetRef": {"name": "gaip"}}


def pretrain_spec(**training) -> dict:
    return TINY | {"task": "pretrain", "training": {
        "epochs": 10, "learningRate": 1e-3, "batchSize": 16, "warmupRatio": 0.05, "precision": "fp32",
        "checkpointEverySteps": 50} | training}


def reward_spec(**training) -> dict:
    # batchSize counts (product, group)s, each with all its images (~8 rows): 2 per step is the
    # 16 rows the pair-by-pair loop took as 8 pairs.
    return {"task": "reward", "datasetRef": {"name": "gaip"}, "initFromRef": {"name": "pretrain"}, "training": {
        "epochs": 20, "learningRate": 1e-3, "batchSize": 2, "warmupRatio": 0.05, "precision": "fp32",
        "checkpointEverySteps": 50} | training}


@dataclass
class TrainedRuns:
    world: World
    pretrain: Path
    reward: Path


_TRAINED: dict[str, TrainedRuns] = {}


def trained_runs(tmp_path_factory) -> TrainedRuns:
    """The tiny world with a pretrain and a reward run, made once per test process (the gmllm and
    groupdpo test modules share it; module-scoped fixtures could not)."""
    if "runs" not in _TRAINED:
        import torch

        from osmf_jobs.gmllm.config import GMLLMTrainingConfig
        from osmf_jobs.gmllm.main import main
        from osmf_jobs.runtime import build_context, load_config

        root = tmp_path_factory.mktemp("gmodel-trained")
        world = build_world(root)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            pretrain, reward = root / "pretrain", root / "reward"
            config = job_config(root / "pretrain.json", "GMLLMTraining", pretrain_spec(), pretrain, world_inputs(world))
            main(build_context(load_config(config.read_text(), GMLLMTrainingConfig)))
            inputs = world_inputs(world) | {"init": ("GMLLMTraining", pretrain)}
            config = job_config(root / "reward.json", "GMLLMTraining", reward_spec(), reward, inputs)
            main(build_context(load_config(config.read_text(), GMLLMTrainingConfig)))
        finally:
            torch.set_num_threads(before)
        _TRAINED["runs"] = TrainedRuns(world, pretrain, reward)
    return _TRAINED["runs"]


@pytest.fixture
def one_thread():
    """2 shared cores: one intra-op thread is ~10x faster for tiny models than two fighting threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
