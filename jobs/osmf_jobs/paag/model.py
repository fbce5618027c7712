"""The PAAG preference model in torch (DESIGN §6); `inference.py` mirrors its inference path in numpy.

    q   = MLP(concat(attribute embeddings))                      user query, d = embeddingDim (128)
    x   = q + Attn(LN(q), title tokens);   x = x + FFN(LN(x))     the user reads the product title
    x   = x + Attn(LN(x), image tokens);   x = x + FFN(LN(x))     ... then the product image
    e   = LN(x)                                                   product-aware preference embedding
    v   = MLP(LN(creative image stats))                           the shown creative
    p   = sigmoid(<e, v> + MLP([e, v, e * v]))                    click probability (BCE on impressions)

Title and image tokens come from frozen encoders (cached once, `encoders.py`) through trainable
projections. Attribute index 0 is "unknown" (a value not seen in training). GELU is the tanh form
and attention is written out so numpy reproduces it exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ATTR_DIM = 16
HEADS = 4
HEAD_HIDDEN = 64


def gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


class CrossBlock(nn.Module):
    def __init__(self, d: int, heads: int = HEADS):
        super().__init__()
        self.heads = heads
        self.ln_q = nn.LayerNorm(d)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d) for _ in range(4))
        self.ln_f = nn.LayerNorm(d)
        # Gated FFN (GEGLU): the product of two projections of q + attention output holds
        # user x product terms directly, so "which attributes matter for this product" is easy to learn.
        self.ff1, self.ffg, self.ff2 = nn.Linear(d, 2 * d), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def keys_values(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.wk(kv), self.wv(kv)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, d]; k, v [B, T, d]; mask [B, T] (True = real token)."""
        b, t, d = k.shape
        hd = d // self.heads
        q = self.wq(self.ln_q(x)).view(b, self.heads, 1, hd)
        kh = k.view(b, t, self.heads, hd).transpose(1, 2)
        vh = v.view(b, t, self.heads, hd).transpose(1, 2)
        scores = (q @ kh.transpose(-1, -2)) / math.sqrt(hd)  # [B, H, 1, T]
        scores = scores.masked_fill(~mask[:, None, None, :], -1e9)
        attn = torch.softmax(scores, dim=-1) @ vh  # [B, H, 1, hd]
        x = x + self.wo(attn.reshape(b, d))
        h = self.ln_f(x)
        return x + self.ff2(gelu(self.ff1(h)) * self.ffg(h))


