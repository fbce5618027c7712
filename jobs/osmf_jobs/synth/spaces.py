"""Style spaces of the synthetic worlds: how logged creatives are painted, and how the true click
model reads any image (logged, generated or rendered by anyone) from its pixels.

Two families (`osmf synth --style-space …`):

- `vocabulary` (the default): creatives are painted from OSMF's own style vocabulary
  (`osmf_jobs.style`: palette, pattern, lighting, mood), the words the probe captioner reads and the
  procedural renderer paints. A segment prefers one word per axis; the true style bonus is
  Σ_axis β_axis · [the image's word = the preferred word], the image's words read by `style.probe`
  (exact on vocabulary paintings).
- `painted`: creatives are painted by a generator OSMF shares nothing with: continuous colours in HSV,
  its own motifs (diagonal stripes at any angle, concentric rings, soft blobs, a horizon split
  between sky and ground, a radial vignette, plain noise) at any frequency. The truth reads four
  continuous features from the pixels of the background ring (outside the central box where the
  product sits): warmth, brightness, colourfulness, texture. A segment prefers a point in that
  space; the bonus is Σ_f β_f · exp(−(x_f − t_f)² / 2σ²). The probe captioner only approximates
  these images (nearest vocabulary words), as a vision-language model describes real photos, and
  the procedural renderer reaches the preferred point only roughly.

Each space turns pixels into a JSON-able `description` and a description into a per-segment bonus;
the world generator and the evaluation use the same two calls, so truth is the same for every image
whoever painted it.
"""

from __future__ import annotations

import colorsys
import dataclasses
from typing import Any

import numpy as np

from osmf_jobs import style as S

RING = 0.10  # the truth reads the outer 10% of each side: the product stays inside 78% of the canvas


def ring_mask(h: int, w: int) -> np.ndarray:
    top, left = int(np.floor(h * RING)), int(np.floor(w * RING))
    ring = np.ones((h, w), dtype=bool)
    ring[top:h - top, left:w - left] = False
    return ring


class VocabularySpace:
    """OSMF's own vocabulary: what the default world paints and its truth reads."""

    name = "vocabulary"
    BETA = {"palette": 0.8, "pattern": 0.6, "lighting": 0.5, "mood": 0.5}

    def preferences(self, rng: np.random.Generator, segments: int) -> list[dict[str, str]]:
        """One word per axis per segment, distinct within a category where the vocabulary allows."""
        picks = {}
        for axis, words in S.AXES.items():
            order = rng.permutation(len(words))
            picks[axis] = [words[order[s % len(words)]] for s in range(segments)]
        return [{axis: picks[axis][s] for axis in S.AXES} for s in range(segments)]

    def sample_looks(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        chosen = rng.choice(len(S.Style.all()), size=n, replace=False)
        return [dataclasses.asdict(S.Style.from_index(int(k))) | {"style_index": int(k)} for k in chosen]

    def paint(self, look: dict[str, Any], size: int, seed: int) -> np.ndarray:
        return S.paint_background(S.Style.from_index(int(look["style_index"])), size, seed=seed)

    def describe(self, pixels: np.ndarray) -> dict[str, Any]:
        return dataclasses.asdict(S.probe(pixels))

    def bonus(self, description: dict[str, Any], preference: dict[str, Any], beta: dict[str, float]) -> float:
        return float(sum(float(beta[axis]) for axis in S.AXES if description[axis] == preference[axis]))

    def ideal_bonus(self, beta: dict[str, float]) -> float:
        return float(sum(beta.values()))

    def caption(self, description: dict[str, Any]) -> str:
        return S.caption(S.Style(**{axis: description[axis] for axis in S.AXES}))


# ---- the painted family --------------------------------------------------------------------------

MOTIFS = ("diagonal", "rings", "blobs", "horizon", "vignette", "noise")
FEATURES = ("warmth", "brightness", "colourfulness", "texture")
SIGMA = 0.14  # width of a segment's preference around its target, in feature units
# Targets per feature are drawn from these levels, distinct within a category where possible, so
# the segments of a product want visibly different backgrounds.
TARGET_LEVELS = {
    "warmth": (0.3, 0.5, 0.7),
    "brightness": (0.3, 0.5, 0.7),
    "colourfulness": (0.12, 0.3, 0.5),
    "texture": (0.05, 0.2, 0.4),
}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))) * 255.0


