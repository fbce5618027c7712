"""Background styles: the fixed vocabulary, the procedural painter and the image probe.

The generation target of OSMF is the *background* of an ad image. The synthetic world paints
backgrounds from this vocabulary, the deterministic captioner reads them back with `probe`, the
procedural renderer paints from the style words of a prompt, and the G-MLLM learns to write them.

Vocabulary (four independent axes, 6 x 5 x 3 x 4 = 360 styles):

- palette: warm, cool, pastel, earthy, fresh, monochrome -- a pair of colours.
- pattern (the backdrop / scene): striped, checkered, dotted, wavy, gradient.
- lighting: bright, soft, dim -- a brightness factor on both colours.
- mood: calm (smooth), energetic (film grain), playful (confetti specks), festive (both).

API:

- `Style(palette, pattern, lighting, mood)`: a frozen dataclass; `Style.all()` lists the whole
  vocabulary in a fixed order, `style.index` is its position there, `style.one_hot()` a 0/1 vector
  over the axis words (`FEATURE_NAMES`).
- `paint_background(style, size, seed) -> np.ndarray` (uint8, size x size x 3), deterministic by
  seed (the seed moves the pattern phase, the grain and the confetti; never the style).
- `compose(product, background, scale=0.78) -> (image, product_mask)`: the cut-out (RGBA, or RGB
  on a plain background) scaled to at most `scale` of the canvas, centred; pixels where the
  cut-out is opaque are copied exactly.
- `probe(image) -> Style`: reads the ring outside the central 80% box (where `compose` never puts
  the product) and returns the nearest vocabulary words; inverts `paint_background` exactly.
- `caption(style) -> str`: "warm palette, striped backdrop, bright lighting, energetic mood".
- `parse_prompt(text, default=None) -> Style`: the style words (and a few synonyms) found in free
  text; axes the text does not mention come from `default` (else `Style.default()`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator

import numpy as np

PALETTES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "warm": ((214, 72, 40), (248, 180, 60)),
    "cool": ((36, 80, 180), (88, 196, 220)),
    "pastel": ((246, 164, 196), (164, 216, 244)),
    "earthy": ((124, 84, 44), (166, 160, 84)),
    "fresh": ((44, 150, 70), (206, 232, 96)),
    "monochrome": ((46, 46, 50), (200, 200, 204)),
}
PATTERNS: tuple[str, ...] = ("striped", "checkered", "dotted", "wavy", "gradient")
LIGHTING: dict[str, float] = {"bright": 1.0, "soft": 0.72, "dim": 0.45}
MOODS: tuple[str, ...] = ("calm", "energetic", "playful", "festive")

AXES: dict[str, tuple[str, ...]] = {
    "palette": tuple(PALETTES),
    "pattern": PATTERNS,
    "lighting": tuple(LIGHTING),
    "mood": MOODS,
}
FEATURE_NAMES: tuple[str, ...] = tuple(f"{axis}={word}" for axis, words in AXES.items() for word in words)

# Nouns the caption puts after each axis word, and synonyms parse_prompt accepts.
_NOUNS = {"palette": "palette", "pattern": "backdrop", "lighting": "lighting", "mood": "mood"}
_SYNONYMS = {
    "stripes": "striped", "stripe": "striped", "stripy": "striped",
    "checks": "checkered", "checked": "checkered", "checkerboard": "checkered", "chequered": "checkered",
    "dots": "dotted", "dot": "dotted", "polka": "dotted",
    "waves": "wavy", "wave": "wavy",
    "gradients": "gradient", "ombre": "gradient",
    "warmth": "warm", "cold": "cool", "pastels": "pastel", "earth": "earthy", "natural": "earthy",
    "green": "fresh", "mono": "monochrome", "grayscale": "monochrome", "greyscale": "monochrome",
    "sunny": "bright", "light": "bright", "gentle": "soft", "dark": "dim", "moody": "dim",
    "serene": "calm", "quiet": "calm", "lively": "energetic", "dynamic": "energetic",
    "fun": "playful", "confetti": "playful", "party": "festive", "celebration": "festive",
}
_WORD_AXIS = {word: axis for axis, words in AXES.items() for word in words}

_GRAIN_SIGMA = 9.0  # film grain of the energetic/festive moods, added after lighting
_CONFETTI_FRACTION = 0.03  # share of pixels set to pure white/black in playful/festive moods
_RING = 0.10  # probe reads the outer 10% on each side; compose keeps the product inside 0.78


@dataclasses.dataclass(frozen=True, order=True)
class Style:
    palette: str
    pattern: str
    lighting: str
    mood: str

    def __post_init__(self) -> None:
        for axis, words in AXES.items():
            value = getattr(self, axis)
            if value not in words:
                raise ValueError(f"style {axis} {value!r} is not in the vocabulary; use one of {', '.join(words)}")

    @staticmethod
    def default() -> "Style":
        return Style("warm", "gradient", "bright", "calm")

    @staticmethod
    def all() -> list["Style"]:
        return list(_iter_styles())

    @property
    def index(self) -> int:
        i = 0
        for axis, words in AXES.items():
            i = i * len(words) + words.index(getattr(self, axis))
        return i

    @staticmethod
    def from_index(i: int) -> "Style":
        return _ALL[i]

    def one_hot(self) -> np.ndarray:
        vec = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
        offset = 0
        for axis, words in AXES.items():
            vec[offset + words.index(getattr(self, axis))] = 1.0
            offset += len(words)
        return vec

    def words(self) -> tuple[str, str, str, str]:
        return (self.palette, self.pattern, self.lighting, self.mood)


def _iter_styles() -> Iterator[Style]:
    for p in AXES["palette"]:
        for q in AXES["pattern"]:
            for li in AXES["lighting"]:
                for m in AXES["mood"]:
                    yield Style(p, q, li, m)


_ALL: list[Style] = list(_iter_styles())


def _period(size: int) -> int:
    return max(4, int(round(size / 8)))


def _pattern_mix(pattern: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Weight of the second colour at each pixel (size x size, in [0, 1])."""
    period = _period(size)
    half = period / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    ox, oy = rng.uniform(0, 4 * period, size=2)
    if pattern == "striped":
        return (np.floor((x + ox) / half) % 2).astype(np.float64)
    if pattern == "checkered":
        return ((np.floor((x + ox) / half) + np.floor((y + oy) / half)) % 2).astype(np.float64)
    if pattern == "dotted":
        dx = np.mod(x + ox, period) - period / 2
        dy = np.mod(y + oy, period) - period / 2
        return (dx * dx + dy * dy <= (0.27 * period) ** 2).astype(np.float64)
    if pattern == "wavy":
        shifted = y + oy + (period / 3) * np.sin(2 * np.pi * (x + ox) / (4 * period))
        return (np.floor(shifted / half) % 2).astype(np.float64)
    if pattern == "gradient":
        return y / max(size - 1, 1)
    raise ValueError(f"pattern {pattern!r} is not in the vocabulary")


