"""The campaign job end to end on a tiny world: images per product and group, exact product pixels,
a complete manifest, the scorer's choice among generated and logged candidates, sharding that
changes nothing, and bad inputs that exit 65."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.jobs.test_campaign_world import campaign_config, run_campaign_step, shared_campaign_world

from osmf_jobs import style
from tests.jobs.test_campaign_world import LOGGED
from osmf_jobs.campaign.generate import GENERATED, LOGGED as LOGGED_SOURCE, CampaignGenerator, Candidate, ProductResult
from osmf_jobs.campaign.inputs import CatalogEntry, Group
from osmf_jobs.render import product_cutout

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shared_campaign_world(tmp_path_factory)


def run_step(config: dict, workdir: Path, index: int = 0) -> subprocess.CompletedProcess:
    """The real entry point, as a pod runs it."""
    path = workdir / f"config-{config['step']}-{index}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "osmf_jobs.campaign", "--config", str(path)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def run_in_process(config: dict, index: int = 0) -> None:
    run_campaign_step(config, index)


def opaque_product_pixels(cutout_path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference pixels, mask of fully opaque product pixels) as style.compose places the cut-out."""
    cut = product_cutout(Image.open(cutout_path))
    on_black, mask = style.compose(cut, np.zeros((size, size, 3), np.uint8))
    on_white, _ = style.compose(cut, np.full((size, size, 3), 255, np.uint8))
    opaque = mask & np.all(on_black == on_white, axis=-1)
    return on_black, opaque


@pytest.fixture(scope="module")
def campaign_run(world, tmp_path_factory):
    """GroupDPORun generator + GRM, one shard, through the real entry point."""
    run = tmp_path_factory.mktemp("campaign-run")
    for step in ("generate", "merge"):
        done = run_step(campaign_config(world, run, step), run)
        assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_every_product_and_group_gets_images_and_a_onesize(world, campaign_run):
    campaign = json.loads((campaign_run / "campaign.json").read_text())
    groups = {(p["product_id"]): [g["group_id"] for g in p["groups"]] for p in campaign["products"]}
    assert groups == {"p00": [0, 1], "p01": [0, 1, 2], "p02": [0]}
    for product in campaign["products"]:
        pid = product["product_id"]
        for group in product["groups"]:
            assert [c["n"] for c in group["candidates"]] == [0, 1]
            for cand in group["candidates"]:
                assert cand["image"] == f"images/{pid}/{group['group_id']}/{cand['n']}.png"
                assert (campaign_run / cand["image"]).is_file() and cand["source"] == "generated"
            assert group["source"] in ("generated", "logged")
            if group["source"] == "logged":
                assert group["image"] == f"images/{pid}/logged/{group['image_id']}.png" and group["prompt"] is None
                logged = world.data / "images" / f"{group['image_id']}.png"
                assert (campaign_run / group["image"]).read_bytes() == Image.open(logged).convert("RGB").tobytes() or \
                    np.array_equal(np.asarray(Image.open(campaign_run / group["image"])), np.asarray(Image.open(logged).convert("RGB")))
            else:
                assert group["image"] == f"images/{pid}/{group['group_id']}/{group['n']}.png" and isinstance(group["prompt"], str)
            assert group["image_uri"] == (campaign_run / group["image"]).as_uri() and group["size"] > 0
            assert group["generated"]["source"] == "generated" and group["logged"]["source"] == "logged"
        assert (campaign_run / product["onesize"]["image"]).is_file()
        assert product["onesize"]["image_uri"] == (campaign_run / product["onesize"]["image"]).as_uri()
        assert product["cutout_uri"] == (world.data / "products" / f"{pid}.png").as_uri()
    assert campaign["selection"] == {"requested": "auto", "used": "preferenceModel", "includeLogged": True,
                                     "heldout_pairwise_accuracy": {"rewardModel": 0.6, "preferenceModel": 0.7}}


def test_product_pixels_are_exactly_the_cutout(world, campaign_run):
    campaign = json.loads((campaign_run / "campaign.json").read_text())
    checked = 0
    for product in campaign["products"]:
        reference, opaque = opaque_product_pixels(world.data / "products" / f"{product['product_id']}.png", 64)
        assert opaque.sum() > 500
        paths = {c["image"] for g in product["groups"] for c in g["candidates"]} | {g["image"] for g in product["groups"]} | {product["onesize"]["image"]}
        for rel in sorted(paths):
            pixels = np.asarray(Image.open(campaign_run / rel).convert("RGB"))
            assert pixels.shape == (64, 64, 3)
            assert np.array_equal(pixels[opaque], reference[opaque]), rel
            checked += 1
    assert checked >= (2 + 3 + 1) * 2 + 1  # every generated candidate and at least one one-size image


