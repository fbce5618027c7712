"""Random-weight stand-ins for the models examples/h100-pipeline names, one per URI: the same
architecture family, classes and loading code path as the real checkpoint, with depth and width
reduced, saved in Hugging Face / diffusers format as *sharded* safetensors.

| example URI (s3://osmf-models/…) | real model | stand-in |
|---|---|---|
| llava-v1.6-vicuna-7b | LlavaNextForConditionalGeneration (CLIP ViT-L/14-336 + Vicuna-7B) | LlavaNext: CLIP vision 2 layers, Llama 2 layers × 256, anyres grid, `vision_feature_layer=-2` |
| clip-vit-large-patch14 | CLIPModel (text + vision towers) + CLIPTokenizer | CLIPModel, 2 layers × 32 each |
| resnet-50 | ResNetModel, bottleneck blocks | ResNetModel, bottleneck, 2 stages |
| sd15-inpainting | StableDiffusionInpaintPipeline, 9-channel UNet | the same pipeline class at `render.models`' tiny sizes |
| controlnet-canny-sd15 | ControlNetModel, 4 latent channels | ControlNetModel at the tiny sizes |
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

SHARD = "200KB"  # small enough that every stand-in is several safetensors files, as the real ones are
IMAGE_SIZE, PATCH = 32, 8


def llava_next(path: Path, words: list[str]) -> None:
    import torch
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration,
                              LlavaNextImageProcessorPil, LlavaNextProcessor)

    from osmf_jobs.gmodel.tokenizer import build_word_tokenizer

    tokenizer = build_word_tokenizer(words, model_max_length=2048)
    grid = [[IMAGE_SIZE, 2 * IMAGE_SIZE], [2 * IMAGE_SIZE, IMAGE_SIZE], [2 * IMAGE_SIZE, 2 * IMAGE_SIZE]]
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False),
        image_token_id=tokenizer.image_token_id, vision_feature_select_strategy="default", vision_feature_layer=-2,
        image_grid_pinpoints=grid,
    )
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config)
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    model.to(torch.bfloat16).save_pretrained(path, max_shard_size=SHARD)  # bf16 on disk, as published
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, image_grid_pinpoints=grid,
                                                 crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                       vision_feature_select_strategy="default", num_additional_image_tokens=1).save_pretrained(path)


def clip(path: Path, words: list[str]) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel

    from osmf_jobs.render.models import char_tokenizer

    layers = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(text_config=layers | {"vocab_size": 1000, "max_position_embeddings": 77, "bos_token_id": 0,
                                              "eos_token_id": 1, "pad_token_id": 1},
                        vision_config=layers | {"image_size": IMAGE_SIZE, "patch_size": PATCH}, projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path, max_shard_size="40KB")
    char_tokenizer().save_pretrained(path)


def resnet(path: Path, words: list[str]) -> None:
    import torch
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=16, hidden_sizes=[32, 64], depths=[1, 1], layer_type="bottleneck")
    ResNetModel(config).save_pretrained(path, max_shard_size="40KB")


def sd15_inpainting(path: Path, words: list[str]) -> None:
    from diffusers import StableDiffusionInpaintPipeline

    from osmf_jobs.render.models import random_components

    components = random_components("tiny", inpainting_unet=True)
    components.pop("controlnet")
    StableDiffusionInpaintPipeline(**components, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False).save_pretrained(path, max_shard_size=SHARD)


def controlnet(path: Path, words: list[str]) -> None:
    from osmf_jobs.render.models import random_components

    random_components("tiny", inpainting_unet=True)["controlnet"].save_pretrained(path, max_shard_size=SHARD)


STANDINS: dict[str, Callable[[Path, list[str]], None]] = {
    "llava-v1.6-vicuna-7b": llava_next,
    "clip-vit-large-patch14": clip,
    "resnet-50": resnet,
    "sd15-inpainting": sd15_inpainting,
    "controlnet-canny-sd15": controlnet,
}
