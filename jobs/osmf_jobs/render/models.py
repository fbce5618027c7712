"""Loading the diffusion models by URI, and the built-in tiny random ones used by tests and the demo.

A model URI is a local path, `file://…`, `s3://…` (downloaded once per node into the model cache,
`osmf_jobs.model_dirs`) or `builtin:tiny-sd` / `builtin:tiny-controlnet`: tiny random models built
from configs with a fixed seed, saved with `save_pretrained` into the same cache and loaded back by
path, so tests run the same loading code as production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from osmf_jobs.model_dirs import cached_dir, model_dir
from osmf_jobs.runtime import InvalidInput

TINY_SD = "builtin:tiny-sd"
TINY_CONTROLNET = "builtin:tiny-controlnet"
BUILTIN_SEED = 0
PIPELINE_MARKER = "model_index.json"  # a diffusers pipeline directory
MODEL_MARKER = "config.json"  # a single diffusers model directory (the ControlNet)


def char_tokenizer(model_max_length: int = 77):
    """A CLIP tokenizer over single byte-level characters (no merges), built in memory.

    Random text encoders need no real vocabulary; every distinct prompt still maps to distinct ids.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = sorted(ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


# Architectures built from configs. "sd15": Stable Diffusion 1.5 (UNet 860M, VAE 84M, CLIP ViT-L/14
# text encoder 123M) and the canny ControlNet (361M) at their published sizes; "tiny": the same
# structure scaled down for CPU tests (a 2-block VAE halves the image, so its ControlNet's
# conditioning embedding downsamples once).
ARCHITECTURES: dict[str, dict] = {
    "tiny": {
        "unet": dict(block_out_channels=(32, 64), layers_per_block=2, sample_size=32,
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                     cross_attention_dim=32, attention_head_dim=4),
        "vae": dict(block_out_channels=(32, 64), latent_channels=4,
                    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2),
        "text_encoder": dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                             vocab_size=1000),
        "conditioning_embedding_out_channels": (16, 32),
    },
    "sd15": {
        "unet": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, sample_size=64,
                     down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                     up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                     cross_attention_dim=768, attention_head_dim=8),
        "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
                    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4),
        "text_encoder": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                             vocab_size=49408, hidden_act="quick_gelu", projection_dim=768),
        "conditioning_embedding_out_channels": (16, 32, 96, 256),
    },
}


def random_components(arch: str, *, inpainting_unet: bool, seed: int = BUILTIN_SEED,
                      device: str | torch.device = "cpu") -> dict:
    """Randomly initialised pipeline components (unet, vae, text_encoder, tokenizer, scheduler,
    controlnet); the models are created on `device` directly (no CPU init of large weights).

    inpainting_unet=False: a 4-channel UNet and `ControlNetModel.from_unet` (the inpaint pipeline
    keeps the unmasked latents itself). True: the 9-channel inpainting UNet of SD1.5-inpainting
    (latents + mask + masked-image latents) and a 4-channel ControlNet, as real checkpoints pair them.
    """
    from diffusers import AutoencoderKL, ControlNetModel, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = ARCHITECTURES[arch]
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(in_channels=9 if inpainting_unet else 4, out_channels=4, **cfg["unet"])
        vae = AutoencoderKL(in_channels=3, out_channels=3, **cfg["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(
            bos_token_id=0, eos_token_id=1, pad_token_id=1, max_position_embeddings=77, **cfg["text_encoder"],
        ))
        cond = cfg["conditioning_embedding_out_channels"]
        if inpainting_unet:
            unet_cfg = {k: v for k, v in cfg["unet"].items() if k not in ("sample_size", "up_block_types")}
            controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=cond, **unet_cfg)
        else:
            controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond)
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": char_tokenizer(),
            "scheduler": scheduler, "controlnet": controlnet}


def _build_tiny(name: str, dest: Path) -> None:
    from diffusers import StableDiffusionInpaintPipeline

    components = random_components("tiny", inpainting_unet=False)
    controlnet = components.pop("controlnet")
    if name == TINY_CONTROLNET:
        controlnet.save_pretrained(dest)
        return
    StableDiffusionInpaintPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(dest)


def builtin_dir(uri: str) -> Path:
    """The saved built-in model `uri`, built once per node into the model cache."""
    import diffusers

    # The diffusers version is in the key: random init of the same config may change between releases.
    name = f"{uri.removeprefix('builtin:')}-seed{BUILTIN_SEED}-diffusers{diffusers.__version__}"
    return cached_dir(f"builtin/{name}", lambda dest: _build_tiny(uri, dest))


def diffusers_dir(uri: str, field: str, marker: str, builtin: str) -> Path:
    """A local directory holding the model named by `uri` (`builtin` is the one built-in it may name)."""
    if uri.startswith("builtin:"):
        if uri != builtin:
            raise InvalidInput(f"rendering.{field}: unknown built-in model {uri!r}; use {builtin!r} or a model URI")
        return builtin_dir(uri)
    return model_dir(uri, f"rendering.{field}", marker, "point it at a diffusers model directory")


def load_pipeline(model_uri: str, controlnet_uri: str, *, device: torch.device, dtype: torch.dtype):
    """StableDiffusionControlNetInpaintPipeline from the two URIs, on `device` in `dtype`."""
    from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline

    if controlnet_uri == TINY_CONTROLNET and model_uri != TINY_SD:
        raise InvalidInput(f"rendering.controlnetUri: {TINY_CONTROLNET} only fits modelUri {TINY_SD}")
    sd_dir = diffusers_dir(model_uri, "modelUri", PIPELINE_MARKER, TINY_SD)
    cn_dir = diffusers_dir(controlnet_uri, "controlnetUri", MODEL_MARKER, TINY_CONTROLNET)
    controlnet = _load("controlnetUri", controlnet_uri, lambda: ControlNetModel.from_pretrained(cn_dir, dtype=dtype))
    pipe = _load("modelUri", model_uri, lambda: StableDiffusionControlNetInpaintPipeline.from_pretrained(
        sd_dir, controlnet=controlnet, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, dtype=dtype,
    ))
    unet_dim, cn_dim = pipe.unet.config.cross_attention_dim, controlnet.config.cross_attention_dim
    if unet_dim != cn_dim:
        raise InvalidInput(
            f"rendering.controlnetUri: {controlnet_uri} expects text features of width {cn_dim} "
            f"but {model_uri} has {unet_dim}; use a ControlNet trained for that base model"
        )
    if controlnet.config.in_channels != pipe.vae.config.latent_channels:
        raise InvalidInput(
            f"rendering.controlnetUri: {controlnet_uri} takes {controlnet.config.in_channels} latent channels "
            f"but the VAE of {model_uri} makes {pipe.vae.config.latent_channels}"
        )
    return pipe.to(device)


def _load(field: str, uri: str, load: Callable):
    try:
        return load()
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - any loader failure means the directory is not a usable model
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidInput(f"rendering.{field}: cannot load {uri}: {detail}") from None
