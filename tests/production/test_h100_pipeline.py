"""examples/h100-pipeline, every stage through its real entry point as `osmf render` makes it, with
production-family stand-in models on a real S3 server (see conftest.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.production.conftest import MULTIPART_CHUNK_MB, MULTIPART_THRESHOLD_MB, Production, run_job


def _run_uri(production: Production, kind: str, name: str, step: str = "train") -> str:
    return production.job(kind, name, step).config["run"]["uri"]


def _objects(production: Production, uri: str) -> dict[str, dict]:
    """key relative to `uri` → list_objects_v2 entry (Size, ETag)."""
    store = production.store(uri)
    prefix = f"{store.prefix}/"
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
    return {o["Key"].removeprefix(prefix): o for page in pages for o in page.get("Contents", [])}


def _parts(production: Production, uri: str, rel: str) -> int:
    """How many parts S3 stored the object in (absent for a single PUT)."""
    store = production.store(uri)
    head = store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/{rel}", PartNumber=1)
    return int(head.get("PartsCount") or 0)


def _model_weights(production: Production, run_uri: str, dest: Path) -> dict:
    """Every tensor a GMLLMTraining run published (group projector + head, and the LLaVA weights)."""
    from safetensors.torch import load_file

    production.store(run_uri).download("model", dest)
    out = load_file(str(dest / "group.safetensors"))
    for path in sorted((dest / "mllm").glob("*.safetensors")):
        out |= load_file(str(path))
    return out


def test_the_stand_ins_are_the_example_families_in_sharded_safetensors(production: Production) -> None:
    models = production.root / "models"
    kinds = {name: json.loads((models / name / "config.json").read_text()).get("architectures", [None])[0]
             for name in ("llava-v1.6-vicuna-7b", "clip-vit-large-patch14", "resnet-50")}
    assert kinds == {"llava-v1.6-vicuna-7b": "LlavaNextForConditionalGeneration", "clip-vit-large-patch14": "CLIPModel",
                     "resnet-50": "ResNetModel"}
    unet = json.loads((models / "sd15-inpainting" / "unet" / "config.json").read_text())
    assert unet["_class_name"] == "UNet2DConditionModel" and unet["in_channels"] == 9  # SD1.5-inpainting's UNet
    assert json.loads((models / "controlnet-canny-sd15" / "config.json").read_text())["_class_name"] == "ControlNetModel"
    for folder in (models / "llava-v1.6-vicuna-7b", models / "clip-vit-large-patch14", models / "sd15-inpainting" / "unet",
                   models / "controlnet-canny-sd15"):
        assert len(list(folder.glob("*.safetensors"))) > 1 and list(folder.glob("*.safetensors.index.json")), folder
    # Every model URI of the run configs points at a stand-in in the test bucket.
    uris = {u for job in production.jobs for u in re.findall(r"s3://[^\"' ]+/models/[a-z0-9.-]+", json.dumps(job.config))}
    assert {u.rsplit("/", 1)[1] for u in uris} == {"llava-v1.6-vicuna-7b", "clip-vit-large-patch14", "resnet-50",
                                                   "sd15-inpainting", "controlnet-canny-sd15"}


def test_grouping_encodes_titles_with_clip_and_images_with_resnet_from_s3(production: Production) -> None:
    run = production.store(_run_uri(production, "AudienceGrouping", "spring-grouping"))
    config = run.read_json("model/config.json")
    assert config["text_encoder"].endswith("/models/clip-vit-large-patch14")
    assert config["image_encoder"].endswith("/models/resnet-50")
    assert run.read_json("metrics.json")["groups"] >= 3 and run.exists("manifest.json")
    assert len([j for j in production.jobs if j.kind == "AudienceGrouping" and j.step == "cluster"][0].stderr) == 2  # 2 shards


def test_gaip_captions_logged_images_with_the_vision_language_model(production: Production) -> None:
    import pandas as pd

    from osmf_jobs import style

    run = production.store(_run_uri(production, "GAIPDataset", "spring-gaip", "aggregate"))
    local = production.root / "gaip-samples.parquet"
    run.download("samples.parquet", local)
    captions = pd.read_parquet(local)["caption"]
    probe = {style.caption(s) for s in style.Style.all()}
    assert len(captions) and captions.map(lambda c: isinstance(c, str)).all()
    assert not set(captions) <= probe  # written by the (random) VLM, not the probe's vocabulary
    assert any("downloading" in log and "llava-v1.6-vicuna-7b" in log for log in production.job("GAIPDataset", "spring-gaip", "aggregate").stderr)


def test_pretrain_runs_fsdp_with_gradient_checkpointing_from_per_rank_sharded_loading(production: Production) -> None:
    job = production.job("GMLLMTraining", "spring-gmllm", "train")
    assert job.config["spec"]["training"]["strategy"] == "fsdp" and job.config["spec"]["training"]["gradientCheckpointing"]
    assert job.command[1:4] == ["-m", "osmf_jobs.launch", "--standalone"] and "--nproc-per-node=2" in job.command
    (log,) = job.stderr
    assert "osmf: FSDP over 2 ranks: sharded" in log and "LlamaDecoderLayer" in log
    assert "osmf: gradient checkpointing: 4 blocks recompute" in log  # 2 CLIP + 2 Llama layers
    assert log.count("into this rank's shards") == 2  # each rank read its own slices
    # One download per node (the cache's lock): the GAIP captioner fetched the LLaVA model before
    # this job's two ranks, which used that copy.
    downloads = [line for j in production.jobs for text in j.stderr for line in text.splitlines()
                 if line.startswith("osmf: downloading") and "/models/llava-v1.6-vicuna-7b " in line]
    assert len(downloads) == 1, downloads
    metrics = production.store(_run_uri(production, "GMLLMTraining", "spring-gmllm")).read_json("metrics.json")
    assert metrics["world_size"] == 2 and metrics["steps"] == 6 and metrics["eval_loss"] is not None


def test_checkpoints_are_dcp_files_of_every_rank_uploaded_multipart(production: Production) -> None:
    uri = _run_uri(production, "GMLLMTraining", "spring-gmllm")
    objects = _objects(production, uri)
    for slot in ("a", "b"):
        names = {k.split("/")[-1] for k in objects if k.startswith(f"checkpoints/{slot}/shards/")}
        assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= names, names
        assert f"checkpoints/{slot}/done.json" in objects
    big = {k: o for k, o in objects.items() if k.endswith(".distcp") and o["Size"] > MULTIPART_CHUNK_MB * 2**20}
    assert big, {k: o["Size"] for k, o in objects.items() if k.endswith(".distcp")}
    for key, entry in big.items():
        assert re.search(r"-\d+\"?$", entry["ETag"]), (key, entry["ETag"])  # a multipart upload's ETag
        assert _parts(production, uri, key) >= 2, key


def test_the_published_model_is_uploaded_multipart(production: Production) -> None:
    uri = _run_uri(production, "GMLLMTraining", "spring-gmllm")
    large = {k: o for k, o in _objects(production, uri).items() if k.startswith("model/") and o["Size"] > MULTIPART_THRESHOLD_MB * 2**20}
    assert large
    assert all(re.search(r"-\d+\"?$", o["ETag"]) for o in large.values()), {k: o["ETag"] for k, o in large.items()}


def test_a_killed_pretrain_resumes_from_its_checkpoint_and_publishes_the_same_weights(production: Production, tmp_path: Path) -> None:
    import psutil
    import torch

    job = production.job("GMLLMTraining", "spring-gmllm", "train")
    config = dict(job.config)
    run_uri = config["run"]["uri"].rstrip("/") + "-killed"
    config["run"] = dict(config["run"], uri=run_uri)
    config_file = tmp_path / "killed.json"
    config_file.write_text(json.dumps(config))
    command = [str(config_file) if part == str(job.config_file) else part for part in job.command]
    store = production.store(run_uri)
    process = subprocess.Popen(command, env=job.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.monotonic() + 900
    try:
        while not store.exists("checkpoints/a/done.json") or store.read_json("checkpoints/a/done.json").get("step") is None:
            assert process.poll() is None, f"the run ended ({process.returncode}) before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:  # SIGKILL the launcher, torchrun and both workers at once, as a node loss would
        tree = [process.pid] + [p.pid for p in psutil.Process(process.pid).children(recursive=True)] if process.poll() is None else []
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(60)
    assert not store.exists("manifest.json")
    resumed = type(job)(job.kind, job.name, job.step, command, job.env, config, config_file, 1)
    run_job(resumed, tmp_path)
    metrics = store.read_json("metrics.json")
    assert "resuming from checkpoint at step" in resumed.stderr[0] and 2 <= metrics["resumed_from_step"] < 6
    before = _model_weights(production, job.config["run"]["uri"], tmp_path / "uninterrupted")
    after = _model_weights(production, run_uri, tmp_path / "resumed")
    assert before.keys() == after.keys() and len(before) > 50
    for name in before:
        assert torch.allclose(before[name].float(), after[name].float(), atol=1e-5), name


def test_the_reward_model_trains_under_fsdp_from_the_pretrain_run(production: Production) -> None:
    job = production.job("GMLLMTraining", "spring-grm", "train")
    (log,) = job.stderr
    assert "osmf: FSDP over 2 ranks" in log and log.count("into this rank's shards") == 2
    metrics = production.store(_run_uri(production, "GMLLMTraining", "spring-grm")).read_json("metrics.json")
    assert metrics["task"] == "reward" and metrics["world_size"] == 2 and metrics["pairwise_accuracy"] is not None


def test_group_dpo_trains_under_torchrun_rendering_with_sd15_structured_models(production: Production) -> None:
    job = production.job("GroupDPORun", "spring-dpo", "train")
    assert "--nproc-per-node=2" in job.command and job.config["spec"]["rendering"]["backend"] == "diffusers"
    run = production.store(_run_uri(production, "GroupDPORun", "spring-dpo"))
    metrics = run.read_json("metrics.json")
    assert metrics["world_size"] == 2 and metrics["rounds"] == 2 and metrics["win_rate_vs_initial"] is not None
    assert run.exists("adapter/adapter_config.json") and run.exists("manifest.json")


def test_the_campaign_renders_every_group_of_its_products(production: Production) -> None:
    from PIL import Image

    run = production.store(_run_uri(production, "AdImageCampaign", "spring-campaign", "merge"))
    products = run.read_json("campaign.json")["products"]
    assert {p["product_id"] for p in products} == set(production.example["05-campaign-0.yaml"]["spec"]["products"])
    groups = [g for p in products for g in p["groups"]]
    assert groups and all(len(g["candidates"]) == 2 and g["score"] is not None for g in groups)  # 2 images per group, GRM-scored
    local = production.root / "campaign-image.png"
    run.download(groups[0]["image"], local)
    assert Image.open(local).size == (64, 64)