def paint_background(style: Style, size: int = 64, seed: int = 0) -> np.ndarray:
    """A size x size x 3 uint8 background in `style`; the same (style, size, seed) gives the same pixels."""
    if size < 16:
        raise ValueError(f"background size {size} is too small; use at least 16 pixels")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, style.index, size])
    c1, c2 = (np.asarray(c, dtype=np.float64) for c in PALETTES[style.palette])
    mix = _pattern_mix(style.pattern, size, rng)[..., None]
    img = (c1 * (1 - mix) + c2 * mix) * LIGHTING[style.lighting]
    if style.mood in ("energetic", "festive"):
        img = img + rng.normal(0.0, _GRAIN_SIGMA, size=img.shape)
    # Exact 0 and 255 are reserved for confetti, so the probe can count specks exactly.
    img = np.clip(np.rint(img), 1, 254).astype(np.uint8)
    if style.mood in ("playful", "festive"):
        specks = rng.random((size, size)) < _CONFETTI_FRACTION
        white = rng.random((size, size)) < 0.5
        img[specks & white] = 255
        img[specks & ~white] = 0
    return img


def to_rgba(product) -> np.ndarray:
    """An RGBA uint8 array; RGB input on a plain background gets alpha by keying out the corner colour."""
    arr = np.asarray(product)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.shape[-1] == 4:
        return arr.astype(np.uint8)
    rgb = arr[..., :3].astype(np.int16)
    corners = np.stack([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]])
    key = np.median(corners, axis=0)
    alpha = np.where(np.abs(rgb - key).sum(axis=-1) > 24, 255, 0).astype(np.uint8)
    return np.concatenate([arr[..., :3].astype(np.uint8), alpha[..., None]], axis=-1)


