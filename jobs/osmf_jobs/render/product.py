"""Pure image helpers of PCIG rendering: the product cut-out, the inpainting mask, the canny control.

Arrays are numpy uint8 (H x W x C) or bool (H x W); nothing here touches a model.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from osmf_jobs.runtime import InvalidInput

# An RGB product image counts as "on a plain background" when this share of its border pixels is
# within KEY_TOLERANCE (max over channels) of the border's median colour.
PLAIN_BORDER_SHARE = 0.9
KEY_TOLERANCE = 16


def product_cutout(image: Image.Image) -> np.ndarray:
    """The product as an RGBA uint8 array cropped to its visible pixels.

    An image with transparency keeps its alpha. An opaque image must be on a plain background: the
    background is the border-connected region of the border's colour, so product pixels of that same
    colour inside the product stay opaque. Anything else raises InvalidInput.
    """
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.array(image.convert("RGBA"))
        alpha = rgba[..., 3]
        if not alpha.any():
            raise InvalidInput("product image is fully transparent; give a cut-out with the product opaque")
        if alpha.min() < 255:
            return _crop(rgba)
        rgb = rgba[..., :3]
    else:
        rgb = np.array(image.convert("RGB"))
    foreground = _key_plain_background(rgb)
    alpha = np.where(foreground, 255, 0).astype(np.uint8)
    return _crop(np.dstack([rgb, alpha]))


def _key_plain_background(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h < 3 or w < 3:
        raise InvalidInput(f"product image is {w}x{h} pixels; it needs at least 3x3")
    border = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]]).astype(np.int16)
    key = np.median(border, axis=0)
    border_is_key = np.abs(border - key).max(axis=-1) <= KEY_TOLERANCE
    if border_is_key.mean() < PLAIN_BORDER_SHARE:
        raise InvalidInput(
            "product image has no transparency and no plain background (its border is not one colour); "
            "give an RGBA cut-out or the product on a plain background"
        )
    near_key = np.abs(rgb.astype(np.int16) - key).max(axis=-1) <= KEY_TOLERANCE
    _, labels = cv2.connectedComponents(near_key.astype(np.uint8), connectivity=4)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    foreground = ~(near_key & np.isin(labels, edge[edge > 0]))
    if not foreground.any():
        raise InvalidInput("product image is one plain colour; there is no product in it")
    return foreground


def _crop(rgba: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(rgba[..., 3].any(axis=1))
    cols = np.flatnonzero(rgba[..., 3].any(axis=0))
    return np.ascontiguousarray(rgba[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])


def inpaint_mask(product_mask: np.ndarray, dilation: int) -> np.ndarray:
    """The region to repaint (uint8, 255 = repaint): the background dilated by a dilation x dilation box.

    Growing the background into the product's rim lets the model blend the edge; the product's
    pixels are pasted back afterwards, so the rim it repaints never reaches the output.
    """
    background = (~product_mask.astype(bool)).astype(np.uint8)
    if dilation > 0:
        background = cv2.dilate(background, np.ones((dilation, dilation), np.uint8))
    return background * np.uint8(255)


def canny_control(foreground: np.ndarray, product_mask: np.ndarray, low: int, high: int) -> np.ndarray:
    """The ControlNet condition: canny edges of the product foreground, white on black, 3 channels.

    `foreground` is the product composited on black. Edges of its grey levels give the product's
    inner lines; edges of the mask give its outline even where the product is as dark as the black.
    """
    gray = cv2.cvtColor(np.ascontiguousarray(foreground[..., :3]), cv2.COLOR_RGB2GRAY)
    silhouette = product_mask.astype(np.uint8) * np.uint8(255)
    edges = cv2.Canny(gray, low, high) | cv2.Canny(silhouette, low, high)
    return np.repeat(edges[..., None], 3, axis=-1)