class PreferenceModel(nn.Module):
    def __init__(self, vocab_sizes: list[int], text_dim: int, image_token_dim: int, creative_dim: int, d: int = 128,
                 n_products: int = 1, n_categories: int = 0):
        super().__init__()
        self.d = d
        # Learned product tokens beside the title's: the product's own id embedding and, when the
        # catalog has categories, its category's. They let each product pick the attributes that
        # matter for it without first untangling frozen title features (see docs/method-grouping.md).
        self.product_emb = nn.Embedding(n_products, d)
        self.category_emb = nn.Embedding(n_categories + 1, d)  # 0 = no category
        self.attr_emb = nn.ModuleList(nn.Embedding(n + 1, ATTR_DIM) for n in vocab_sizes)
        # Product-aware attribute gate: each product weighs the user's attributes before the query
        # MLP (2 * sigmoid, 1 at init). Which attributes matter depends on the product; a gate
        # learns that directly, where a query MLP + cross-attention alone stalls (see the docs).
        self.gate = nn.Linear(d, len(vocab_sizes))
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.q1, self.q2 = nn.Linear(ATTR_DIM * len(vocab_sizes), d), nn.Linear(d, d)
        self.title_ln, self.title_proj = nn.LayerNorm(text_dim), nn.Linear(text_dim, d)
        self.image_ln, self.image_proj = nn.LayerNorm(image_token_dim), nn.Linear(image_token_dim, d)
        self.title_block, self.image_block = CrossBlock(d), CrossBlock(d)
        self.out_ln = nn.LayerNorm(d)
        self.creative_ln = nn.LayerNorm(creative_dim)
        self.c1, self.c2 = nn.Linear(creative_dim, d), nn.Linear(d, d)
        self.h1, self.h2 = nn.Linear(3 * d, HEAD_HIDDEN), nn.Linear(HEAD_HIDDEN, 1)
        for emb in self.attr_emb:
            nn.init.normal_(emb.weight, std=1.0)

    def query(self, attrs: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """attrs [B, A] long, gate [B, A] -> q [B, d]."""
        x = torch.cat([emb(attrs[:, i]) * gate[:, i:i + 1] for i, emb in enumerate(self.attr_emb)], dim=1)
        return self.q2(gelu(self.q1(x)))

    def set_feature_scales(self, title_tokens: np.ndarray, title_mask: np.ndarray, image_tokens: np.ndarray) -> None:
        """Standardise frozen product features per dimension across the catalog.

        Encoder features of different products share a large common component (every title
        embedding looks alike next to its differences); removing it makes products distinguishable
        to the attention from the first step.
        """
        real = title_tokens[title_mask]
        flat = image_tokens.reshape(-1, image_tokens.shape[-1])
        for name, values in (("title", real), ("image", flat)):
            self.register_buffer(f"{name}_mean", torch.from_numpy(values.mean(0).astype(np.float32)))
            self.register_buffer(f"{name}_std", torch.from_numpy((values.std(0) + 1e-6).astype(np.float32)))

    def product_keys(self, title_tokens: torch.Tensor, image_tokens: torch.Tensor, product: torch.Tensor,
                     category: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-product keys/values of both blocks: title tokens + the learned product and category tokens, image tokens."""
        if hasattr(self, "title_mean"):
            title_tokens = (title_tokens - self.title_mean) / self.title_std
            image_tokens = (image_tokens - self.image_mean) / self.image_std
        t = self.title_proj(self.title_ln(title_tokens))
        own = self.product_emb(product) + self.category_emb(category)
        gate = 2 * torch.sigmoid(self.gate(own + t[:, 0]))  # the first title token is the pooled title
        t = torch.cat([self.product_emb(product)[:, None], self.category_emb(category)[:, None], t], dim=1)
        m = self.image_proj(self.image_ln(image_tokens))
        tk, tv = self.title_block.keys_values(t)
        ik, iv = self.image_block.keys_values(m)
        return {"title_k": tk, "title_v": tv, "image_k": ik, "image_v": iv, "gate": gate}

    def embed(self, attrs: torch.Tensor, keys: dict[str, torch.Tensor], product: torch.Tensor,
              title_mask: torch.Tensor) -> torch.Tensor:
        """Preference embeddings of (attribute rows, product indices) -> [B, d]."""
        x = self.query(attrs, keys["gate"][product])
        image_mask = torch.ones(keys["image_k"].shape[:2], dtype=torch.bool, device=keys["image_k"].device)[product]
        title_mask = torch.cat([torch.ones_like(title_mask[:, :2]), title_mask], dim=1)  # + product, category tokens
        x = self.title_block(x, keys["title_k"][product], keys["title_v"][product], title_mask[product])
        x = self.image_block(x, keys["image_k"][product], keys["image_v"][product], image_mask)
        return self.out_ln(x)

    def creative(self, stats: torch.Tensor) -> torch.Tensor:
        return self.c2(gelu(self.c1(self.creative_ln(stats))))

    def click_logit(self, e: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """<e, v> + MLP([e, v, e * v]): the dot product is a direct user-product x creative term,
        which gradient descent finds at once; the MLP adds main effects and non-linearity."""
        return (e * v).sum(1) + self.h2(gelu(self.h1(torch.cat([e, v, e * v], dim=1)))).squeeze(1)


def export_arrays(model: PreferenceModel, title_tokens: np.ndarray, title_mask: np.ndarray, image_tokens: np.ndarray,
                  creative_stats: np.ndarray, creative_mean: np.ndarray, creative_std: np.ndarray,
                  product_category: np.ndarray) -> dict[str, np.ndarray]:
    """Everything the numpy inference path needs: weights plus per-product keys and per-creative vectors.

    `creative_stats` are the raw encoder statistics; the model reads them standardised by
    (mean, std), which are exported too so new creatives can be scored.
    """
    model.eval()
    with torch.no_grad():
        keys = model.product_keys(torch.from_numpy(title_tokens), torch.from_numpy(image_tokens),
                                  torch.arange(len(title_tokens)), torch.from_numpy(np.asarray(product_category, dtype=np.int64)))
        standard = ((creative_stats - creative_mean) / creative_std).astype(np.float32)
        creative = model.creative(torch.from_numpy(standard))
    arrays: dict[str, np.ndarray] = {}
    for i, emb in enumerate(model.attr_emb):
        arrays[f"attr_emb.{i}"] = emb.weight.detach().numpy()
    params = {
        "q1": model.q1, "q2": model.q2, "out_ln": model.out_ln, "h1": model.h1, "h2": model.h2,
        "creative_ln": model.creative_ln, "c1": model.c1, "c2": model.c2,
    }
    for block_name in ("title_block", "image_block"):
        block = getattr(model, block_name)
        params.update({f"{block_name}.{n}": getattr(block, n) for n in ("ln_q", "wq", "wo", "ln_f", "ff1", "ffg", "ff2")})
    for name, module in params.items():
        arrays[f"{name}.weight"] = module.weight.detach().numpy()
        arrays[f"{name}.bias"] = module.bias.detach().numpy()
    arrays.update({f"product.{k}": v.numpy() for k, v in keys.items()})
    arrays["product.title_mask"] = np.concatenate([np.ones((len(title_mask), 2), bool), title_mask.astype(bool)], axis=1)
    arrays["creative.v"] = creative.numpy()
    arrays["creative.mean"], arrays["creative.std"] = creative_mean, creative_std
    return {k: np.ascontiguousarray(v, dtype=np.float32 if v.dtype != bool else bool) for k, v in arrays.items()}
