"""GPU acceptance: the real G-MLLM job at the h100 example's settings, a Group-DPO step and SD1.5 +
ControlNet rendering on one H100 or H200, each beside a plain baseline measured in the same run.

    python bench/gpu/acceptance.py --out DIR          # one GPU, about 6-8 minutes (bench/gpu/acceptance.sh)
    python bench/gpu/acceptance.py --dry-run --out D  # the smallest configuration on CPU (a default-tier test)

1. A tiny synthetic world goes through the real grouping and GAIP jobs (in this process).
2. The largest LLaVA-class model whose full fine-tune fits the GPU (FSDP on one rank: fp32 master
   weights, gradients and AdamW, 16 B per trained parameter, plus gradient-checkpointed activations)
   gets random weights (nothing is downloaded; throughput does not depend on the values), saved as
   bf16 safetensors shards like a published checkpoint.
3. `python -m osmf_jobs.launch --standalone --nproc-per-node=1 -m osmf_jobs.gmllm` trains it with the
   example's settings: bf16, strategy fsdp (one rank), gradientCheckpointing, DataLoader workers;
   the job reports `train_tokens_per_second` after its first step. Baseline: plain PyTorch on the
   same weights, batch and answer-tail logits (`logits_to_keep`), bf16 autocast, the same
   activation checkpointing, AdamW: no group tokens, no FSDP, no data loading.
4. A Group-DPO step (bf16 frozen base + LoRA q/v, reference log-probs with the adapter off, the DPO
   loss over group-conditioned summed log-probs) beside the same step on plain `input_ids` with
   full-sequence logits.
5. bench/gpu/render.py: SD1.5-inpainting (9-channel UNet) + canny ControlNet at 512², 30 steps: the
   renderer (bf16, batched) beside plain diffusers in fp16 at each batch size.

MFU: model FLOPs (6·N per trained token, 2·N for the frozen vision tower's patches, attention) over
the GPU's dense bf16 peak. It prints a table and one JSON line (also `<out>/acceptance.json`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for folder in ("jobs", "core", "operator"):  # runnable from a bare checkout
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))

VISION_L14_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14}
CONFIGS = {
    # name: (LM dims, vision dims); the LM dims are Llama-2-7B (Vicuna-7B), OpenLLaMA-3B and TinyLlama-1.1B's.
    "llava-7b": ({"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32}, VISION_L14_336),
    "llava-3b": ({"hidden_size": 3200, "intermediate_size": 8640, "num_hidden_layers": 26, "num_attention_heads": 32, "num_key_value_heads": 32}, VISION_L14_336),
    "llava-1b": ({"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4}, VISION_L14_336),
    "tiny": ({"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4},
             {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32, "patch_size": 8}),
}
VOCAB = 32064
GROUP_TOKENS, GROUP_VECTORS, GROUP_DIM = 10, 10, 128
PROMPT_TEXT, ANSWER = 32, 48  # the baselines' text tokens around the image and answer tokens
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}
WORLD_ATTRIBUTES = ["age", "gender", "income", "device", "household"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the tiny configuration on CPU, fp32, a few steps")
    parser.add_argument("--out", type=Path, required=True, help="working directory and results")
    parser.add_argument("--configs", default="llava-7b,llava-3b,llava-1b", help="LLaVA candidates, largest first")
    parser.add_argument("--batch-size", type=int, default=4, help="examples per step (the example's batchSize)")
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps of the job and of the baseline")
    parser.add_argument("--dpo-pairs", type=int, default=4, help="preference pairs per Group-DPO step (the example's dpo.batchSize)")
    parser.add_argument("--render-batches", default="1,4,8", help="render.py's batch sizes")
    parser.add_argument("--render-budget-s", type=float, default=150.0, help="render.py's time budget")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.configs, args.batch_size, args.steps, args.dpo_pairs = "tiny", 2, 3, 2
    args.configs = args.configs.split(",")
    return args


# ---- models ------------------------------------------------------------------------------------


def llava_config(name: str, tokenizer: Any) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    text, vision = CONFIGS[name]
    return LlavaConfig(
        vision_config=CLIPVisionConfig(**vision, projection_dim=vision["hidden_size"]),
        text_config=LlamaConfig(vocab_size=VOCAB, max_position_embeddings=4096, tie_word_embeddings=False,
                                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, **text),
        image_token_id=tokenizer.image_token_id, image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-2,
    )


def meta_llava(config: Any) -> Any:
    from accelerate import init_empty_weights
    from transformers import LlavaForConditionalGeneration

    with init_empty_weights(include_buffers=False):
        return LlavaForConditionalGeneration(config)


def finetune_bytes(model: Any) -> int:
    """fp32 weights, gradients and two AdamW moments of the trained part (all but the vision tower),
    fp32 weights of the frozen tower: what FSDP on one rank holds before activations."""
    vision = {id(p) for p in model.model.vision_tower.parameters()}
    trained = sum(p.numel() for p in model.parameters() if id(p) not in vision)
    return 16 * trained + 4 * sum(p.numel() for p in model.model.vision_tower.parameters())


def write_model(config: Any, tokenizer: Any, path: Path, device: Any) -> int:
    """Random bf16 weights built on `device` (norms at 1, the rest N(0, 0.02)), saved as safetensors
    shards with a LLaVA processor; returns the parameter count."""
    import torch
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    model = meta_llava(config)
    model.to_empty(device=device)
    model.to(torch.bfloat16)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0) if "norm" in name else param.normal_(0.0, 0.02, generator=generator)
    model.save_pretrained(path, max_shard_size="2GB")
    count = sum(p.numel() for p in model.parameters())
    del model
    cleanup()
    size = config.vision_config.image_size
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer, patch_size=config.vision_config.patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(path)
    return count


def flops_per_token(model: Any, seq: int) -> float:
    """Model FLOPs per LM token of one training step: 6·N for trained LM parameters (the LM head on the
    answer tail only), 2·N per patch for the frozen vision tower, 12·L·d·T for attention."""
    lm = model.model.language_model
    text = model.config.text_config
    n_lm = sum(p.numel() for n, p in lm.named_parameters() if "embed_tokens" not in n) + model.lm_head.weight.numel() * (ANSWER + 1) / seq
    n_vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    n_proj = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    vision = model.config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2 + 1
    return 6 * n_lm + 12 * text.num_hidden_layers * text.hidden_size * seq + patches * (2 * n_vision + 6 * n_proj) / seq


def peak_flops(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((PEAK_BF16[key] for key in PEAK_BF16 if key in name), None)


def cleanup() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- the world and the real jobs ---------------------------------------------------------------


def job_config(kind: str, spec: dict, step: str, run: Path, inputs: dict[str, tuple[str | None, Path]]) -> str:
    return json.dumps({
        "apiVersion": "osmf.dev/v1alpha1", "kind": kind,
        "metadata": {"name": run.name, "namespace": "bench", "uid": "bench", "generation": 1},
        "spec": spec, "step": step, "shards": 1, "run": {"uri": run.as_uri(), "inputHash": run.name},
        "inputs": {name: {"kind": k, "name": name, "uri": p.as_uri()} for name, (k, p) in inputs.items()},
        "codeVersion": "bench",
    })


def run_in_process(job: str, kind: str, spec: dict, steps: list[str], run: Path, inputs: dict) -> None:
    """Steps of a job through its entry point's context, in this process (preparation, not measured)."""
    import importlib

    from osmf_jobs.runtime import build_context, load_config

    main = importlib.import_module(f"osmf_jobs.{job}.main").main
    config_model = getattr(importlib.import_module(f"osmf_jobs.{job}.config"), f"{kind}Config")
    for step in steps:
        main(build_context(load_config(job_config(kind, spec, step, run, inputs), config_model)))