def test_the_scorer_picks_each_groups_best_among_generated_and_logged(campaign_run):
    campaign = json.loads((campaign_run / "campaign.json").read_text())
    gains, sources = [], set()
    for product in campaign["products"]:
        for group in product["groups"]:
            best_generated = max(group["candidates"], key=lambda c: (c["score"], -c["n"]))
            assert (group["generated"]["n"], group["generated"]["score"]) == (best_generated["n"], best_generated["score"])
            # The pick is the better of the best generated and the best logged; a tie keeps the logged one.
            if group["logged"]["score"] >= best_generated["score"]:
                assert (group["source"], group["image_id"], group["score"]) == ("logged", group["logged"]["image_id"], group["logged"]["score"])
            else:
                assert (group["source"], group["n"], group["score"]) == ("generated", best_generated["n"], best_generated["score"])
            sources.add(group["source"])
            gains.append(group["score"] - group["onesize_score"])
        assert product["onesize"]["score"] is not None and product["onesize"]["owner"]
    metrics = json.loads((campaign_run / "manifest.json").read_text())["metrics"]
    assert metrics["mean_score_gain"] == pytest.approx(np.mean(gains))
    assert metrics["win_rate_vs_onesize"] == pytest.approx(np.mean(np.asarray(gains) > 0))
    assert metrics["groups_generated"] + metrics["groups_logged"] == metrics["groups"]


