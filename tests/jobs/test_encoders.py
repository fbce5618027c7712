"""The PAAG encoders load the production model families by directory: a full CLIP model (the h100
example's `clip-vit-large-patch14`) encodes titles through its text tower and images through its
vision tower; a ResNet directory encodes images. Tiny random models of the same classes, saved with
`save_pretrained` (sharded safetensors), stand in for the real weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from osmf_jobs.paag.encoders import MAX_TITLE_TOKENS, ImageEncoder, TextEncoder
from osmf_jobs.runtime import InvalidInput


def save_tiny_clip(path: Path) -> Path:
    """A CLIPModel (text + vision towers, projection) and its tokenizer, as clip-vit-large-patch14 ships."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from osmf_jobs.render.models import char_tokenizer

    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "vocab_size": 1000, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path, max_shard_size="40KB")
    char_tokenizer().save_pretrained(path)
    return path


def save_tiny_resnet(path: Path) -> Path:
    """A ResNetModel with bottleneck blocks (resnet-50's block type), depth and width reduced."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=16, hidden_sizes=[32, 64], depths=[1, 1], layer_type="bottleneck")
    ResNetModel(config).save_pretrained(path, max_shard_size="40KB")
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "clip-vit-large-patch14")


def test_a_full_clip_directory_encodes_titles_through_its_text_tower(clip_dir: Path) -> None:
    assert len(list(clip_dir.glob("model-*.safetensors"))) > 1  # sharded, as the real checkpoint is
    encoder = TextEncoder(str(clip_dir))
    assert type(encoder.model).__name__.startswith("CLIPText")  # the tower, not the whole CLIPModel
    tokens, mask = encoder.encode(["red ceramic mug", "blue running shoe with a long name that is cut"])
    assert tokens.dtype == np.float32 and tokens.shape[0] == 2 and tokens.shape[2] == 32
    assert tokens.shape[1] <= MAX_TITLE_TOKENS + 1 and mask[:, 0].all() and np.isfinite(tokens).all()
    assert not np.allclose(tokens[0, 0], tokens[1, 0])  # different titles, different features


def test_a_full_clip_directory_encodes_images_through_its_vision_tower(clip_dir: Path) -> None:
    encoder = ImageEncoder(clip_dir.as_uri())
    images = [Image.new("RGB", (40, 40), (200, 30, 30)), Image.new("RGBA", (40, 40), (10, 10, 240, 255))]
    stats, tokens = encoder.encode(images)
    assert stats.shape[0] == 2 and tokens.shape == (2, 4, 32) and np.isfinite(stats).all()


def test_a_resnet_directory_encodes_images(tmp_path: Path) -> None:
    encoder = ImageEncoder(str(save_tiny_resnet(tmp_path / "resnet-50")))
    stats, tokens = encoder.encode([Image.new("RGB", (50, 30), (0, 128, 0))])
    assert stats.shape[0] == 1 and tokens.shape == (1, 4, 64)


def test_a_copied_model_shares_its_frozen_image_encoder(tmp_path: Path) -> None:
    """FSDP keeps a meta-device deep copy of the GRM, whose interaction holds an image encoder."""
    import copy

    import torch

    holder = torch.nn.Module()
    holder.stats_encoder = ImageEncoder(str(save_tiny_resnet(tmp_path / "resnet")))
    assert copy.deepcopy(holder).stats_encoder is holder.stats_encoder


def test_a_directory_without_a_model_is_invalid_input_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"^spec.model.textEncoder: .* has no config.json"):
        TextEncoder(str(tmp_path))


def test_image_statistics_are_computed_once_per_picture_and_equal_a_fresh_computation() -> None:
    from osmf_jobs.paag.encoders import BUILTIN_IMAGE_STATS, image_statistics

    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)
    tall = np.ascontiguousarray(wide.reshape(96, 48, 3))  # the same bytes in another shape
    encoder = ImageEncoder(BUILTIN_IMAGE_STATS)
    first, _ = encoder.encode([Image.fromarray(wide), Image.fromarray(tall), Image.fromarray(wide)])
    assert len(encoder._cache) == 2
    np.testing.assert_array_equal(first[0], image_statistics(wide)[0])
    np.testing.assert_array_equal(first[1], image_statistics(tall)[0])
    np.testing.assert_array_equal(first[2], first[0])
    first[0][:] = 0  # a caller's array is its own: the cache keeps the computed values
    again, _ = encoder.encode([Image.fromarray(wide)])
    np.testing.assert_array_equal(again[0], image_statistics(wide)[0])


def test_the_statistics_cache_is_bounded_and_the_encoder_copies() -> None:
    import copy

    from osmf_jobs.paag.encoders import BUILTIN_IMAGE_STATS

    encoder = ImageEncoder(BUILTIN_IMAGE_STATS)
    encoder.CACHE_ENTRIES = 2
    pictures = [Image.fromarray(np.full((32, 32, 3), value, np.uint8)) for value in (10, 20, 30)]
    encoder.encode(pictures)
    assert 1 <= len(encoder._cache) <= 2
    copied = copy.deepcopy(encoder)  # FSDP's meta copy of a GRM deep-copies its encoder
    np.testing.assert_array_equal(copied.encode(pictures)[0], encoder.encode(pictures)[0])
