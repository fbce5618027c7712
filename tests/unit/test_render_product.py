"""Pure PCIG helpers: the product cut-out, the inpainting mask, the canny control image."""

import numpy as np
import pytest
from PIL import Image

from osmf_jobs.render.product import canny_control, inpaint_mask, product_cutout
from osmf_jobs.runtime import InvalidInput


def _on_plain(background=(255, 255, 255), size=(40, 32)) -> np.ndarray:
    """A red box with a background-coloured hole in its middle, on a plain background."""
    h, w = size
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = background
    rgb[8:32, 6:26] = (200, 30, 30)
    rgb[16:24, 12:20] = background  # enclosed: part of the product, not the background
    return rgb


def test_cutout_of_a_product_on_a_plain_background_keeps_enclosed_background_colour():
    cutout = product_cutout(Image.fromarray(_on_plain()))
    assert cutout.shape == (24, 20, 4)  # cropped to the box
    assert (cutout[..., 3] == 255).all()  # the hole is enclosed, so it stays opaque
    assert (cutout[8:16, 6:14, :3] == 255).all() and (cutout[0, 0, :3] == (200, 30, 30)).all()


def test_cutout_keys_out_a_slightly_noisy_plain_background():
    rng = np.random.default_rng(0)
    rgb = _on_plain((240, 240, 240)).astype(np.int16)
    rgb[rgb[..., 1] == 240] += rng.integers(-6, 7, size=(rgb[..., 1] == 240).sum())[:, None]
    cutout = product_cutout(Image.fromarray(rgb.clip(0, 255).astype(np.uint8)))
    assert cutout.shape[:2] == (24, 20)


def test_cutout_keeps_soft_alpha_and_crops_to_visible_pixels():
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[10:30, 15:35] = (10, 20, 30, 255)
    rgba[9, 15:35, 3] = 100  # a soft rim row
    rgba[0, 0, :3] = 99  # colour under alpha 0 does not count as visible
    cutout = product_cutout(Image.fromarray(rgba, "RGBA"))
    assert cutout.shape == (21, 20, 4)
    assert (cutout[0, :, 3] == 100).all() and (cutout[1:, :, 3] == 255).all()


def test_cutout_of_an_opaque_rgba_image_keys_its_plain_background():
    rgb = _on_plain()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert product_cutout(Image.fromarray(rgba, "RGBA")).shape[:2] == (24, 20)


@pytest.mark.parametrize("make, message", [
    (lambda: Image.new("RGBA", (16, 16), (50, 60, 70, 0)), "fully transparent"),
    (lambda: Image.new("RGB", (16, 16), (50, 60, 70)), "one plain colour"),
    (lambda: Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)),
     "no plain background"),
    (lambda: Image.new("RGB", (2, 2)), "at least 3x3"),
])
def test_cutout_rejects_images_without_usable_alpha_or_background(make, message):
    with pytest.raises(InvalidInput, match=message):
        product_cutout(make())


def test_inpaint_mask_is_the_background_dilated_into_the_product():
    product = np.zeros((64, 64), bool)
    product[20:44, 20:44] = True
    assert ((inpaint_mask(product, 0) == 255) == ~product).all()
    mask = inpaint_mask(product, 20)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    kept = mask == 0
    # A 20x20 box anchored at its centre reaches 10 pixels up/left and 9 down/right into the product.
    rows, cols = np.flatnonzero(kept.any(axis=1)), np.flatnonzero(kept.any(axis=0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (30, 34, 30, 34)
    assert kept.sum() == 5 * 5


def test_inpaint_mask_of_a_small_product_repaints_everything():
    product = np.zeros((32, 32), bool)
    product[14:18, 14:18] = True
    assert (inpaint_mask(product, 20) == 255).all()


def _box_on_black(value=(200, 200, 200), stripe=None):
    foreground = np.zeros((64, 64, 3), np.uint8)
    foreground[16:48, 16:48] = value
    if stripe is not None:
        foreground[30:34, 16:48] = stripe
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    return foreground, mask


def test_canny_control_outlines_the_product_and_nothing_else():
    foreground, mask = _box_on_black()
    control = canny_control(foreground, mask, 100, 200)
    assert control.shape == (64, 64, 3) and control.dtype == np.uint8
    assert (control[..., 0] == control[..., 1]).all() and set(np.unique(control)) == {0, 255}
    edges = control[..., 0] > 0
    near_outline = np.zeros_like(mask)
    near_outline[14:50, 14:50] = True
    near_outline[19:45, 19:45] = False
    assert edges.any() and not (edges & ~near_outline).any()
    assert edges[14:50, 14:19].any() and edges[14:50, 45:50].any()  # left and right sides


def test_canny_control_outlines_a_product_as_dark_as_the_canvas():
    foreground, mask = _box_on_black(value=(0, 0, 0))
    edges = canny_control(foreground, mask, 100, 200)[..., 0] > 0
    assert edges[14:50, 14:19].any() and edges[14:19, 14:50].any()


def test_canny_thresholds_decide_which_inner_lines_count():
    # A stripe of grey 200 -> 150 across the product: Sobel (L1) magnitude 200 at its edges, above
    # the low threshold and joined to the strong outline by hysteresis; below a low threshold of 250.
    foreground, mask = _box_on_black(stripe=(150, 150, 150))
    inner = (slice(26, 38), slice(22, 42))
    low = canny_control(foreground, mask, 100, 200)[inner][..., 0]
    high = canny_control(foreground, mask, 250, 255)[inner][..., 0]
    assert low.any() and not high.any()
