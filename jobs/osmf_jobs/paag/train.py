"""Training the preference model on impressions (BCE), and the held-out AUROC.

Impressions are reduced to exact sufficient statistics before training: the model sees a user only
through the allowed attributes, so impressions with the same (attribute tuple, product, creative)
have the same prediction and their BCE terms add up to `clicks * -log p + (n - clicks) * -log(1-p)`.
Training on these cells is the same objective as training on every impression, at a fraction of
the cost when many users share attribute values. Batches are made of whole (tuple, product) pairs,
so each preference embedding in a batch is computed once and scored against all its creatives.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from osmf_jobs import metrics as M

from .model import PreferenceModel


@dataclasses.dataclass
class Features:
    title_tokens: np.ndarray  # [P, T, Dt] float32
    title_mask: np.ndarray  # [P, T] bool
    image_tokens: np.ndarray  # [P, G, Di] float32
    creative_stats: np.ndarray  # [C, F] float32
    product_category: np.ndarray | None = None  # [P] int, 1-based category index (0 = none)

    def categories(self) -> np.ndarray:
        return np.zeros(len(self.title_tokens), np.int64) if self.product_category is None else self.product_category


@dataclasses.dataclass
class Impressions:
    tuple_index: np.ndarray  # [N] index into the attribute tuples
    product: np.ndarray  # [N]
    creative: np.ndarray  # [N]
    clicked: np.ndarray  # [N] 0/1


def unique_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique rows [T, A], inverse [N])."""
    rows, inverse = np.unique(matrix, axis=0, return_inverse=True)
    return rows, inverse.reshape(-1)


def _cells(imp: Impressions, n_products: int, n_creatives: int) -> dict[str, np.ndarray]:
    key = (imp.tuple_index.astype(np.int64) * n_products + imp.product) * n_creatives + imp.creative
    uniq, inverse = np.unique(key, return_inverse=True)
    n = np.bincount(inverse, minlength=len(uniq)).astype(np.float32)
    k = np.bincount(inverse, weights=imp.clicked, minlength=len(uniq)).astype(np.float32)
    creative = uniq % n_creatives
    pair_key = uniq // n_creatives
    pairs, pair_inverse = np.unique(pair_key, return_inverse=True)
    return {
        "n": n, "k": k, "creative": creative, "pair": pair_inverse.reshape(-1),
        "pair_tuple": pairs // n_products, "pair_product": pairs % n_products, "inverse": inverse.reshape(-1),
    }


