"""A tiny world for the campaign, report and serving tests, laid out as the upstream stages write it.

`build_campaign_world(root)` writes a data root (users, products with RGBA cut-outs, LOGGED logged
creatives per product in the images table), a grouping run (groups.parquet, assignments.parquet, a
random PAAG preference model over builtin:image-stats exported in paag's layout under model/,
manifest), and
random tiny G-MLLM runs made with gmodel's builders: a pretrain run, a reward run (GRM) and a
GroupDPORun run (a LoRA adapter over the pretrain run). The models are untrained: the campaign tests
check plumbing, choice rules and pixels, not taste.

The tests below check the world itself, so a broken builder fails here rather than as a confusing
campaign failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

ATTRIBUTES = ("age_band", "region")
AGE_BANDS = ("18-24", "25-34", "35-54")
REGIONS = ("north", "south")
TITLES = ("red mug", "blue lamp", "green sneaker", "black watch")
CUTOUT = 40
LOGGED = 2  # logged creatives per product
LOGGED_STYLES = ("warm", "cool")  # their palettes (vocabulary backgrounds at 64 px)
GROUP_DIM, N_VECTORS, N_TOKENS = 16, 10, 4  # GROUP_DIM: the preference embedding width


@dataclass(frozen=True)
class CampaignWorld:
    root: Path
    data: Path
    grouping: Path
    pretrain: Path
    reward: Path
    dpo: Path
    products: tuple[str, ...]

    def uri(self, name: str) -> str:
        return getattr(self, name).as_uri()


def cutout(rng: np.random.Generator, size: int = CUTOUT) -> Image.Image:
    """An RGBA product: an opaque shape with a 1-pixel half-transparent rim, on transparency."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(30, 225, size=3))
    draw.ellipse((2, 2, size - 3, size - 3), fill=colour + (128,))
    draw.ellipse((3, 3, size - 4, size - 4), fill=colour + (255,))
    draw.rectangle((size // 3, size // 3, size // 2, size // 2), fill=(250, 250, 250, 255))
    return image


def manifest(path: Path, kind: str, inputs: list[dict], metrics: dict) -> None:
    doc = {"apiVersion": "osmf.dev/v1alpha1", "kind": kind, "name": path.name, "namespace": "default",
           "inputs": inputs, "metrics": metrics, "files": [], "endTime": "2026-01-01T00:00:00Z"}
    (path / "manifest.json").write_text(json.dumps(doc))


def write_data(data: Path, rng: np.random.Generator, n_products: int, users_per_product: int) -> tuple[list[str], pd.DataFrame]:
    (data / "products").mkdir(parents=True, exist_ok=True)
    rows, users = [], []
    for p in range(n_products):
        pid = f"p{p:02d}"
        cutout(rng).save(data / "products" / f"{pid}.png")
        rows.append({"product_id": pid, "title": TITLES[p % len(TITLES)], "image_uri": f"products/{pid}.png", "category": "home"})
    for u in range(users_per_product):
        users.append({"user_id": f"u{u:03d}", "age_band": AGE_BANDS[u % 3], "region": REGIONS[(u // 3) % 2],
                      "secret": "never-read"})
    pd.DataFrame(rows).to_parquet(data / "products.parquet")
    write_logged(data, [r["product_id"] for r in rows])
    frame = pd.DataFrame(users)
    frame.to_parquet(data / "users.parquet")
    return [r["product_id"] for r in rows], frame


def write_logged(data: Path, products: list[str]) -> None:
    """The images table: LOGGED creatives per product, its cut-out on vocabulary backgrounds (64 px)."""
    from osmf_jobs import style

    (data / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for pid in products:
        cut = np.asarray(Image.open(data / "products" / f"{pid}.png"))
        for j, palette in enumerate(LOGGED_STYLES[:LOGGED]):
            background = style.paint_background(style.Style(palette, "striped", "bright", "calm"), 64, seed=j)
            Image.fromarray(style.compose(cut, background)[0]).save(data / "images" / f"{pid}-c{j}.png")
            rows.append({"image_id": f"{pid}-c{j}", "product_id": pid, "image_uri": f"images/{pid}-c{j}.png"})
    pd.DataFrame(rows).to_parquet(data / "images.parquet")


def write_preference_model(grouping: Path, products: list[str], seed: int, dim: int = GROUP_DIM,
                           vocab: dict[str, list] | None = None) -> "Assigner":
    """A random PAAG preference model over builtin:image-stats, exported as the grouping job exports it
    (model/config.json + model/weights.npz, paag's layout); returns a numpy Assigner over it (groups
    not yet attached)."""
    import torch

    from osmf_core.layout import Grouping
    from osmf_jobs.paag.assign import Assigner
    from osmf_jobs.paag.model import PreferenceModel, export_arrays

    rng = np.random.default_rng(seed)
    vocab = vocab or {"age_band": list(AGE_BANDS), "region": list(REGIONS)}
    from osmf_jobs.paag.encoders import BUILTIN_IMAGE_STATS, image_statistics

    stats_dim = len(image_statistics(np.zeros((64, 64, 3), np.uint8))[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PreferenceModel([len(v) for v in vocab.values()], text_dim=8, image_token_dim=8, creative_dim=stats_dim, d=dim,
                                n_products=len(products))
    arrays = export_arrays(
        model, rng.normal(size=(len(products), 3, 8)).astype(np.float32), np.ones((len(products), 3), bool),
        rng.normal(size=(len(products), 4, 8)).astype(np.float32), np.zeros((0, stats_dim), np.float32),
        np.zeros(stats_dim, np.float32), np.full(stats_dim, 0.1, np.float32), np.zeros(len(products), np.int64),
    )
    config = {"attributes": list(vocab), "vocab": vocab, "products": products, "creatives": [], "embedding_dim": dim,
              "image_encoder": BUILTIN_IMAGE_STATS}
    (grouping / Grouping.MODEL_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    (grouping / Grouping.MODEL_CONFIG).write_text(json.dumps(config))
    np.savez(grouping / Grouping.MODEL_WEIGHTS, **arrays)
    return Assigner(config, arrays)


def write_grouping(grouping: Path, data: Path, products: list[str], users: pd.DataFrame, rng: np.random.Generator,
                   groups_per_product: tuple[int, ...]) -> None:
    """Groups by age band (a crisp defining attribute for the report); centroids and representatives
    are the members' preference embeddings under the exported model, as the grouping job computes them."""
    assigner = write_preference_model(grouping, products, int(rng.integers(1 << 30)))
    groups, assignments = [], []
    for pid, k in zip(products, groups_per_product):
        embeddings = assigner.embed_many([pid] * len(users), users[list(ATTRIBUTES)])
        for g in range(k):
            members = np.asarray([AGE_BANDS.index(a) % k == g for a in users["age_band"]])
            points = embeddings[members]
            reps = points[rng.choice(len(points), N_VECTORS, replace=len(points) < N_VECTORS)]
            groups.append({"product_id": pid, "group_id": g, "size": int(members.sum()), "centroid": points.mean(0).tolist(),
                           "representatives": [v.tolist() for v in reps], "silhouette": 0.5})
            assignments += [{"product_id": pid, "user_id": u, "group_id": g} for u in users["user_id"][members]]
    pd.DataFrame(groups).to_parquet(grouping / "groups.parquet")
    pd.DataFrame(assignments).to_parquet(grouping / "assignments.parquet")
    manifest(grouping, "AudienceGrouping", [{"name": "data", "kind": "Dataset", "uri": data.as_uri()}],
             {"auroc": 0.71, "ndcg_at_5": 0.42})


def write_models(pretrain: Path, reward: Path, dpo: Path, gaip_uri: str, grouping_uri: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from osmf_jobs.gmodel.model import GroupMLLM, build_tiny_llava, save_gmodel
    from osmf_jobs.gmodel.text import style_vocabulary, template_words, words

    vocabulary = template_words() | style_vocabulary() | {w for t in TITLES for w in words(t)} | {"palette", "backdrop", "lighting", "mood", ","}
    for path, head, seed in ((pretrain, False, 0), (reward, True, 1)):
        mllm, processor = build_tiny_llava(sorted(vocabulary), seed=seed, max_length=128)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GroupMLLM(mllm, GROUP_DIM, N_VECTORS, N_TOKENS, reward_head=head)
        save_gmodel(model, processor, path / "model", {"base_model": "builtin:tiny-llava", "task": "reward" if head else "pretrain"})
        inputs = [{"name": "dataset", "kind": "GAIPDataset", "uri": gaip_uri}, {"name": "grouping", "kind": "AudienceGrouping", "uri": grouping_uri}]
        if head:
            inputs.append({"name": "init", "kind": "GMLLMTraining", "uri": pretrain.as_uri()})
        metrics = {"eval_loss": 1.5 if head else 2.5, **(REWARD_ACCURACIES if head else {})}
        manifest(path, "GMLLMTraining", inputs, metrics)
        (path / "metrics.json").write_text(json.dumps(metrics))
    mllm, _ = build_tiny_llava(sorted(vocabulary), seed=0, max_length=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        peft = get_peft_model(mllm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(dpo / "adapter")
    (dpo / "policy.json").write_text(json.dumps({"uri": pretrain.as_uri()}))
    manifest(dpo, "GroupDPORun", [
        {"name": "policy", "kind": "GMLLMTraining", "uri": pretrain.as_uri()},
        {"name": "reward", "kind": "GMLLMTraining", "uri": reward.as_uri()},
        {"name": "dataset", "kind": "GAIPDataset", "uri": gaip_uri},
    ], {"win_rate": 0.55})


def build_campaign_world(root: Path, n_products: int = 3, groups_per_product: tuple[int, ...] = (2, 3, 1), seed: int = 0,
                         models: bool = True) -> CampaignWorld:
    rng = np.random.default_rng(seed)
    data, grouping, gaip = root / "data", root / "grouping", root / "gaip"
    pretrain, reward, dpo = root / "gmllm", root / "grm", root / "dpo"
    for path in (data, grouping, gaip, pretrain, reward, dpo):
        path.mkdir(parents=True, exist_ok=True)
    products, users = write_data(data, rng, n_products, users_per_product=36)
    write_grouping(grouping, data, products, users, rng, groups_per_product)
    manifest(gaip, "GAIPDataset", [{"name": "grouping", "kind": "AudienceGrouping", "uri": grouping.as_uri()},
                                   {"name": "data", "kind": "Dataset", "uri": data.as_uri()}], {"pairs": 12.0, "samples": 40.0})
    if models:
        write_models(pretrain, reward, dpo, gaip.as_uri(), grouping.as_uri())
    return CampaignWorld(root, data, grouping, pretrain, reward, dpo, tuple(products))


# What the reward run measured on its held-out pairs: `selection.scorer: auto` takes the preference model.
REWARD_ACCURACIES = {"pairwise_accuracy": 0.6, "preference_model_pairwise_accuracy": 0.7}

SPEC = {
    "groupingRef": {"name": "grouping"}, "generatorRef": {"kind": "GroupDPORun", "name": "dpo"},
    "rewardModelRef": {"name": "grm"}, "imagesPerGroup": 2, "generation": {"maxNewTokens": 8},
    "rendering": {"backend": "procedural", "size": 64}, "resources": {"gpusPerNode": 0},
}


def campaign_config(world: CampaignWorld, run: Path, step: str, shards: int = 1, roles: tuple[str, ...] | None = None,
                    **spec) -> dict:
    """The job config the local runtime would write for the campaign; keyword arguments replace spec fields."""
    body = {**SPEC, **spec}
    if body.get("rewardModelRef") is None:
        body.pop("rewardModelRef", None)
    generator = body["generatorRef"]["kind"]
    inputs = {
        "grouping": {"kind": "AudienceGrouping", "name": "grouping", "uri": world.uri("grouping"), "digest": "sha256:g"},
        "data": {"kind": "Dataset", "uri": world.uri("data")},
        "generator": {"kind": generator, "name": body["generatorRef"]["name"],
                      "uri": world.uri("dpo" if generator == "GroupDPORun" else "pretrain"), "digest": "sha256:m"},
    }
    if generator == "GroupDPORun":
        inputs["policy"] = {"kind": "GMLLMTraining", "uri": world.uri("pretrain")}
    if "rewardModelRef" in body:
        inputs["reward"] = {"kind": "GMLLMTraining", "name": body["rewardModelRef"]["name"], "uri": world.uri("reward"), "digest": "sha256:r"}
    if roles is not None:
        inputs = {role: art for role, art in inputs.items() if role in roles}
    return {
        "apiVersion": "osmf.dev/v1alpha1", "kind": "AdImageCampaign",
        "metadata": {"name": "campaign", "namespace": "default", "uid": "uid-campaign", "generation": 1},
        "spec": body, "step": step, "shards": shards,
        "run": {"uri": run.as_uri(), "inputHash": "0123456789abcdef"}, "inputs": inputs, "codeVersion": "0.1.0",
    }


def shared_campaign_world(tmp_path_factory) -> CampaignWorld:
    """The default world, built once per test session (the campaign, report and serving tests share it)."""
    root = tmp_path_factory.getbasetemp() / "shared-campaign-world"
    done = root / ".complete"
    if done.exists():
        return CampaignWorld(root, root / "data", root / "grouping", root / "gmllm", root / "grm", root / "dpo",
                             tuple(json.loads(done.read_text())))
    world = build_campaign_world(root)
    done.write_text(json.dumps(list(world.products)))
    return world


def run_campaign_step(config: dict, shard_index: int = 0) -> None:
    """One campaign step in this process, as its pod would run it; torch's thread count is restored after
    (the job sets it for its own process, and other tests share this one)."""
    import torch

    from osmf_jobs.campaign.config import AdImageCampaignConfig
    from osmf_jobs.campaign.main import main
    from osmf_jobs.runtime import build_context, load_config

    threads = torch.get_num_threads()
    try:
        ctx = build_context(load_config(json.dumps(config), AdImageCampaignConfig))
        ctx.shard_index = shard_index
        main(ctx)
    finally:
        torch.set_num_threads(threads)


def shared_campaign_run(tmp_path_factory) -> Path:
    """A finished campaign on the shared world (default SPEC, run in-process), made once per session."""
    world = shared_campaign_world(tmp_path_factory)
    run = tmp_path_factory.getbasetemp() / "shared-campaign-run"
    if not (run / "manifest.json").exists():
        for step in ("generate", "merge"):
            run_campaign_step(campaign_config(world, run, step))
    return run


# ---- the world's own checks ------------------------------------------------------------------------


def test_world_tables_follow_the_data_contract(tmp_path):
    world = build_campaign_world(tmp_path, models=False)
    groups = pd.read_parquet(world.grouping / "groups.parquet")
    assert list(groups.groupby("product_id").size()) == [2, 3, 1]
    assert {len(r) for r in groups["representatives"]} == {N_VECTORS}
    assignments = pd.read_parquet(world.grouping / "assignments.parquet")
    sizes = assignments.groupby(["product_id", "group_id"]).size()
    assert sizes.to_dict() == {(p, g): s for p, g, s in zip(groups["product_id"], groups["group_id"], groups["size"])}
    for uri in pd.read_parquet(world.data / "products.parquet")["image_uri"]:
        assert Image.open(world.data / uri).mode == "RGBA"
    from osmf_jobs.paag.assign import Assigner

    assigner = Assigner.load(world.uri("grouping"))
    assert {p: list(assigner.group_ids[p]) for p in world.products} == {"p00": [0, 1], "p01": [0, 1, 2], "p02": [0]}
    assert assigner.centroids["p01"].shape == (3, GROUP_DIM)