def prepare_world(work: Path) -> tuple[Path, Path, Path]:
    """(data, grouping run, GAIP run): the tiny synthetic world through the real grouping and GAIP jobs."""
    from osmf_jobs.synth.world import SynthConfig, generate

    data, grouping, gaip = work / "world", work / "grouping", work / "gaip"
    generate(data, SynthConfig.tiny(seed=0))
    spec = {"data": {"uri": data.as_uri()}, "userAttributes": WORLD_ATTRIBUTES,
            "model": {"epochs": 2, "learningRate": 0.01, "heldOutFraction": 0.2}, "privacy": {"minGroupSize": 10}}
    run_in_process("grouping", "AudienceGrouping", spec, ["train", "cluster", "merge"], grouping, {"data": (None, data)})
    spec = {"groupingRef": {"name": "grouping"}, "minImpressions": 5, "split": {"evalFraction": 0.25, "seed": 0}}
    run_in_process("gaip", "GAIPDataset", spec, ["aggregate", "merge"], gaip,
                   {"grouping": ("AudienceGrouping", grouping), "data": (None, data)})
    return data, grouping, gaip


def world_words(data: Path) -> list[str]:
    import pandas as pd

    from osmf_jobs.gmodel.text import style_vocabulary, template_words, words

    titles = pd.read_parquet(data / "products.parquet")["title"]
    return sorted(template_words() | style_vocabulary() | {w for t in titles for w in words(t)} | {";", ":", "?", ","})