def _batches(cells: dict[str, np.ndarray], batch_impressions: int, rng: np.random.Generator):
    """Yield (pair indices, cell indices) with whole pairs, about batch_impressions impressions each."""
    n_pairs = len(cells["pair_tuple"])
    order = np.argsort(cells["pair"], kind="stable")  # cells grouped by pair
    starts = np.searchsorted(cells["pair"][order], np.arange(n_pairs))
    ends = np.append(starts[1:], len(order))
    perm = rng.permutation(n_pairs)
    weight = np.add.reduceat(cells["n"][order], starts) if len(order) else np.zeros(0)
    cum = np.cumsum(weight[perm])
    cut = np.searchsorted(cum, np.arange(batch_impressions, cum[-1] + batch_impressions, batch_impressions), side="left")
    prev = 0
    for c in np.unique(np.append(cut + 1, n_pairs)):
        c = min(int(c), n_pairs)
        if c <= prev:
            continue
        chosen = perm[prev:c]
        lengths = ends[chosen] - starts[chosen]
        offsets = np.repeat(starts[chosen] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        cell_idx = order[np.arange(lengths.sum()) + offsets]
        yield chosen, cell_idx
        prev = c


def _pair_logits(model: PreferenceModel, tuples: torch.Tensor, feats: dict[str, torch.Tensor],
                 pair_tuple: np.ndarray, pair_product: np.ndarray, cell_pair_local: np.ndarray,
                 cell_creative: np.ndarray, creative_v: torch.Tensor | None = None) -> torch.Tensor:
    index = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(tuples.device)  # noqa: E731 - numpy indices onto the model's device
    products, local_product = np.unique(pair_product, return_inverse=True)
    pidx = index(products)
    keys = model.product_keys(feats["title_tokens"][pidx], feats["image_tokens"][pidx], pidx, feats["category"][pidx])
    e = model.embed(tuples[index(pair_tuple)], keys, index(local_product.reshape(-1)), feats["title_mask"][pidx])
    if creative_v is None:
        creatives, local_creative = np.unique(cell_creative, return_inverse=True)
        v = model.creative(feats["creative_stats"][index(creatives)])[index(local_creative.reshape(-1))]
    else:
        v = creative_v[index(cell_creative)]
    return model.click_logit(e[index(cell_pair_local)], v)


def train_model(tuples: np.ndarray, vocab_sizes: list[int], features: Features, imp: Impressions, *, d: int,
                epochs: int, batch_size: int, learning_rate: float, held_out_fraction: float, seed: int,
                progress: Callable[[int, int, dict[str, float]], None] | None = None,
                device: torch.device | str = "cpu") -> tuple[PreferenceModel, dict[str, Any]]:
    """Fit on all but a held-out share of impressions on `device`; returns the model (on the CPU,
    for export) and metrics (AUROC on the held-out share)."""
    # The same logs and seed give the same model: with two or more threads the CPU backward's
    # accumulations otherwise land in varying order (the weights differed run to run, and with them
    # every group downstream). The previous setting is restored for whoever runs us in-process. On
    # CUDA deterministic cuBLAS needs a fixed workspace, and kernels without a deterministic variant
    # only warn there.
    device = torch.device(device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        model, metrics = _train_model(tuples, vocab_sizes, features, imp, d=d, epochs=epochs, batch_size=batch_size,
                                      learning_rate=learning_rate, held_out_fraction=held_out_fraction, seed=seed,
                                      progress=progress, device=device)
        return model.cpu(), metrics
    finally:
        torch.use_deterministic_algorithms(deterministic)


def _train_model(tuples: np.ndarray, vocab_sizes: list[int], features: Features, imp: Impressions, *, d: int,
                 epochs: int, batch_size: int, learning_rate: float, held_out_fraction: float, seed: int,
                 progress: Callable[[int, int, dict[str, float]], None] | None,
                 device: torch.device) -> tuple[PreferenceModel, dict[str, Any]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_products, n_creatives = len(features.title_tokens), len(features.creative_stats)
    held = rng.random(len(imp.clicked)) < held_out_fraction
    train = Impressions(*(a[~held] for a in dataclasses.astuple(imp)))
    test = Impressions(*(a[held] for a in dataclasses.astuple(imp)))
    cells = _cells(train, n_products, n_creatives)

    categories = features.categories()
    model = PreferenceModel(vocab_sizes, features.title_tokens.shape[-1], features.image_tokens.shape[-1],
                            features.creative_stats.shape[-1], d=d, n_products=n_products, n_categories=int(categories.max()))
    model.set_feature_scales(features.title_tokens, features.title_mask, features.image_tokens)
    model.to(device)
    # Start the click head at the base rate: Adam moves a bias ~lr per step, far too slowly to
    # travel from logit 0 to a CTR of a few percent.
    base = float(np.clip(cells["k"].sum() / max(cells["n"].sum(), 1.0), 1e-4, 1 - 1e-4))
    with torch.no_grad():
        model.h2.bias.fill_(float(np.log(base / (1 - base))))
    # Standardise the frozen creative statistics once (their scales differ by orders of magnitude).
    stats = features.creative_stats
    mu, sd = stats.mean(0), stats.std(0) + 1e-6
    feats = {k: v.to(device) for k, v in {
        "title_tokens": torch.from_numpy(features.title_tokens), "title_mask": torch.from_numpy(features.title_mask),
        "image_tokens": torch.from_numpy(features.image_tokens),
        "creative_stats": torch.from_numpy(((stats - mu) / sd).astype(np.float32)),
        "category": torch.from_numpy(categories.astype(np.int64)),
    }.items()}
    tuples_t = torch.from_numpy(tuples.astype(np.int64)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    batches_per_epoch = max(1, int(np.ceil(cells["n"].sum() / batch_size)))
    total = epochs * batches_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, total_steps=total + epochs, pct_start=0.1)
    step, loss_value = 0, float("nan")
    n_t, k_t = torch.from_numpy(cells["n"]).to(device), torch.from_numpy(cells["k"]).to(device)
    model.train()
    for epoch in range(epochs):
        for chosen, cell_idx in _batches(cells, batch_size, rng):
            local = np.empty(len(cells["pair_tuple"]), dtype=np.int64)
            local[chosen] = np.arange(len(chosen))
            logits = _pair_logits(model, tuples_t, feats, cells["pair_tuple"][chosen], cells["pair_product"][chosen],
                                  local[cells["pair"][cell_idx]], cells["creative"][cell_idx])
            ci = torch.from_numpy(cell_idx).to(device)
            n, k = n_t[ci], k_t[ci]
            loss = (k * F.softplus(-logits) + (n - k) * F.softplus(logits)).sum() / n.sum()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if schedule.last_epoch < schedule.total_steps - 1:
                schedule.step()
            step += 1
            loss_value = float(loss.detach())
            if progress:
                progress(step, total, {"loss": loss_value, "epoch": epoch + 1})
    model.eval()
    metrics: dict[str, Any] = {"train_loss": loss_value, "train_impressions": int(len(train.clicked)),
                               "heldout_impressions": int(len(test.clicked)), "train_cells": int(len(cells["n"]))}
    if len(test.clicked):
        scores = predict_logits(model, tuples, features, test, mu, sd)
        metrics["auroc"] = M.auroc(test.clicked, scores)
        p = 1 / (1 + np.exp(-scores))
        metrics["heldout_logloss"] = float(-np.mean(test.clicked * np.log(p + 1e-12) + (1 - test.clicked) * np.log(1 - p + 1e-12)))
        metrics["heldout_ctr"] = float(test.clicked.mean())
    model.creative_mean, model.creative_std = mu, sd  # for export
    return model, metrics


def predict_logits(model: PreferenceModel, tuples: np.ndarray, features: Features, imp: Impressions,
                   mu: np.ndarray, sd: np.ndarray, batch_pairs: int = 4096) -> np.ndarray:
    """Click logits of impressions (computed per unique cell)."""
    n_products, n_creatives = len(features.title_tokens), len(features.creative_stats)
    cells = _cells(imp, n_products, n_creatives)
    device = next(model.parameters()).device
    feats = {k: v.to(device) for k, v in {
        "title_tokens": torch.from_numpy(features.title_tokens), "title_mask": torch.from_numpy(features.title_mask),
        "image_tokens": torch.from_numpy(features.image_tokens),
        "category": torch.from_numpy(features.categories().astype(np.int64)),
    }.items()}
    with torch.no_grad():
        creative_v = model.creative(torch.from_numpy(((features.creative_stats - mu) / sd).astype(np.float32)).to(device))
        out = np.zeros(len(cells["n"]), dtype=np.float64)
        tuples_t = torch.from_numpy(tuples.astype(np.int64)).to(device)
        n_pairs = len(cells["pair_tuple"])
        order = np.argsort(cells["pair"], kind="stable")
        bounds = np.searchsorted(cells["pair"][order], np.arange(0, n_pairs + batch_pairs, batch_pairs))
        for b in range(len(bounds) - 1):
            cell_idx = order[bounds[b]:bounds[b + 1]]
            if not len(cell_idx):
                continue
            first = b * batch_pairs
            pairs = np.arange(first, min(first + batch_pairs, n_pairs))
            logits = _pair_logits(model, tuples_t, feats, cells["pair_tuple"][pairs], cells["pair_product"][pairs],
                                  cells["pair"][cell_idx] - first, cells["creative"][cell_idx], creative_v)
            out[cell_idx] = logits.cpu().numpy()
    return out[cells["inverse"]]
