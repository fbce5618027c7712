"""Captioners: the deterministic probe, and a vision-language model loaded by path."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from osmf_jobs import style as S
from osmf_jobs.caption import ProbeCaptioner, VLMCaptioner, make_captioner
from osmf_jobs.runtime import InvalidInput


def _creative(st: S.Style, seed: int) -> Image.Image:
    product = np.zeros((30, 24, 4), np.uint8)
    product[..., :3] = 90
    product[..., 3] = 255
    pixels, _ = S.compose(product, S.paint_background(st, 64, seed))
    return Image.fromarray(pixels)


def test_probe_captions_the_background():
    styles = S.Style.all()[::41]
    captioner = make_captioner(SimpleNamespace(kind="probe", uri=None, prompt=""))
    assert isinstance(captioner, ProbeCaptioner)
    assert captioner.caption([_creative(st, i) for i, st in enumerate(styles)]) == [S.caption(st) for st in styles]


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    from osmf_jobs.gmodel.model import build_tiny_llava

    path = tmp_path_factory.mktemp("tiny-vlm")
    words = ["describe", "the", "background", "palette", "lighting", "mood", *[w for ws in S.AXES.values() for w in ws]]
    model, processor = build_tiny_llava(words, seed=0)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_vlm_captioner_runs_a_model_loaded_by_path(tiny_vlm):
    spec = SimpleNamespace(kind="vlm", uri=tiny_vlm.as_uri(), prompt="describe the background palette lighting mood")
    captioner = make_captioner(spec)
    assert isinstance(captioner, VLMCaptioner)
    images = [_creative(st, i) for i, st in enumerate(S.Style.all()[:3])]
    captions = captioner.caption(images)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert captioner.caption(images[:1]) == captions[:1]  # greedy: deterministic


def test_vlm_uri_that_is_not_a_model_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="spec.captioner.uri: .*nope does not exist"):
        make_captioner(SimpleNamespace(kind="vlm", uri=(tmp_path / "nope").as_uri(), prompt="x"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="spec.captioner.uri: .*empty has no config.json; give a vision-language model"):
        make_captioner(SimpleNamespace(kind="vlm", uri=str(tmp_path / "empty"), prompt="x"))