def test_manifest_lists_every_file_with_its_digest(campaign_run):
    manifest = json.loads((campaign_run / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(campaign_run).as_posix() for p in campaign_run.rglob("*")
               if p.is_file() and not p.name.startswith(".") and p.name not in ("manifest.json", "progress.json")
               and not p.name.startswith("config-")}
    assert on_disk - set(listed) == set()
    for rel in on_disk:
        data = (campaign_run / rel).read_bytes()
        assert listed[rel]["size"] == len(data) and listed[rel]["sha256"] == hashlib.sha256(data).hexdigest()
    assert {"campaign.json", "report.html", "shards/0/records.json"} <= set(listed)
    assert manifest["kind"] == "AdImageCampaign" and manifest["inputHash"] == "0123456789abcdef"
    assert {i["name"] for i in manifest["inputs"]} == {"grouping", "data", "generator", "policy", "reward"}
    metrics = manifest["metrics"]
    assert (metrics["products"], metrics["groups"], metrics["images"], metrics["candidates"]) == (3, 6, 9, 12)
    assert {"mean_score", "mean_generated_score", "mean_best_logged_score", "onesize_mean_score", "mean_score_gain",
            "win_rate_vs_onesize"} <= set(metrics)
    progress = json.loads((campaign_run / "shards" / "0" / "progress.json").read_text())
    assert (progress["current"], progress["total"], progress["percent"]) == (3, 3, 100.0)


def test_shards_split_products_and_change_no_result(world, campaign_run, tmp_path):
    for index in range(2):
        run_in_process(campaign_config(world, tmp_path, "generate", shards=2), index)
    shard_products = [[p["product_id"] for p in json.loads((tmp_path / f"shards/{i}/records.json").read_text())["products"]] for i in range(2)]
    assert shard_products == [["p00", "p02"], ["p01"]]
    run_in_process(campaign_config(world, tmp_path, "merge", shards=2))
    one, two = (json.loads((run / "campaign.json").read_text())["products"] for run in (campaign_run, tmp_path))
    strip = lambda products: json.loads(json.dumps(products).replace(campaign_run.as_uri(), "RUN").replace(tmp_path.as_uri(), "RUN"))  # noqa: E731
    assert strip(one) == strip(two)
    for product in one:
        rel = product["groups"][0]["image"]
        assert (campaign_run / rel).read_bytes() == (tmp_path / rel).read_bytes()


def test_a_pretrain_generator_without_grm_is_scored_by_the_preference_model(world, tmp_path):
    spec = {"generatorRef": {"kind": "GMLLMTraining", "name": "gmllm"}, "rewardModelRef": None, "products": ["p01"]}
    for step in ("generate", "merge"):
        run_in_process(campaign_config(world, tmp_path, step, **spec))
    campaign = json.loads((tmp_path / "campaign.json").read_text())
    (product,) = campaign["products"]
    assert campaign["selection"]["used"] == "preferenceModel" and campaign["selection"]["heldout_pairwise_accuracy"] == {}
    assert all(isinstance(g["score"], float) and 0 < g["score"] < 1 for g in product["groups"])  # an expected CTR
    metrics = json.loads((tmp_path / "manifest.json").read_text())["metrics"]
    assert (metrics["products"], metrics["groups"], metrics["images"], metrics["candidates"]) == (1, 3, 4, 6)


def test_generated_only_when_logged_creatives_are_left_out(world, tmp_path):
    spec = {"products": ["p00"], "selection": {"includeLogged": False, "scorer": "rewardModel"}}
    for step in ("generate", "merge"):
        run_in_process(campaign_config(world, tmp_path, step, **spec))
    campaign = json.loads((tmp_path / "campaign.json").read_text())
    assert campaign["selection"]["used"] == "rewardModel" and campaign["selection"]["includeLogged"] is False
    for group in campaign["products"][0]["groups"]:
        assert group["source"] == "generated" and group["logged"] is None
        assert group["image"] == group["generated"]["image"]
    assert not (tmp_path / "images" / "p00" / "logged").exists()


class TableScorer:
    """Scores from a table: (image, group id) → score; the group id is the representatives' first value."""

    name = "table"

    def __init__(self, table: dict[tuple[str, int], float], default: float | None = None):
        self.table, self.default, self.calls = table, default, []

    def score_batch(self, representatives, titles, images):
        keys = [(image, int(reps[0, 0])) for reps, image in zip(representatives, images)]
        self.calls += keys
        return [self.table[k] if self.default is None else self.table.get(k, self.default) for k in keys]


def choose(candidates: list[tuple[str, str, int | None]], table: dict[tuple[str, int], float], sizes: list[int],
           default: float | None = None) -> tuple[ProductResult, TableScorer]:
    """candidates: (image name, source, owner group)."""
    groups = [Group(g, s, np.full((1, 1), g, np.float32)) for g, s in enumerate(sizes)]
    cands = [Candidate(image, source, owner, i) for i, (image, source, owner) in enumerate(candidates)]
    result = ProductResult(CatalogEntry("p", "t", "x.png"), groups, cands)
    scorer = TableScorer(table, default)
    CampaignGenerator(None, None, scorer, {}, None).choose(result)
    return result, scorer


def test_choice_rules():
    cands = [("g0a", GENERATED, 0), ("g0b", GENERATED, 0), ("g1a", GENERATED, 1), ("g1b", GENERATED, 1),
             ("aud", GENERATED, None), ("L1", LOGGED_SOURCE, None), ("L2", LOGGED_SOURCE, None)]
    table = {("g0a", 0): 0.1, ("g0b", 0): 0.3, ("g1a", 1): 0.2, ("g1b", 1): 0.1, ("L1", 0): 0.25, ("L1", 1): 0.4,
             ("L2", 0): 0.05, ("L2", 1): 0.05, ("aud", 0): 0.2, ("aud", 1): 0.2, ("g0b", 1): 0.0, ("g1a", 0): 0.0}
    result, scorer = choose(cands, table, sizes=[30, 10])
    # group 0: its generated 0.3 beats the best logged 0.25; group 1: logged L1 0.4 beats its generated 0.2
    assert result.chosen == {0: 1, 1: 5} and result.best_generated == {0: 1, 1: 2} and result.best_logged == {0: 5, 1: 5}
    # one-size: size-weighted means (0.75, 0.25): g0b 0.225, L1 0.2875, aud 0.2, L2 0.05 → L1
    assert result.onesize == 5
    assert len(scorer.calls) == len(set(scorer.calls))  # every (image, group) scored once
    assert ("g1b", 0) not in scorer.calls  # another group's runner-up is never scored for a group
    # Ties keep the logged creative (the proven one), then the earliest candidate.
    tie = dict(table) | {("L1", 0): 0.3}
    result, _ = choose(cands, tie, sizes=[30, 10])
    assert result.chosen[0] == 5
    result, _ = choose(cands[:5], {}, sizes=[1, 1], default=0.0)
    assert (result.chosen, result.onesize, result.best_logged) == ({0: 0, 1: 2}, 0, {})


# ---- bad inputs: exit 65 with one line naming the problem -------------------------------------------


def expect_invalid(config: dict, tmp_path: Path, *needles: str) -> str:
    done = run_step(config, tmp_path)
    assert done.returncode == 65, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("osmf: invalid input: "), done.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_empty_products_with_a_grouping_that_has_none(world, tmp_path):
    import pandas as pd

    grouping = tmp_path / "empty-grouping"
    grouping.mkdir()
    frame = pd.read_parquet(world.grouping / "groups.parquet").iloc[0:0]
    frame.to_parquet(grouping / "groups.parquet")
    config = campaign_config(world, tmp_path / "run", "generate")
    config["inputs"]["grouping"]["uri"] = grouping.as_uri()
    expect_invalid(config, tmp_path, "spec.products is empty", "has no products")


def test_unknown_product(world, tmp_path):
    expect_invalid(campaign_config(world, tmp_path / "run", "generate", products=["p00", "nope"]), tmp_path, "'nope'", "spec.products")


def test_product_without_an_image(world, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(world.data, data)
    (data / "products" / "p01.png").unlink()
    (data / "products" / "p02.png").write_bytes(b"not a png")
    config = campaign_config(world, tmp_path / "run", "generate", products=["p01"])
    config["inputs"]["data"]["uri"] = data.as_uri()
    expect_invalid(config, tmp_path, "'p01'", "products/p01.png", "not found")
    config = campaign_config(world, tmp_path / "run", "generate", products=["p02"])
    config["inputs"]["data"]["uri"] = data.as_uri()
    expect_invalid(config, tmp_path, "'p02'", "not a readable image")


def test_generator_of_the_wrong_kind(world, tmp_path):
    config = campaign_config(world, tmp_path / "run", "generate", generatorRef={"kind": "GMLLMTraining", "name": "grm"})
    config["inputs"]["generator"]["uri"] = world.uri("reward")
    expect_invalid(config, tmp_path, "GMLLMTraining/grm", "reward model")
    config = campaign_config(world, tmp_path / "run", "generate")
    config["inputs"]["generator"]["uri"] = world.uri("grouping")  # not a GroupDPORun run
    expect_invalid(config, tmp_path, "GroupDPORun/dpo", "has no adapter_config.json", "LoRA adapter")


def test_a_scorer_that_cannot_rank_and_unreadable_logged_creatives(world, tmp_path):
    import shutil

    import numpy as np_

    grouping = tmp_path / "grouping"
    shutil.copytree(world.grouping, grouping)
    weights = dict(np_.load(grouping / "model" / "weights.npz"))
    weights["creative.std"] = np_.zeros_like(weights["creative.std"])  # every image's features become NaN
    np_.savez(grouping / "model" / "weights.npz", **weights)
    config = campaign_config(world, tmp_path / "run", "generate", products=["p02"], selection={"scorer": "preferenceModel"})
    config["inputs"]["grouping"]["uri"] = grouping.as_uri()
    expect_invalid(config, tmp_path, "spec.selection.scorer", "cannot rank them")
    assert not (tmp_path / "run" / "shards" / "0" / "records.json").exists()  # nothing published half-written
    data = tmp_path / "data"
    shutil.copytree(world.data, data)
    (data / "images" / "p02-c1.png").write_bytes(b"not a png")
    config = campaign_config(world, tmp_path / "run2", "generate", products=["p02"])
    config["inputs"]["data"]["uri"] = data.as_uri()
    expect_invalid(config, tmp_path, "table 'images'", "p02-c1", "not a readable image")


def test_reward_model_scorer_needs_a_reward_model(world, tmp_path):
    config = campaign_config(world, tmp_path / "run", "generate", selection={"scorer": "rewardModel"}, rewardModelRef=None)
    expect_invalid(config, tmp_path, "selection.scorer rewardModel needs rewardModelRef")


def test_merge_without_shard_records(world, tmp_path):
    expect_invalid(campaign_config(world, tmp_path / "run", "merge"), tmp_path, "shard 0 of 1 wrote no records")


def test_campaign_runs_and_serves_from_s3(world, s3_server):
    """The run directory on S3 (inputs stay local): images, campaign.json, report and manifest land in
    the bucket, and the predictor loads the campaign from its STORAGE_URI there."""
    from osmf_jobs.serving.predictor import GroupImagePredictor
    from osmf_core.store import open_store, read_manifest

    uri = f"s3://{s3_server.bucket}/default/adimagecampaign/campaign/s3run"
    for step in ("generate", "merge"):
        config = campaign_config(world, Path("/unused"), step, products=["p02"])
        config["run"]["uri"] = uri
        run_in_process(config)
    store = open_store(uri)
    manifest, _ = read_manifest(store)
    listed = {f["path"] for f in manifest["files"]}
    onesize = store.read_json("campaign.json")["products"][0]["onesize"]["image"]
    assert {"campaign.json", "serving/campaign.json", "report.html", onesize, "images/p02/0/0.png", "images/p02/0/1.png"} <= listed
    campaign = store.read_json("campaign.json")
    assert campaign["products"][0]["groups"][0]["image_uri"].startswith(uri + "/images/p02/0/")
    assert store.child("serving").read_json("campaign.json") == campaign
    model = GroupImagePredictor("campaign", storage_uri=uri + "/serving")  # what the operator sets: campaign.json alone
    model.load()
    assert model.predict({"instances": [{"product_id": "p02", "user": {}}]})["predictions"] == [
        {"group_id": 0, "image_uri": campaign["products"][0]["groups"][0]["image_uri"], "fallback": False}]
