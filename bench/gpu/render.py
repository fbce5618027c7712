"""PCIG rendering throughput: SD1.5 inpainting + canny ControlNet at 512x512, 30 steps, one GPU.

    python bench/gpu/render.py               # one H100, random weights at real sizes, about 2-4 minutes
    python bench/gpu/render.py --dry-run     # tiny config on CPU in seconds (tests run this)

Weights are random, built from the published configs (UNet 860M, ControlNet 361M, VAE 84M, CLIP
ViT-L/14 text encoder 123M): throughput does not depend on their values, and nothing is downloaded.

Per batch size, two rows are measured in the same run on the same inputs:
- baseline: plain diffusers, the pipeline called as it comes (fp16 on the GPU, the batch's prompts
  in one call, its default settings), timing only the pipeline call;
- osmf: the renderer (bf16, channels_last, SDPA, batched), timed end to end: product composition,
  canny control, masks, sampling, decoding and the exact paste-back.
It prints a table and one JSON line (also written to --out), and checks that the renderer kept
the product's pixels at every batch size. The CPU dry run runs both in fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for folder in ("jobs", "core", "operator"):  # runnable from a bare checkout (the GPU machine has no install)
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny config on CPU (64 px, 2 steps, batches 1,2)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-sizes", default="1,4,8,16", help="comma-separated sweep, ascending")
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16", help="the renderer's dtype on GPU")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet and ControlNet (recompiles per batch size; minutes)")
    parser.add_argument("--fuse-qkv", action="store_true", help="fuse the attention QKV projections (UNet, VAE)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time each row for at least this long")
    parser.add_argument("--budget-s", type=float, default=200.0, help="skip batch sizes that would pass this")
    parser.add_argument("--out", type=Path, help="write the JSON result here too")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.size, args.steps, args.batch_sizes, args.min_seconds = 64, 2, "1,2", 0.0
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    return args


def timed(fn, images_per_call: int, min_seconds: float, sync) -> tuple[float, int]:
    """(images/s, calls) over at least two calls and min_seconds, after one warm-up call."""
    fn()
    sync()
    start, calls = time.perf_counter(), 0
    while calls < 2 or time.perf_counter() - start < min_seconds:
        fn()
        sync()
        calls += 1
    return images_per_call * calls / (time.perf_counter() - start), calls


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import numpy as np
    import torch
    from diffusers import StableDiffusionControlNetInpaintPipeline
    from diffusers.utils import logging as diffusers_logging
    from PIL import Image

    from osmf_jobs import style
    from osmf_jobs.render.inpaint import CONTROLNET_CONDITIONING_SCALE, DiffusersRenderer
    from osmf_jobs.render.models import random_components
    from osmf_jobs.render.product import canny_control, inpaint_mask, product_cutout
    from osmf_core.api import RenderingSpec

    diffusers_logging.set_verbosity_error()  # casting random fp32 weights warns about nothing useful
    began = time.perf_counter()
    if args.dry_run:
        device, arch, dtype = torch.device("cpu"), "tiny", torch.float32
    elif torch.cuda.is_available():
        device, arch = torch.device("cuda"), "sd15"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    else:
        sys.exit("no CUDA device; use --dry-run for the CPU check")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)  # noqa: E731
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"

    spec = RenderingSpec(backend="diffusers", size=args.size, steps=args.steps, model_uri="builtin:bench",
                         controlnet_uri="builtin:bench")
    rng = np.random.default_rng(0)
    rgba = np.zeros((440, 300, 4), np.uint8)  # a textured box, larger than 0.78 of 512 so it is scaled
    rgba[..., :3] = rng.integers(0, 256, rgba.shape[:2] + (3,))
    rgba[20:420, 20:280, 3] = 255
    product = Image.fromarray(rgba, "RGBA")
    prompts = [style.caption(style.Style.from_index(i * 7)) for i in range(max(args.batch_sizes))]

    components = random_components(arch, inpainting_unet=True, device=device)
    pipe = StableDiffusionControlNetInpaintPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    built_s = time.perf_counter() - began

    # Baseline: plain diffusers as it comes, in fp16 (bf16 for the renderer), a copy of the same weights.
    import copy

    baseline_dtype = torch.float16 if device.type == "cuda" else torch.float32
    plain = copy.deepcopy(pipe).to(dtype=baseline_dtype)
    cutout = product_cutout(product)
    foreground, mask = style.compose(cutout, np.zeros((args.size, args.size, 3), np.uint8), spec.product_scale)
    inputs = dict(
        image=Image.fromarray(foreground), mask_image=Image.fromarray(inpaint_mask(mask, spec.mask_dilation)),
        control_image=Image.fromarray(canny_control(foreground, mask, spec.canny_low, spec.canny_high)),
        height=args.size, width=args.size, num_inference_steps=args.steps, guidance_scale=spec.guidance_scale,
    )

    def baseline(batch: int) -> float:
        generators = [torch.Generator("cpu").manual_seed(i) for i in range(batch)]
        return timed(lambda: plain(prompt=prompts[:batch], generator=generators, **{
            k: [v] * batch if k in ("image", "mask_image", "control_image") else v for k, v in inputs.items()}),
            batch, args.min_seconds, sync)[0]

    # OSMF renderer: the original pipeline, converted once.
    pipe.to(dtype=dtype)
    opaque = None
    rows: list[dict] = []
    for batch in args.batch_sizes:
        elapsed = time.perf_counter() - began
        # A doubled batch takes about twice the last row's time (warm-up plus the timed calls).
        if rows and elapsed + 2 * rows[-1]["row_s"] > args.budget_s:
            rows.append({"batch": batch, "skipped": f"time budget {args.budget_s:.0f}s"})
            continue
        renderer = DiffusersRenderer(spec, pipe, batch_size=batch)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        row_start = time.perf_counter()
        images: list = []
        try:
            baseline_ips = baseline(batch)
            ips, calls = timed(lambda: images.__setitem__(slice(None), renderer.render_batch(
                product, prompts[:batch], seeds=list(range(batch)))), batch, args.min_seconds, sync)
        except torch.cuda.OutOfMemoryError:
            rows.append({"batch": batch, "skipped": "out of memory"})
            break
        if opaque is None:
            white, _ = style.compose(cutout, np.full_like(foreground, 255), spec.product_scale)
            opaque = (foreground == white).all(axis=-1)
        kept = all((np.asarray(image)[opaque] == foreground[opaque]).all() for image in images)
        rows.append({
            "batch": batch, "images_per_s": ips, "s_per_image": 1 / ips, "calls": calls, "product_kept": kept,
            "baseline_images_per_s": baseline_ips, "speedup": ips / baseline_ips,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            "row_s": time.perf_counter() - row_start,
        })

    measured = [r for r in rows if "images_per_s" in r]
    best = max(measured, key=lambda r: r["images_per_s"])
    result = {
        "bench": "render", "device": device_name, "arch": arch, "size": args.size, "steps": args.steps,
        "guidance_scale": spec.guidance_scale, "scheduler": "euler_ancestral",
        "controlnet_conditioning_scale": CONTROLNET_CONDITIONING_SCALE,
        "osmf_dtype": str(dtype).removeprefix("torch."), "compile": args.compile, "fuse_qkv": args.fuse_qkv,
        "baseline_dtype": str(baseline_dtype).removeprefix("torch."), "osmf": rows, "best_batch": best["batch"],
        "best_images_per_s": best["images_per_s"], "speedup": best["speedup"],
        "product_kept": all(r["product_kept"] for r in measured),
        "build_s": built_s, "wall_s": time.perf_counter() - began,
    }
    print(f"PCIG rendering on {device_name}: {arch}, {args.size}x{args.size}, {args.steps} steps, CFG "
          f"{spec.guidance_scale}, Euler ancestral (models built in {built_s:.1f}s)")
    print(f"{'batch':>6}{'plain diffusers img/s':>24}{'osmf renderer img/s':>22}{'ratio':>8}{'peak GiB':>10}")
    for row in rows:
        if "skipped" in row:
            print(f"{row['batch']:>6}  skipped: {row['skipped']}")
            continue
        peak = f"{row['peak_gib']:.1f}" if row["peak_gib"] is not None else "-"
        print(f"{row['batch']:>6}{row['baseline_images_per_s']:>24.3f}{row['images_per_s']:>22.3f}{row['speedup']:>8.2f}{peak:>10}")
    print(f"best: batch {best['batch']}, {best['images_per_s']:.3f} images/s = {result['speedup']:.2f}x plain diffusers "
          f"({result['baseline_dtype']}) at that batch; product pixels kept: {result['product_kept']}; wall {result['wall_s']:.0f}s")
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
