"""The preference model's inference path in numpy (no torch), from the arrays `model.export_arrays` writes.

Batched: `NumpyPreferenceModel.embed(attr_index [B, A], product_index [B]) -> [B, d]`,
`click_logit(e [B, d], creative_index [B]) -> [B]`. Per-product keys/values and per-creative
vectors are precomputed at export, so one embedding is a handful of small matrix products.
"""

from __future__ import annotations

import math

import numpy as np

HEADS = 4
LN_EPS = 1e-5


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b


class NumpyPreferenceModel:
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.a = arrays
        self.n_attrs = sum(1 for k in arrays if k.startswith("attr_emb."))
        self.emb = [arrays[f"attr_emb.{i}"] for i in range(self.n_attrs)]
        self.d = arrays["q2.weight"].shape[0]

    def _lin(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self.a[f"{name}.weight"].T + self.a[f"{name}.bias"]

    def _ln(self, name: str, x: np.ndarray) -> np.ndarray:
        return layer_norm(x, self.a[f"{name}.weight"], self.a[f"{name}.bias"])

    def query(self, attr_index: np.ndarray, gate: np.ndarray) -> np.ndarray:
        x = np.concatenate([self.emb[i][attr_index[:, i]] * gate[:, i:i + 1] for i in range(self.n_attrs)], axis=1)
        return self._lin("q2", gelu(self._lin("q1", x)))

    def _block(self, name: str, x: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        b, t, d = k.shape
        hd = d // HEADS
        q = self._lin(f"{name}.wq", self._ln(f"{name}.ln_q", x)).reshape(b, HEADS, 1, hd)
        kh = k.reshape(b, t, HEADS, hd).transpose(0, 2, 1, 3)
        vh = v.reshape(b, t, HEADS, hd).transpose(0, 2, 1, 3)
        scores = (q @ kh.transpose(0, 1, 3, 2)) / math.sqrt(hd)
        if mask is not None:
            scores = np.where(mask[:, None, None, :], scores, -1e9)
        scores = scores - scores.max(-1, keepdims=True)
        w = np.exp(scores)
        w /= w.sum(-1, keepdims=True)
        x = x + self._lin(f"{name}.wo", (w @ vh).reshape(b, d))
        h = self._ln(f"{name}.ln_f", x)
        return x + self._lin(f"{name}.ff2", gelu(self._lin(f"{name}.ff1", h)) * self._lin(f"{name}.ffg", h))

    def embed(self, attr_index: np.ndarray, product_index: np.ndarray) -> np.ndarray:
        a = self.a
        p = np.asarray(product_index)
        x = self.query(np.asarray(attr_index), a["product.gate"][p])
        x = self._block("title_block", x, a["product.title_k"][p], a["product.title_v"][p], a["product.title_mask"][p])
        x = self._block("image_block", x, a["product.image_k"][p], a["product.image_v"][p], None)
        return self._ln("out_ln", x)

    def creative_vectors(self, stats: np.ndarray) -> np.ndarray:
        """Creative vectors from raw image-encoder statistics (for creatives not seen in training)."""
        x = (np.asarray(stats, dtype=np.float32) - self.a["creative.mean"]) / self.a["creative.std"]
        return self._lin("c2", gelu(self._lin("c1", self._ln("creative_ln", x))))

    def click_logit(self, e: np.ndarray, creative_index: np.ndarray | None = None, creative_v: np.ndarray | None = None) -> np.ndarray:
        v = self.a["creative.v"][np.asarray(creative_index)] if creative_v is None else creative_v
        h = gelu(self._lin("h1", np.concatenate([e, v, e * v], axis=1)))
        return (e * v).sum(1) + self._lin("h2", h)[:, 0]
