"""A small synthetic world for the G-MLLM / GRM / Group-DPO job tests, written as the grouping and
GAIP stages would (DESIGN §5), and a check that its CTRs carry the group preferences.

Three latent segments each prefer one palette and one lighting; a product's groups are some of the
segments; a group's 10 representative vectors are its segment's prototype plus noise (so held-out
products' groups look like training products' groups, as PAAG embeddings of one segment do).
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

SEGMENTS = (("warm", "bright"), ("cool", "dim"), ("fresh", "soft"))
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


def build_world(root: Path, n_products: int = 12, n_eval: int = 4, seed: int = 0, pairs_per_group: int = 6, with_pairs: bool = True) -> World:
    rng = np.random.default_rng(seed)
    data, grouping, gaip = root / "data", root / "grouping", root / "gaip"
    for path in (data / "products", data / "images", grouping, gaip):
        path.mkdir(parents=True, exist_ok=True)
    prototypes = rng.normal(size=(len(SEGMENTS), 128)).astype(np.float32)
    products, images, groups, samples, pairs, users, assignments = [], [], [], [], [], [], []
    all_styles = style.Style.all()
    for p in range(n_products):
        pid = f"p{p:03d}"
        title = f"{ADJECTIVES[p % len(ADJECTIVES)]} {NOUNS[p % len(NOUNS)]}"
        cutout = _cutout(rng)
        cutout.save(data / "products" / f"{pid}.png")
        products.append({"product_id": pid, "title": title, "image_uri": f"products/{pid}.png"})
        split = "eval" if p >= n_products - n_eval else "train"
        segments = sorted(rng.choice(len(SEGMENTS), size=int(rng.integers(2, 4)), replace=False).tolist())
        # One image in each segment's favourite palette + lighting, plus random others.
        styles = []
        for s in range(len(SEGMENTS)):
            palette, lighting = SEGMENTS[s]
            styles.append(style.Style(palette, str(rng.choice(style.PATTERNS)), lighting, str(rng.choice(style.MOODS))))
        styles += [all_styles[int(i)] for i in rng.choice(len(all_styles), size=3, replace=False)]
        product_images = []
        for i, st in enumerate(styles):
            iid = f"{pid}-i{i}"
            pixels, _ = style.compose(cutout, style.paint_background(st, SIZE, seed=p * 10 + i))
            Image.fromarray(pixels).save(data / "images" / f"{iid}.png")
            images.append({"image_id": iid, "product_id": pid, "image_uri": f"images/{iid}.png"})
            product_images.append((iid, st))
        for g, s in enumerate(segments):
            reps = prototypes[s] + 0.3 * rng.normal(size=(10, 128)).astype(np.float32)
            groups.append({"product_id": pid, "group_id": g, "size": 50, "centroid": reps.mean(0).tolist(),
                           "representatives": [v.tolist() for v in reps], "silhouette": 0.4})
            for u in range(6):
                uid = f"u{p}-{g}-{u}"
                users.append({"user_id": uid, "age_band": AGE_BANDS[s] if u < 5 else AGE_BANDS[(s + 1) % 3], "region": str(rng.choice(["north", "south"]))})
                assignments.append({"product_id": pid, "user_id": uid, "group_id": g})
            palette, lighting = SEGMENTS[s]
            ctrs = {}
            for iid, st in product_images:
                ctr = 0.02 + 0.05 * (st.palette == palette) + 0.02 * (st.lighting == lighting) + float(rng.uniform(0, 0.004))
                ctrs[iid] = ctr
                impressions = 2000
                samples.append({"product_id": pid, "title": title, "image_id": iid, "image_uri": f"images/{iid}.png",
                                "group_id": g, "group_embedding": reps.mean(0).tolist(), "impressions": impressions,
                                "clicks": int(round(ctr * impressions)), "ctr": ctr, "caption": style.caption(st), "split": split})
            ordered = sorted(ctrs, key=ctrs.get, reverse=True)
            candidates = [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :] if ctrs[a] > 1.2 * ctrs[b]]
            for a, b in candidates[:pairs_per_group]:
                pairs.append({"product_id": pid, "group_id": g, "chosen_image_id": a, "rejected_image_id": b,
                              "chosen_ctr": ctrs[a], "rejected_ctr": ctrs[b], "split": split})
    pd.DataFrame(products).to_parquet(data / "products.parquet")
    pd.DataFrame(images).to_parquet(data / "images.parquet")
    pd.DataFrame(users).drop_duplicates("user_id").to_parquet(data / "users.parquet")
    pd.DataFrame(groups).to_parquet(grouping / "groups.parquet")
    pd.DataFrame(assignments).to_parquet(grouping / "assignments.parquet")
    (grouping / "model").mkdir(exist_ok=True)
    (grouping / "model" / "config.json").write_text(json.dumps({"user_attributes": ["age_band"]}))
    pd.DataFrame(samples).to_parquet(gaip / "samples.parquet")
    if with_pairs:
        pd.DataFrame(pairs).to_parquet(gaip / "pairs.parquet")
    _manifest(grouping, "AudienceGrouping", [{"name": "data", "kind": None, "uri": data.as_uri(), "digest": None}])
    _manifest(gaip, "GAIPDataset", [{"name": "grouping", "kind": "AudienceGrouping", "uri": grouping.as_uri(), "digest": None},
                                    {"name": "data", "kind": None, "uri": data.as_uri(), "digest": None}])
    return World(data, grouping, gaip)


@pytest.fixture(scope="session")
def gmodel_world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("gmodel-world"))


def test_world_ctrs_follow_segment_preferences(gmodel_world: World) -> None:
    samples = pd.read_parquet(gmodel_world.gaip / "samples.parquet")
    best = samples.sort_values("ctr", ascending=False).drop_duplicates(["product_id", "group_id"])
    # Each group's best image is in a segment's favourite palette, and groups of a product differ.
    assert best["caption"].str.split(" ").str[0].isin([p for p, _ in SEGMENTS]).all()
    assert best.groupby("product_id")["caption"].nunique().min() >= 2
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
    return {"task": "reward", "datasetRef": {"name": "gaip"}, "initFromRef": {"name": "pretrain"}, "training": {
        "epochs": 10, "learningRate": 1e-3, "batchSize": 8, "warmupRatio": 0.05, "precision": "fp32",
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

        from osmf_jobs.gmllm.main import main
        from osmf_jobs.runtime import build_context, load_config

        root = tmp_path_factory.mktemp("gmodel-trained")
        world = build_world(root)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            pretrain, reward = root / "pretrain", root / "reward"
            config = job_config(root / "pretrain.json", "GMLLMTraining", pretrain_spec(), pretrain, world_inputs(world))
            main(build_context(load_config(config.read_text())))
            inputs = world_inputs(world) | {"init": ("GMLLMTraining", pretrain)}
            config = job_config(root / "reward.json", "GMLLMTraining", reward_spec(), reward, inputs)
            main(build_context(load_config(config.read_text())))
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