def compose(product, background, scale: float = 0.78) -> tuple[np.ndarray, np.ndarray]:
    """Centre the cut-out on the background; returns (RGB uint8 image, bool product mask).

    The cut-out is downscaled (never upscaled) to fit within `scale` of the canvas. Where its alpha
    is 255 the output pixel equals the (scaled) cut-out pixel exactly; partial alpha is blended.
    """
    from PIL import Image

    if not 0 < scale <= 0.78:
        raise ValueError(f"product scale {scale} is outside (0, 0.78]; the probe reads the border ring")
    bg = np.asarray(background)[..., :3].astype(np.uint8)
    h, w = bg.shape[:2]
    rgba = to_rgba(product)
    ph, pw = rgba.shape[:2]
    limit = int(np.floor(scale * min(h, w)))
    if max(ph, pw) > limit:
        factor = limit / max(ph, pw)
        nw, nh = max(1, int(round(pw * factor))), max(1, int(round(ph * factor)))
        rgba = np.asarray(Image.fromarray(rgba, "RGBA").resize((nw, nh), Image.LANCZOS))
        ph, pw = nh, nw
    top, left = (h - ph) // 2, (w - pw) // 2
    out = bg.copy()
    region = out[top:top + ph, left:left + pw].astype(np.float64)
    alpha = rgba[..., 3:4].astype(np.float64) / 255.0
    blended = np.rint(rgba[..., :3] * alpha + region * (1 - alpha)).astype(np.uint8)
    opaque = rgba[..., 3] == 255
    blended[opaque] = rgba[..., :3][opaque]
    out[top:top + ph, left:left + pw] = blended
    mask = np.zeros((h, w), dtype=bool)
    mask[top:top + ph, left:left + pw] = rgba[..., 3] > 0
    return out, mask


def _ring_mask(h: int, w: int) -> np.ndarray:
    top, left = int(np.floor(h * _RING)), int(np.floor(w * _RING))
    ring = np.ones((h, w), dtype=bool)
    ring[top:h - top, left:w - left] = False
    return ring


