"""G-MLLM training throughput and the Group-DPO step time on one GPU, each beside a plain-PyTorch baseline.

    python bench/gpu/train.py               # one H100, random weights at real LLaVA sizes, about 2-4 minutes
    python bench/gpu/train.py --dry-run     # tiny config on CPU in seconds (tests run this)

Weights are random, built from LLaVA-class configs (CLIP ViT-L/14-336 vision tower + a Llama LM;
single 336 px crop, 576 image tokens): throughput does not depend on their values, and nothing is
downloaded. The largest config whose full fine-tune fits the GPU is chosen (AdamW with fp32 master
weights, bf16 autocast — what the gmllm job runs; the pretrained vision tower is frozen as there).

Rows, measured in the same run on the same shapes:
- pretrain, osmf: `gmodel.training.fit` driving `GroupMLLM` (10 group soft tokens written into
  `inputs_embeds`, LM head on the answer tail only, summed answer log-probs);
- pretrain, baseline: plain PyTorch — `LlavaForConditionalGeneration(input_ids, pixel_values,
  labels)`, `loss.backward()`, clip, AdamW — without group tokens;
- Group-DPO step, osmf: bf16 frozen base + LoRA (peft, q/v of the LM), reference log-probs with the
  adapter off, the DPO loss over group-conditioned summed log-probs, one AdamW step;
- Group-DPO step, baseline: the same with plain `input_ids` (no group tokens) and full-sequence logits.
tokens/s counts the LM sequence (group, image and text tokens) of the optimiser steps; MFU is model
FLOPs (6·N per trained token, 2·N for frozen forward-only parts, plus attention) over the GPU's dense
bf16 peak. It prints a table and one JSON line (also written to --out).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for folder in ("jobs", "operator"):  # runnable from a bare checkout (the GPU machine has no install)
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))

VISION_L14_336 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14}
CONFIGS = {
    # name: (LM dims, vision dims); the LM dims are Llama-2-7B, OpenLLaMA-3B and TinyLlama-1.1B's.
    "llava-7b": ({"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32}, VISION_L14_336),
    "llava-3b": ({"hidden_size": 3200, "intermediate_size": 8640, "num_hidden_layers": 26, "num_attention_heads": 32, "num_key_value_heads": 32}, VISION_L14_336),
    "llava-1b": ({"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4}, VISION_L14_336),
    "tiny": ({"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4},
             {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32, "patch_size": 8}),
}
VOCAB = 32064
GROUP_TOKENS, GROUP_VECTORS, GROUP_DIM = 10, 10, 128
PROMPT_TEXT, ANSWER = 32, 48  # text tokens around the image, answer tokens (a background prompt)
IMAGE_TOKEN = 32000
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the tiny config on CPU, fp32, two timed steps")
    parser.add_argument("--configs", default="llava-7b,llava-3b,llava-1b", help="pretrain candidates, largest first")
    parser.add_argument("--batch-sizes", default="8,4,2", help="pretrain batch sizes to try, largest first")
    parser.add_argument("--dpo-config", default="llava-7b", help="config of the Group-DPO step (LoRA: fits where a full fine-tune does not)")
    parser.add_argument("--dpo-pairs", type=int, default=4, help="preference pairs per DPO step")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write the JSON result here too")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.configs, args.batch_sizes, args.dpo_config, args.dpo_pairs, args.warmup, args.steps = "tiny", "2", "tiny", 2, 1, 2
    args.configs = args.configs.split(",")
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    return args


@dataclass
class Row:
    name: str
    config: str
    batch: int
    seconds_per_step: float
    tokens_per_second: float | None = None
    mfu: float | None = None
    params: int = 0


def peak_flops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in ("H100 PCIe", "H100", "H200", "A100"):
        if key in name:
            return PEAK_BF16[key]
    return None


def build_llava(name: str, device, dtype):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text, vision = CONFIGS[name]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision, projection_dim=vision["hidden_size"]),
        text_config=LlamaConfig(vocab_size=VOCAB, max_position_embeddings=4096, tie_word_embeddings=False, **text),
        image_token_id=IMAGE_TOKEN, image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-2,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config)
    if device.type != "meta":
        model.to(dtype)
    model.model.vision_tower.requires_grad_(False)  # as the gmllm job does for a pretrained tower
    return model


def full_finetune_bytes(name: str) -> int:
    """fp32 weights, grads and two AdamW moments of the trained part (all but the vision tower),
    fp32 weights of the frozen tower; counted on the meta device, so nothing is allocated."""
    import torch

    model = build_llava(name, torch.device("meta"), torch.float32)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return 16 * trained + 4 * frozen


def image_tokens(model) -> int:
    vision = model.config.vision_config
    return (vision.image_size // vision.patch_size) ** 2


def synthetic(model, batch: int, device, group_tokens: bool):
    """(Batch of gmodel.batching, or plain input_ids/labels) with the same text, image and answer shapes."""
    import numpy as np
    import torch

    from osmf_jobs.gmodel.batching import assemble

    g = torch.Generator().manual_seed(1)
    n_image = image_tokens(model)
    prompts = [[1] + [IMAGE_TOKEN] * n_image + torch.randint(3, 32000, (PROMPT_TEXT,), generator=g).tolist() for _ in range(batch)]
    answers = [torch.randint(3, 32000, (ANSWER - 1,), generator=g).tolist() + [2] for _ in range(batch)]
    size = model.config.vision_config.image_size
    vision = {"pixel_values": torch.randn(batch, 3, size, size, generator=g)}
    if group_tokens:
        reps = [np.random.default_rng(i).normal(size=(GROUP_VECTORS, GROUP_DIM)).astype(np.float32) for i in range(batch)]
        return assemble(prompts, reps, vision, 0, GROUP_TOKENS, answers).to(device)
    ids = torch.tensor([p + a for p, a in zip(prompts, answers)], device=device)
    labels = torch.full_like(ids, -100)
    labels[:, -ANSWER:] = ids[:, -ANSWER:]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": vision["pixel_values"].to(device), "labels": labels}


def train_flops(model, batch: int, seq: int, trained_vision: bool = False) -> float:
    """Model FLOPs of one optimiser step: 6·N per token for trained parts, 2·N for frozen forward-only
    parts, 12·L·d·T per token of attention (forward + backward)."""
    lm = model.model.language_model
    n_lm = sum(p.numel() for n, p in lm.named_parameters() if "embed_tokens" not in n) + model.lm_head.weight.numel() * ANSWER / seq
    n_vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    n_proj = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    patches = image_tokens(model) + 1
    text = model.config.text_config
    attention = 12 * text.num_hidden_layers * text.hidden_size * seq
    return batch * (seq * (6 * n_lm + attention) + patches * ((6 if trained_vision else 2) * n_vision + 6 * n_proj))


def cleanup(*objects) -> None:
    import torch

    del objects
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_pretrain(name: str, batch: int, args, device, precision: str) -> tuple[Row, Row]:
    import torch

    from osmf_jobs.gmodel.batching import answer_logprobs
    from osmf_jobs.gmodel.model import GroupMLLM
    from osmf_jobs.gmodel.training.device import Device
    from osmf_jobs.gmodel.training.fit import FitSettings, fit

    dev = Device(device, precision)
    peak = peak_flops(device)
    total = args.warmup + args.steps
    # osmf: the gmllm job's step (fit + GroupMLLM + answer log-probs).
    model = GroupMLLM(build_llava(name, device, torch.float32), GROUP_DIM, GROUP_VECTORS, GROUP_TOKENS).to(device)
    data = synthetic(model.mllm, batch, device, group_tokens=True)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_fn(_indices):
        logits = model(**data.model_inputs(), logits_to_keep=data.answer_len + 1)
        logprob, count = answer_logprobs(logits, data)
        return -logprob.sum() / count.sum(), {}

    stamps: list[float] = []

    def on_step(step, *_):
        sync(device)
        stamps.append(time.perf_counter())

    settings = FitSettings(epochs=total, learning_rate=2e-6, batch_size=batch, scheduler="cosine", warmup_ratio=0.03)
    fit(params, loss_fn, batch, settings, dev, on_step=on_step)
    seconds = (stamps[-1] - stamps[args.warmup - 1]) / args.steps
    seq = data.input_ids.shape[1]
    n_params = sum(p.numel() for p in model.parameters())
    flops = train_flops(model.mllm, batch, seq)
    ours = Row("pretrain step, osmf (gmllm)", name, batch, seconds, batch * seq / seconds, flops / seconds / peak if peak else None, n_params)
    cleanup(model, data, params)

    # baseline: plain PyTorch on the HF model, no group tokens.
    model = build_llava(name, device, torch.float32)
    inputs = synthetic(model, batch, device, group_tokens=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-6, weight_decay=0.0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else torch.autocast(device.type, enabled=False)
    stamps = []
    for _ in range(total):
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        stamps.append(time.perf_counter())
    seconds = (stamps[-1] - stamps[args.warmup - 1]) / args.steps
    seq = inputs["input_ids"].shape[1]
    flops = train_flops(model, batch, seq)
    base = Row("pretrain step, plain PyTorch", name, batch, seconds, batch * seq / seconds, flops / seconds / peak if peak else None, n_params)
    cleanup(model, inputs, params, optimizer)
    return ours, base


def bench_dpo(name: str, pairs: int, args, device, precision: str) -> tuple[Row, Row]:
    import torch
    from peft import LoraConfig, get_peft_model

    from osmf_jobs.gmodel.batching import answer_logprobs
    from osmf_jobs.gmodel.model import GroupMLLM
    from osmf_jobs.groupdpo.loss import dpo_loss
    from osmf_jobs.groupdpo.main import lora_target_pattern

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else torch.autocast(device.type, enabled=False)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=lora_target_pattern(["q_proj", "v_proj"]))
    total = args.warmup + args.steps

    def timed(step) -> float:
        stamps = []
        for _ in range(total):
            step()
            sync(device)
            stamps.append(time.perf_counter())
        return (stamps[-1] - stamps[args.warmup - 1]) / args.steps

    # osmf: group-conditioned summed log-probs (LM head on the answer tail), reference = adapter off.
    model = GroupMLLM(build_llava(name, device, dtype), GROUP_DIM, GROUP_VECTORS, GROUP_TOKENS).to(device=device, dtype=dtype)
    model.requires_grad_(False)
    peft_model = get_peft_model(model.mllm, lora)
    data = synthetic(model.mllm, 2 * pairs, device, group_tokens=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)

    def logprobs():
        return answer_logprobs(model(**data.model_inputs(), logits_to_keep=data.answer_len + 1), data)[0]

    def ours_step():
        with torch.no_grad(), peft_model.disable_adapter(), autocast:
            reference = logprobs()
        with autocast:
            policy = logprobs()
            loss, _ = dpo_loss(policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:], 0.5)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    n_params = sum(p.numel() for p in model.parameters())
    ours = Row(f"Group-DPO step, osmf ({pairs} pairs)", name, pairs, timed(ours_step), params=n_params)
    cleanup(model, peft_model, data, params, optimizer)

    # baseline: the same LoRA DPO step on plain input_ids with full-sequence logits.
    model = build_llava(name, device, dtype)
    model.requires_grad_(False)
    peft_model = get_peft_model(model, lora)
    inputs = synthetic(model, 2 * pairs, device, group_tokens=False)
    labels = inputs.pop("labels")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)

    def plain_logprobs():
        logits = model(**inputs).logits[:, :-1].float()
        targets = labels[:, 1:]
        mask = targets != -100
        picked = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * mask).sum(-1)

    def base_step():
        with torch.no_grad(), peft_model.disable_adapter(), autocast:
            reference = plain_logprobs()
        with autocast:
            policy = plain_logprobs()
            loss, _ = dpo_loss(policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:], 0.5)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    base = Row(f"Group-DPO step, plain PyTorch ({pairs} pairs)", name, pairs, timed(base_step), params=n_params)
    cleanup(model, peft_model, inputs, params, optimizer)
    return ours, base


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from osmf_jobs.gmodel.training.device import quiet_transformers

    quiet_transformers()
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    precision = "bf16" if device.type == "cuda" else "fp32"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows: list[Row] = []
    notes: list[str] = []
    started = time.perf_counter()
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    done = False
    for name in args.configs:
        need = full_finetune_bytes(name)
        if memory is not None and need > 0.9 * memory:
            notes.append(f"pretrain {name}: skipped, weights + grads + AdamW need {need / 2**30:.0f} GiB of {memory / 2**30:.0f}")
            continue
        for batch in args.batch_sizes:
            try:
                rows += bench_pretrain(name, batch, args, device, precision)
                done = True
            except torch.cuda.OutOfMemoryError:
                notes.append(f"pretrain {name} batch {batch}: out of memory")
            cleanup()  # outside the except block: its traceback would keep the tensors alive
            if done:
                break
        if done:
            break
    try:
        rows += bench_dpo(args.dpo_config, args.dpo_pairs, args, device, precision)
    except torch.cuda.OutOfMemoryError:
        notes.append(f"dpo {args.dpo_config} {args.dpo_pairs} pairs: out of memory")
    cleanup()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device_name}, precision {precision}, peak {peak_flops(device) or 'n/a'} FLOP/s")
    print(f"{'row':<40} {'config':<9} {'batch':>5} {'s/step':>9} {'tokens/s':>11} {'MFU':>7}")
    for row in rows:
        tokens = f"{row.tokens_per_second:,.0f}" if row.tokens_per_second else "-"
        mfu = f"{100 * row.mfu:.1f}%" if row.mfu is not None else "n/a"
        print(f"{row.name:<40} {row.config:<9} {row.batch:>5} {row.seconds_per_step:>9.4f} {tokens:>11} {mfu:>7}")
    ratios = {}
    for prefix in ("pretrain step", "Group-DPO step"):
        pair = [r for r in rows if r.name.startswith(prefix)]
        if len(pair) == 2:
            ratios[prefix] = round(pair[1].seconds_per_step / pair[0].seconds_per_step, 3)
            print(f"{prefix}: osmf speed / plain PyTorch = {ratios[prefix]:.3f}")
    for note in notes:
        print(f"note: {note}")
    result = {"device": device_name, "precision": precision, "rows": [asdict(r) for r in rows], "speed_ratio": ratios,
              "notes": notes, "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