def _texture_mix(look: dict[str, Any], size: int, rng: np.random.Generator) -> np.ndarray:
    """Weight of the second colour at each pixel, in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    freq = float(look["frequency"])
    kind = look["motif"]
    if kind == "diagonal":
        angle = float(look["angle"])
        u = x * np.cos(angle) + y * np.sin(angle)
        return 0.5 + 0.5 * np.sin(2 * np.pi * freq * u + rng.uniform(0, 2 * np.pi))
    if kind == "rings":
        cx, cy = rng.uniform(0.2, 0.8, size=2)
        r = np.hypot(x - cx, y - cy)
        return 0.5 + 0.5 * np.cos(2 * np.pi * freq * r)
    if kind == "blobs":
        mix = np.zeros_like(x)
        for _ in range(int(3 + freq)):
            cx, cy = rng.uniform(0, 1, size=2)
            radius = rng.uniform(0.08, 0.3)
            mix = np.maximum(mix, np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius ** 2)))
        return mix
    if kind == "horizon":
        line = float(look["horizon"]) + 0.03 * np.sin(2 * np.pi * freq * x / 4)
        return 1.0 / (1.0 + np.exp(-(y - line) * 40.0))
    if kind == "vignette":
        r = np.hypot(x - 0.5, y - 0.5) / np.sqrt(0.5)
        return np.clip(r, 0, 1) ** 1.5
    if kind == "noise":
        coarse = rng.random((max(2, int(freq)), max(2, int(freq))))
        from PIL import Image

        up = Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        return np.asarray(up, dtype=np.float64) / 255.0
    raise ValueError(f"motif {kind!r} is not one of {MOTIFS}")


class PaintedSpace:
    """Continuous looks, painted by a generator OSMF's probe and renderer know nothing of."""

    name = "painted"
    BETA = {"warmth": 0.9, "brightness": 0.6, "colourfulness": 0.5, "texture": 0.5}

    def preferences(self, rng: np.random.Generator, segments: int) -> list[dict[str, float]]:
        picks = {}
        for feature in FEATURES:
            levels = TARGET_LEVELS[feature]
            order = rng.permutation(len(levels))
            picks[feature] = [float(levels[order[s % len(levels)]]) for s in range(segments)]
        return [{feature: picks[feature][s] for feature in FEATURES} for s in range(segments)]

    def sample_looks(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        looks = []
        for _ in range(n):
            hue = float(rng.random())
            looks.append({
                "motif": MOTIFS[int(rng.integers(len(MOTIFS)))],
                "hue": hue,
                "hue_shift": float(rng.uniform(-0.22, 0.22)),
                "saturation": float(rng.uniform(0.05, 0.85)),
                "value": float(rng.uniform(0.2, 0.95)),
                "contrast": float(rng.uniform(0.05, 0.6)),
                "frequency": float(rng.uniform(1.0, 14.0)),
                "angle": float(rng.uniform(0, np.pi)),
                "horizon": float(rng.uniform(0.3, 0.7)),
                "grain": float(rng.choice([0.0, 0.0, 6.0, 16.0, 28.0])),
            })
        return looks

    def paint(self, look: dict[str, Any], size: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, size, 7])
        c1 = _hsv(look["hue"], look["saturation"], look["value"])
        v2 = look["value"] * (1.0 - look["contrast"]) if look["value"] > 0.5 else min(1.0, look["value"] * (1.0 + look["contrast"]) + 0.1 * look["contrast"])
        c2 = _hsv(look["hue"] + look["hue_shift"], look["saturation"] * 0.8 + 0.1, v2)
        mix = _texture_mix(look, size, rng)[..., None]
        img = c1 * (1 - mix) + c2 * mix
        if look["grain"] > 0:
            img = img + rng.normal(0.0, look["grain"], size=img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def describe(self, pixels: np.ndarray) -> dict[str, float]:
        return image_features(pixels)

    def bonus(self, description: dict[str, Any], preference: dict[str, Any], beta: dict[str, float]) -> float:
        return float(sum(float(beta[f]) * np.exp(-((float(description[f]) - float(preference[f])) ** 2) / (2 * SIGMA ** 2))
                         for f in FEATURES))

    def ideal_bonus(self, beta: dict[str, float]) -> float:
        return float(sum(beta.values()))

    def caption(self, description: dict[str, Any]) -> str:
        return ", ".join(f"{f} {float(description[f]):.2f}" for f in FEATURES)


def image_features(pixels: np.ndarray) -> dict[str, float]:
    """The painted world's four features of an image's background ring, each in [0, 1]."""
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    rgb = arr[..., :3].astype(np.float64) / 255.0
    h, w = rgb.shape[:2]
    ring = ring_mask(h, w)
    pix = rgb[ring]
    luminance = pix @ np.array([0.299, 0.587, 0.114])
    warmth = float(np.clip(0.5 + 0.9 * np.mean(pix[:, 0] - pix[:, 2]), 0.0, 1.0))
    colourfulness = float(np.mean(pix.max(axis=1) - pix.min(axis=1)))
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    both_h = ring[:, 1:] & ring[:, :-1]
    both_v = ring[1:, :] & ring[:-1, :]
    steps = np.concatenate([np.abs(np.diff(lum, axis=1))[both_h], np.abs(np.diff(lum, axis=0))[both_v]])
    texture = float(np.clip(6.0 * np.mean(steps), 0.0, 1.0))
    return {"warmth": warmth, "brightness": float(np.mean(luminance)), "colourfulness": colourfulness, "texture": texture}


SPACES = {space.name: space for space in (VocabularySpace(), PaintedSpace())}


def space_named(name: str):
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"style space {name!r} is not one of {', '.join(SPACES)}") from None