def _box3(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """3x3 mean over valid pixels only (normalised convolution)."""
    v = np.where(valid, values, 0.0)
    m = valid.astype(np.float64)
    pv, pm = np.pad(v, 1), np.pad(m, 1)
    h, w = values.shape
    sv = sum(pv[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    sm = sum(pm[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    return np.where(sm > 0, sv / np.maximum(sm, 1), 0.0)


def _pair_distance(o1: np.ndarray, o2: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> float:
    straight = np.sum((o1 - e1) ** 2) + np.sum((o2 - e2) ** 2)
    swapped = np.sum((o1 - e2) ** 2) + np.sum((o2 - e1) ** 2)
    return float(np.sqrt(min(straight, swapped)))


def probe_features(image) -> dict[str, float]:
    """The statistics `probe` decides on (exposed for tests and diagnostics)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    arr = arr[..., :3].astype(np.float64)
    h, w = arr.shape[:2]
    ring = _ring_mask(h, w)
    confetti = np.all(arr >= 255, axis=-1) | np.all(arr <= 0, axis=-1)
    valid = ring & ~confetti
    feats: dict[str, float] = {"confetti": float(confetti[ring].mean())}

    both_h = valid[:, 1:] & valid[:, :-1]
    dh = np.abs(arr[:, 1:] - arr[:, :-1]).sum(axis=-1)
    feats["grain"] = float(np.median(dh[both_h])) if both_h.any() else 0.0

    pix = arr[valid]
    mean = pix.mean(axis=0)
    _, _, vt = np.linalg.svd(pix - mean, full_matrices=False)
    axis = vt[0]
    s = np.zeros((h, w))
    s[valid] = (pix - mean) @ axis
    # Grain makes single pixels unreliable; average it out before labelling.
    smooth = _box3(s, valid) if feats["grain"] > 10.0 else s

    # Gradient: the projection depends on the row only, linearly.
    rows = np.arange(h, dtype=np.float64)
    counts = valid.sum(axis=1)
    has = counts > 0
    row_mean = np.where(has, np.where(valid, s, 0).sum(axis=1) / np.maximum(counts, 1), 0)
    ry, rm = rows[has], row_mean[has]
    denom = np.sum((rm - rm.mean()) ** 2)
    r2 = 1 - np.sum((rm - np.polyval(np.polyfit(ry, rm, 1), ry)) ** 2) / denom if denom > 0 else 0.0
    feats["gradient_r2"] = float(r2)

    # Two-colour labels: 1-D two-means on the smoothed projection.
    sv = smooth[valid]
    lo, hi = np.percentile(sv, 5), np.percentile(sv, 95)
    for _ in range(20):
        thr = (lo + hi) / 2
        if not (sv > thr).any() or (sv > thr).all():
            break
        lo, hi = sv[sv <= thr].mean(), sv[sv > thr].mean()
    thr = (lo + hi) / 2
    labels = smooth > thr
    feats["h_trans"] = float((labels[:, 1:] != labels[:, :-1])[both_h].mean()) if both_h.any() else 0.0
    both_v = valid[1:, :] & valid[:-1, :]
    feats["v_trans"] = float((labels[1:, :] != labels[:-1, :])[both_v].mean()) if both_v.any() else 0.0

    if r2 > 0.7:
        # Colour is linear in the row: extrapolate to the top and bottom rows.
        yv = np.nonzero(valid)[0].astype(np.float64)
        design = np.stack([np.ones_like(yv), yv], axis=1)
        coef, *_ = np.linalg.lstsq(design, pix, rcond=None)
        c1, c2 = coef[0], coef[0] + coef[1] * (h - 1)
    else:
        # Colours from confidently labelled pixels (away from edges and mixed neighbourhoods).
        low_sel, high_sel = sv <= thr - 0.5 * (thr - lo), sv >= thr + 0.5 * (hi - thr)
        c1 = pix[low_sel].mean(axis=0) if low_sel.any() else mean
        c2 = pix[high_sel].mean(axis=0) if high_sel.any() else mean
        # Refine on raw pixels by nearest colour: smoothing blurs small dots into their background.
        for _ in range(3):
            near2 = np.sum((pix - c2) ** 2, axis=1) < np.sum((pix - c1) ** 2, axis=1)
            if near2.all() or not near2.any():
                break
            c1, c2 = pix[~near2].mean(axis=0), pix[near2].mean(axis=0)
    # Share of the rarer colour, per pixel by nearest colour.
    nearer2 = np.sum((pix - c2) ** 2, axis=1) < np.sum((pix - c1) ** 2, axis=1)
    feats["minority"] = float(min(nearer2.mean(), 1 - nearer2.mean()))
    feats.update({f"c1_{i}": float(c1[i]) for i in range(3)})
    feats.update({f"c2_{i}": float(c2[i]) for i in range(3)})
    return feats


def probe(image) -> Style:
    """The vocabulary style nearest to the background ring of `image` (RGB/RGBA array or PIL image)."""
    f = probe_features(image)
    grain = f["grain"] > 10.0
    confetti = f["confetti"] > 0.008
    mood = {(False, False): "calm", (True, False): "energetic",
            (False, True): "playful", (True, True): "festive"}[(grain, confetti)]

    h, v = f["h_trans"], f["v_trans"]
    ratio = h / (h + v) if h + v > 0 else 0.5
    if f["gradient_r2"] > 0.7:
        pattern = "gradient"
    elif f["minority"] < 0.38:
        pattern = "dotted"
    elif ratio > 0.7:
        pattern = "striped"
    elif ratio < 0.39:
        pattern = "wavy"
    else:
        pattern = "checkered"

    o1 = np.array([f["c1_0"], f["c1_1"], f["c1_2"]])
    o2 = np.array([f["c2_0"], f["c2_1"], f["c2_2"]])
    best = None
    for palette, (a, b) in PALETTES.items():
        for lighting, factor in LIGHTING.items():
            d = _pair_distance(o1, o2, np.asarray(a) * factor, np.asarray(b) * factor)
            if best is None or d < best[0]:
                best = (d, palette, lighting)
    return Style(best[1], pattern, best[2], mood)


def caption(style: Style) -> str:
    return ", ".join(f"{getattr(style, axis)} {_NOUNS[axis]}" for axis in AXES)


def parse_prompt(text: str, default: Style | None = None) -> Style:
    """Style words in free text (first mention per axis wins); unmentioned axes come from `default`."""
    found: dict[str, str] = {}
    for token in re.findall(r"[a-z]+", text.lower()):
        word = _SYNONYMS.get(token, token)
        axis = _WORD_AXIS.get(word)
        if axis is not None and axis not in found:
            found[axis] = word
    base = default or Style.default()
    return dataclasses.replace(base, **found)
