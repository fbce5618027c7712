"""Attribute vocabularies and the exported model directory (`osmf_core.layout.Grouping`: config + weights)."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from osmf_core.layout import Grouping

FORMAT = "osmf-paag/1"


def attribute_vocab(users: Any, attributes: list[str]) -> dict[str, list[str]]:
    """Per attribute, its values as strings in sorted order; index i + 1 in the model (0 = unknown)."""
    return {a: sorted(users[a].astype(str).unique().tolist()) for a in attributes}


def encode_attributes(users: Any, attributes: list[str], vocab: dict[str, list[str]]) -> np.ndarray:
    cols = []
    for a in attributes:
        index = {v: i + 1 for i, v in enumerate(vocab[a])}
        cols.append(users[a].astype(str).map(index).fillna(0).to_numpy().astype(np.int64))
    return np.stack(cols, axis=1)


def write_model(store: Any, model: Any, features: Any, vocab: dict[str, list[str]], attributes: list[str],
                product_ids: list[str], creative_ids: list[str], creative_products: list[str], spec: Any,
                categories: list[str] | None = None) -> None:
    from .model import HEADS, export_arrays

    arrays = export_arrays(model, features.title_tokens, features.title_mask, features.image_tokens,
                           features.creative_stats, model.creative_mean.astype(np.float32), model.creative_std.astype(np.float32),
                           features.categories())
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    store.write_bytes(Grouping.MODEL_WEIGHTS, buffer.getvalue())
    config = {
        "format": FORMAT,
        "embedding_dim": int(model.d),
        "heads": HEADS,
        "attributes": attributes,
        "vocab": vocab,
        "products": product_ids,
        "creatives": creative_ids,
        "creative_products": creative_products,
        "categories": list(categories or []),
        "text_encoder": spec.model.text_encoder,
        "image_encoder": spec.model.image_encoder,
    }
    store.write_bytes(Grouping.MODEL_CONFIG, json.dumps(config, indent=1).encode())


def recorded_attributes(grouping: Any) -> list[str]:
    """The user attributes a grouping run was allowed to read (its spec.userAttributes), as its
    exported model recorded them; [] when it recorded none."""
    try:
        config = grouping.read_json(Grouping.MODEL_CONFIG)
    except (FileNotFoundError, ValueError):
        return []
    value = config.get("attributes") if isinstance(config, dict) else None
    return [str(a) for a in value] if isinstance(value, list) else []
