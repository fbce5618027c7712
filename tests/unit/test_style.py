"""The style vocabulary: painter determinism, exact product pixels, probe inverts the painter."""

import itertools

import numpy as np
import pytest

from osmf_jobs import style as S


def _product(rng: np.random.Generator, h: int = 40, w: int = 30) -> np.ndarray:
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = rng.integers(0, 256, (h, w, 3))
    rgba[4:h - 4, 3:w - 3, 3] = 255
    rgba[2:4, 3:w - 3, 3] = 128  # a soft edge
    return rgba


def test_vocabulary_is_the_product_of_the_axes():
    styles = S.Style.all()
    assert len(styles) == 6 * 5 * 3 * 4 == len(set(styles))
    assert [s.index for s in styles] == list(range(len(styles)))
    assert all(S.Style.from_index(s.index) == s for s in styles)
    assert all(s.one_hot().sum() == 4 for s in styles[:10])
    with pytest.raises(ValueError, match="palette 'purple'"):
        S.Style("purple", "striped", "bright", "calm")


def test_paint_background_is_deterministic_by_seed():
    st = S.Style("cool", "dotted", "soft", "festive")
    a, b = S.paint_background(st, 64, 7), S.paint_background(st, 64, 7)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, S.paint_background(st, 64, 8))


def test_compose_centres_and_keeps_product_pixels_exactly():
    rng = np.random.default_rng(0)
    small = _product(rng, 20, 16)
    bg = S.paint_background(S.Style.default(), 64, 0)
    img, mask = S.compose(small, bg)
    top, left = (64 - 20) // 2, (64 - 16) // 2
    region = img[top:top + 20, left:left + 16]
    opaque = small[..., 3] == 255
    assert np.array_equal(region[opaque], small[..., :3][opaque])
    assert mask.sum() == (small[..., 3] > 0).sum()
    assert np.array_equal(img[~mask], bg[~mask])
    # A large cut-out is scaled to <= 0.78 of the canvas.
    img, mask = S.compose(_product(rng, 200, 120), bg)
    ys, xs = np.nonzero(mask)
    assert ys.max() - ys.min() + 1 <= int(0.78 * 64)
    with pytest.raises(ValueError, match="scale"):
        S.compose(small, bg, scale=0.9)


def test_compose_keys_out_a_plain_product_background():
    prod = np.full((20, 20, 3), 250, np.uint8)
    prod[5:15, 5:15] = (10, 20, 30)
    img, mask = S.compose(prod, S.paint_background(S.Style.default(), 64, 0))
    assert mask.sum() == 100
    assert (img[mask] == (10, 20, 30)).all()


@pytest.mark.parametrize("size", [48, 64])
def test_probe_inverts_the_painter_over_the_whole_vocabulary(size):
    rng = np.random.default_rng(size)
    wrong = []
    for st, seed in itertools.product(S.Style.all(), (1, 2)):
        img, _ = S.compose(_product(rng), S.paint_background(st, size, seed * 7919 + st.index))
        got = S.probe(img)
        if got != st:
            wrong.append((st, got))
    assert wrong == []


def test_probe_reads_large_images():
    for st in S.Style.all()[::17]:
        assert S.probe(S.paint_background(st, 256, 3)) == st


def test_palette_lighting_pairs_are_well_separated():
    pairs = [(p, li, np.asarray(a) * f, np.asarray(b) * f)
             for p, (a, b) in S.PALETTES.items() for li, f in S.LIGHTING.items()]
    closest = min(S._pair_distance(x[2], x[3], y[2], y[3]) for x, y in itertools.combinations(pairs, 2))
    assert closest > 40


def test_caption_and_parse_prompt_round_trip():
    for st in S.Style.all()[::7]:
        text = S.caption(st)
        assert S.parse_prompt(text) == st
    assert S.caption(S.Style("warm", "striped", "bright", "energetic")) == (
        "warm palette, striped backdrop, bright lighting, energetic mood")
    got = S.parse_prompt("A serene scene with polka dots in dark, cool tones")
    assert got == S.Style("cool", "dotted", "dim", "calm")
    base = S.Style("earthy", "wavy", "soft", "playful")
    assert S.parse_prompt("nothing relevant here", default=base) == base