def run_gmllm_job(model_dir: Path, world: tuple[Path, Path, Path], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The GMLLMTraining job under the operator's torchrun launcher, one rank, the example's settings."""
    data, grouping, gaip = world
    spec = {
        "task": "pretrain", "datasetRef": {"name": "gaip"}, "baseModel": {"uri": model_dir.as_uri()},
        "training": {"epochs": 1000, "maxSteps": args.steps, "learningRate": 2e-6, "batchSize": args.batch_size,
                     "precision": "bf16", "strategy": "fsdp", "gradientCheckpointing": True,
                     "dataLoaderWorkers": 1 if args.dry_run else 6, "checkpointEverySteps": 10**6},
    }
    run = work / "gmllm"
    config = work / "gmllm.json"
    config.write_text(job_config("GMLLMTraining", spec, "train", run, {
        "dataset": ("GAIPDataset", gaip), "grouping": ("AudienceGrouping", grouping), "data": (None, data)}))
    command = [sys.executable, "-m", "osmf_jobs.launch", "--standalone", "--nnodes=1", "--nproc-per-node=1",
               "-m", "osmf_jobs.gmllm", "--config", str(config)]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(str(ROOT / f) for f in ("core", "jobs", "operator")),
                        "OSMF_MODEL_CACHE": str(work / "model-cache"), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"gmllm job exited {done.returncode}:\n{done.stderr[-4000:]}")
    metrics = json.loads((run / "metrics.json").read_text())
    return {"metrics": metrics, "wall_s": time.perf_counter() - started,
            "fsdp": "osmf: FSDP over 1 ranks" in done.stderr, "gradient_checkpointing": "osmf: gradient checkpointing" in done.stderr,
            "sharded_loading": "into this rank's shards" in done.stderr}


# ---- baselines -----------------------------------------------------------------------------------


def synthetic(model: Any, batch: int, device: Any, group_tokens: bool):
    """A batch of gmodel.batching (group tokens), or plain input_ids/labels, with the same image, text
    and answer shapes."""
    import numpy as np
    import torch

    from osmf_jobs.gmodel.batching import assemble

    g = torch.Generator().manual_seed(1)
    vision = model.config.vision_config
    n_image = (vision.image_size // vision.patch_size) ** 2
    image_id = model.config.image_token_id
    prompts = [[1] + [image_id] * n_image + torch.randint(5, 200, (PROMPT_TEXT,), generator=g).tolist() for _ in range(batch)]
    answers = [torch.randint(5, 200, (ANSWER - 1,), generator=g).tolist() + [3] for _ in range(batch)]
    pixels = {"pixel_values": torch.randn(batch, 3, vision.image_size, vision.image_size, generator=g)}
    if group_tokens:
        reps = [np.random.default_rng(i).normal(size=(GROUP_VECTORS, GROUP_DIM)).astype(np.float32) for i in range(batch)]
        return assemble(prompts, reps, pixels, 0, GROUP_TOKENS, answers).to(device)
    ids = torch.tensor([p + a for p, a in zip(prompts, answers)], device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixels["pixel_values"].to(device)}


def timed(step: Any, warmup: int, steps: int, device: Any) -> float:
    stamps = []
    for _ in range(warmup + steps):
        step()
        sync(device)
        stamps.append(time.perf_counter())
    return (stamps[-1] - stamps[warmup - 1]) / steps


def baseline_pretrain(model_dir: Path, args: argparse.Namespace, device: Any, precision: str) -> dict[str, Any]:
    """Plain PyTorch on the same weights: HF LLaVA with the answer-tail logits, loss, backward, clip, AdamW."""
    import torch
    import torch.nn.functional as F
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32, device_map={"": device})
    model.model.vision_tower.requires_grad_(False)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    inputs = synthetic(model, args.batch_size, device, group_tokens=False)
    targets = inputs["input_ids"][:, -ANSWER:]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-6, weight_decay=0.0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with autocast:
            logits = model(**inputs, logits_to_keep=ANSWER + 1).logits[:, :-1].float()
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(step, 2 if not args.dry_run else 1, args.steps, device)
    seq = inputs["input_ids"].shape[1]
    del model, optimizer, params, inputs
    cleanup()
    return {"seconds_per_step": seconds, "seq": seq, "tokens_per_second": args.batch_size * seq / seconds}


def bench_dpo(config: Any, pairs: int, args: argparse.Namespace, device: Any, precision: str) -> dict[str, Any]:
    """One Group-DPO step (osmf: group tokens, answer-tail log-probs) and the same on plain input_ids."""
    import torch
    from peft import LoraConfig, get_peft_model

    from osmf_jobs.gmodel.batching import answer_logprobs
    from osmf_jobs.gmodel.loading import enable_gradient_checkpointing
    from osmf_jobs.gmodel.model import GroupMLLM
    from osmf_jobs.groupdpo.main import lora_target_pattern

    def dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta):
        # The sigmoid DPO loss trl's DPOTrainer computes: the step's cost is the forward/backward,
        # not this line, so both rows share it.
        margin = (chosen - ref_chosen) - (rejected - ref_rejected)
        return -torch.nn.functional.logsigmoid(beta * margin).mean(), margin

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=lora_target_pattern(["q_proj", "v_proj"]))
    warmup = 1 if args.dry_run else 2

    def model_on_device():
        from transformers import LlavaForConditionalGeneration

        torch.manual_seed(0)
        with torch.device(device):  # initialised on the GPU directly, buffers (positions, rotary) included
            return LlavaForConditionalGeneration(config).to(dtype)

    # osmf: group-conditioned summed log-probs (LM head on the answer tail), reference = adapter off.
    model = GroupMLLM(model_on_device(), GROUP_DIM, GROUP_VECTORS, GROUP_TOKENS).to(device=device, dtype=dtype)
    model.requires_grad_(False)
    peft_model = get_peft_model(model.mllm, lora)
    enable_gradient_checkpointing(model.mllm)
    data = synthetic(model.mllm, 2 * pairs, device, group_tokens=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)

    def logprobs():
        return answer_logprobs(model(**data.model_inputs(), logits_to_keep=data.answer_len + 1), data)[0]

    def ours() -> None:
        model.eval()
        with torch.no_grad(), peft_model.disable_adapter(), autocast:
            reference = logprobs()
        model.train()
        with autocast:
            policy = logprobs()
            loss, _ = dpo_loss(policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:], 0.5)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    ours_s = timed(ours, warmup, args.steps, device)
    del model, peft_model, data, params, optimizer
    cleanup()

    # baseline: the same LoRA DPO step on plain input_ids with full-sequence logits.
    model = model_on_device()
    model.requires_grad_(False)
    peft_model = get_peft_model(model, lora)
    enable_gradient_checkpointing(model)
    inputs = synthetic(model, 2 * pairs, device, group_tokens=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)
    targets = inputs["input_ids"][:, 1:]
    mask = torch.zeros_like(targets, dtype=torch.bool)
    mask[:, -ANSWER:] = True

    def plain_logprobs():
        logits = model(**inputs).logits[:, :-1].float()
        picked = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return (picked * mask).sum(-1)

    def plain() -> None:
        model.eval()
        with torch.no_grad(), peft_model.disable_adapter(), autocast:
            reference = plain_logprobs()
        model.train()
        with autocast:
            policy = plain_logprobs()
            loss, _ = dpo_loss(policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:], 0.5)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    plain_s = timed(plain, warmup, args.steps, device)
    del model, peft_model, inputs, params, optimizer
    cleanup()
    return {"pairs": pairs, "osmf_seconds_per_step": ours_s, "plain_seconds_per_step": plain_s, "speed_ratio": plain_s / ours_s}


# ---- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import runpy

    import torch

    from osmf_jobs.gmodel.tokenizer import build_word_tokenizer
    from osmf_jobs.gmodel.training.device import quiet_transformers

    quiet_transformers()
    began = time.perf_counter()
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.dry_run:
        sys.exit("no CUDA device; use --dry-run for the CPU check")
    precision = "bf16" if device.type == "cuda" else "fp32"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_flops(device)
    notes: list[str] = []

    world = prepare_world(work)
    tokenizer = build_word_tokenizer(world_words(world[0]), model_max_length=4096)
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    chosen = None
    for name in args.configs:
        need = finetune_bytes(meta_llava(llava_config(name, tokenizer)))
        if memory is not None and need > 0.85 * memory:
            notes.append(f"{name}: skipped, weights + grads + AdamW need {need / 2**30:.0f} GiB of {memory / 2**30:.0f}")
            continue
        chosen = name
        break
    if chosen is None:
        raise SystemExit(f"no configuration fits: {'; '.join(notes)}")
    config = llava_config(chosen, tokenizer)
    model_dir = work / "models" / chosen
    params = write_model(config, tokenizer, model_dir, device)
    prepared_s = time.perf_counter() - began

    job = run_gmllm_job(model_dir, world, work, args)
    base = baseline_pretrain(model_dir, args, device, precision)
    meta = meta_llava(config)
    per_token = flops_per_token(meta, base["seq"])
    job_tps = job["metrics"]["train_tokens_per_second"]
    training = {
        "config": chosen, "params": params, "batch": args.batch_size, "steps": args.steps,
        "job_tokens_per_second": job_tps, "job_mfu": job_tps * per_token / peak if peak else None,
        "plain_tokens_per_second": base["tokens_per_second"], "plain_mfu": base["tokens_per_second"] * per_token / peak if peak else None,
        "speed_ratio": job_tps / base["tokens_per_second"] if base["tokens_per_second"] else None,
        "job_wall_s": round(job["wall_s"], 1), "job_train_seconds": job["metrics"]["train_seconds"],
        "job_eval_seconds": job["metrics"].get("eval_seconds"), "fsdp": job["fsdp"],
        "gradient_checkpointing": job["gradient_checkpointing"], "sharded_loading": job["sharded_loading"],
    }
    dpo = bench_dpo(config, args.dpo_pairs, args, device, precision) | {"config": chosen}

    render_main = runpy.run_path(str(ROOT / "bench" / "gpu" / "render.py"), run_name="bench_render")["main"]
    render_args = ["--out", str(work / "render.json")] + (["--dry-run"] if args.dry_run else
                                                          ["--batch-sizes", args.render_batches, "--budget-s", str(args.render_budget_s)])
    rendering = render_main(render_args)

    result = {"bench": "acceptance", "device": device_name, "precision": precision, "peak_flops": peak, "training": training,
              "dpo": dpo, "rendering": {k: rendering[k] for k in ("arch", "size", "steps", "baseline_dtype", "osmf", "best_batch",
                                                                   "best_images_per_s", "speedup", "product_kept")},
              "notes": notes, "prepare_s": round(prepared_s, 1), "wall_s": round(time.perf_counter() - began, 1)}
    mfu = lambda v: f"{100 * v:.1f}%" if v is not None else "n/a"  # noqa: E731
    print(f"\nGPU acceptance on {device_name} ({precision}); model {chosen}, {params / 1e9:.2f} B parameters, batch {args.batch_size}")
    print(f"{'row':<58}{'value':>16}{'baseline':>16}{'ratio':>8}")
    print(f"{'G-MLLM training tokens/s (job: FSDP 1 rank + GC | plain)':<58}{job_tps:>16,.0f}{base['tokens_per_second']:>16,.0f}"
          f"{training['speed_ratio']:>8.2f}")
    print(f"{'  MFU':<58}{mfu(training['job_mfu']):>16}{mfu(training['plain_mfu']):>16}")
    dpo_label = f"Group-DPO step s ({dpo['pairs']} pairs; osmf | plain)"
    print(f"{dpo_label:<58}{dpo['osmf_seconds_per_step']:>16.3f}{dpo['plain_seconds_per_step']:>16.3f}{dpo['speed_ratio']:>8.2f}")
    best = next(r for r in rendering["osmf"] if r.get("batch") == rendering["best_batch"])
    render_label = f"SD1.5+ControlNet {rendering['size']}px {rendering['steps']} steps img/s (batch {best['batch']})"
    print(f"{render_label:<58}{best['images_per_s']:>16.3f}{best['baseline_images_per_s']:>16.3f}{best['speedup']:>8.2f}")
    for note in notes:
        print(f"note: {note}")
    print(json.dumps(result))
    (work / "acceptance.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
