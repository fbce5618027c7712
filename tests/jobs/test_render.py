"""Renderers end to end on tiny sizes: product pixels exact, size and seed honoured, models by URI."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from osmf_core.api import RenderingSpec
from osmf_core.store import FileStore
from osmf_jobs import style
from osmf_jobs.model_dirs import MODEL_CACHE_ENV
from osmf_jobs.render import ProceduralRenderer, make_renderer, product_cutout
from osmf_jobs.runtime import InvalidInput

PROMPT = "cool palette, striped backdrop, dim lighting, calm mood"
TINY = {"backend": "diffusers", "size": 64, "steps": 2, "model_uri": "builtin:tiny-sd",
        "controlnet_uri": "builtin:tiny-controlnet"}


def tiny_spec(**fields) -> RenderingSpec:
    return RenderingSpec(**(TINY | fields))


@pytest.fixture(scope="module")
def product() -> Image.Image:
    """An RGBA cut-out with texture, a soft rim, and a size that compose must scale down at 64 px."""
    rng = np.random.default_rng(7)
    rgba = np.zeros((70, 52, 4), np.uint8)
    rgba[..., :3] = rng.integers(0, 256, (70, 52, 3))
    rgba[3:67, 3:49, 3] = 255
    rgba[1:3, 3:49, 3] = 90
    return Image.fromarray(rgba, "RGBA")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """This module's model cache (`$OSMF_MODEL_CACHE`), where the built-in models are saved."""
    with pytest.MonkeyPatch.context() as env:
        path = tmp_path_factory.mktemp("render-cache")
        env.setenv(MODEL_CACHE_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def tiny(cache_dir):
    return make_renderer(tiny_spec())


def _opaque(cutout: np.ndarray, size: int, scale: float = 0.78) -> np.ndarray:
    """Pixels where the composed cut-out is fully opaque: composing over black and white agrees."""
    black, _ = style.compose(cutout, np.zeros((size, size, 3), np.uint8), scale)
    white, _ = style.compose(cutout, np.full((size, size, 3), 255, np.uint8), scale)
    return (black == white).all(axis=-1)


def _assert_product_kept(image: Image.Image, product: Image.Image, size: int) -> None:
    cutout = product_cutout(product)
    expected, mask = style.compose(cutout, np.zeros((size, size, 3), np.uint8), 0.78)
    opaque = _opaque(cutout, size)
    assert opaque.sum() > 0.25 * mask.sum()
    assert (np.asarray(image)[opaque] == expected[opaque]).all()


# ---- procedural -------------------------------------------------------------------------------


def test_procedural_paints_the_prompt_style_around_the_exact_product(product):
    renderer = make_renderer(RenderingSpec(backend="procedural", size=64))
    assert isinstance(renderer, ProceduralRenderer)
    image = renderer.render(product, PROMPT, seed=3)
    assert image.size == (64, 64) and image.mode == "RGB"
    wanted = style.Style("cool", "striped", "dim", "calm")
    background = style.paint_background(wanted, 64, 3)
    assert (np.asarray(image) == style.compose(product_cutout(product), background)[0]).all()
    assert style.probe(image) == wanted
    _assert_product_kept(image, product, 64)


def test_procedural_honours_size_and_seed(product):
    renderer = make_renderer(RenderingSpec(backend="procedural", size=96, seed=5))
    first = np.asarray(renderer.render(product, PROMPT))
    assert first.shape == (96, 96, 3)
    assert (first == np.asarray(renderer.render(product, PROMPT, seed=5))).all()
    assert (first != np.asarray(renderer.render(product, PROMPT, seed=6))).any()
    _assert_product_kept(Image.fromarray(first), product, 96)


def test_render_batch_pairs_products_prompts_and_seeds(product):
    renderer = make_renderer(RenderingSpec(backend="procedural", size=64, seed=10))
    plain = Image.fromarray(np.pad(np.full((20, 20, 3), 40, np.uint8), ((6, 6), (6, 6), (0, 0)), constant_values=255))
    images = renderer.render_batch([product, plain], ["warm palette", "fresh palette"])
    assert [np.asarray(i).tolist() for i in images] == [
        np.asarray(renderer.render(product, "warm palette", seed=10)).tolist(),
        np.asarray(renderer.render(plain, "fresh palette", seed=11)).tolist(),
    ]
    with pytest.raises(ValueError, match="pair up"):
        renderer.render_batch(product, ["a", "b"], seeds=[1])


def test_bad_product_and_scale_are_invalid_input(product):
    with pytest.raises(InvalidInput, match="fully transparent"):
        make_renderer(RenderingSpec(backend="procedural", size=64)).render(Image.new("RGBA", (8, 8)), PROMPT)
    # The spec itself refuses a product larger than CAIG's 0.78 of the canvas.
    with pytest.raises(ValueError, match="product_scale"):
        RenderingSpec(backend="procedural", product_scale=0.9)


# ---- diffusers (tiny random models) -----------------------------------------------------------


def test_diffusers_pastes_the_product_back_exactly(tiny, product):
    cutout = product_cutout(product)
    image = tiny.render(product, PROMPT, seed=1)
    assert image.size == (64, 64) and image.mode == "RGB"
    _assert_product_kept(image, product, 64)
    raw = tiny.generate([cutout], [PROMPT], [1])[0]
    # The whole output is the cut-out composed over what the model painted (the soft rim blends).
    assert (np.asarray(image) == style.compose(cutout, raw)[0]).all()
    # The VAE alone changes product pixels, so without the paste-back this test would fail.
    assert (raw[_opaque(cutout, 64)] != np.asarray(image)[_opaque(cutout, 64)]).any()


def test_diffusers_same_seed_same_image_other_seed_or_prompt_differs(tiny, product):
    first = np.asarray(tiny.render(product, PROMPT, seed=1)).astype(int)
    assert (first == np.asarray(tiny.render(product, PROMPT, seed=1))).all()
    background = ~style.compose(product_cutout(product), np.zeros((64, 64, 3), np.uint8))[1]
    other_seed = np.asarray(tiny.render(product, PROMPT, seed=2)).astype(int)
    other_prompt = np.asarray(tiny.render(product, "warm palette, checkered backdrop", seed=1)).astype(int)
    assert np.abs(first - other_seed)[background].mean() > 5
    assert np.abs(first - other_prompt)[background].mean() > 0.5


def test_diffusers_batch_is_deterministic_and_matches_single_renders(tiny, product):
    prompts = [PROMPT, "warm palette"]
    batch = [np.asarray(i).astype(int) for i in tiny.render_batch(product, prompts, seeds=[1, 2])]
    again = [np.asarray(i).astype(int) for i in tiny.render_batch(product, prompts, seeds=[1, 2])]
    assert all((a == b).all() for a, b in zip(batch, again))
    single = np.asarray(tiny.render(product, "warm palette", seed=2)).astype(int)
    # Batched CPU kernels may round differently; the sampled noise per seed is the same.
    assert np.abs(batch[1] - single).max() <= 2


def test_diffusers_honours_size_with_the_models_loaded_once(tiny, product, monkeypatch):
    from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline

    from osmf_jobs.render.inpaint import DiffusersRenderer

    def refuse(*args, **kwargs):
        raise AssertionError("models must not be loaded again")

    monkeypatch.setattr(StableDiffusionControlNetInpaintPipeline, "from_pretrained", refuse)
    monkeypatch.setattr(ControlNetModel, "from_pretrained", refuse)
    small = DiffusersRenderer(tiny_spec(size=48), tiny.pipeline)
    image = small.render(product, PROMPT, seed=1)
    assert image.size == (48, 48)
    _assert_product_kept(image, product, 48)
    with pytest.raises(InvalidInput, match="multiple of 8"):
        DiffusersRenderer(tiny_spec(size=60), tiny.pipeline)


def test_diffusers_with_a_9_channel_inpainting_unet_keeps_the_product(product):
    from diffusers import StableDiffusionControlNetInpaintPipeline

    from osmf_jobs.render.inpaint import DiffusersRenderer
    from osmf_jobs.render.models import random_components

    pipeline = StableDiffusionControlNetInpaintPipeline(
        **random_components("tiny", inpainting_unet=True), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    renderer = DiffusersRenderer(tiny_spec(), pipeline)
    image = renderer.render(product, PROMPT, seed=4)
    _assert_product_kept(image, product, 64)
    assert (np.asarray(image) == np.asarray(renderer.render(product, PROMPT, seed=4))).all()


# ---- models by URI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_dirs(tiny, cache_dir):
    """The saved built-in models, as any pipeline and ControlNet directory would look."""
    entries = [p for p in (cache_dir / "builtin").iterdir() if p.is_dir()]  # beside them: .lock, .complete
    sd = next(p for p in entries if p.name.startswith("tiny-sd-"))
    cn = next(p for p in entries if p.name.startswith("tiny-controlnet-"))
    return sd, cn


def test_models_load_from_file_uris_and_render_like_the_builtin(tiny, builtin_dirs, tmp_path, product):
    sd, cn = builtin_dirs
    shutil.copytree(sd, tmp_path / "sd")
    shutil.copytree(cn, tmp_path / "cn")
    spec = tiny_spec(model_uri=(tmp_path / "sd").as_uri(), controlnet_uri=str(tmp_path / "cn"))
    renderer = make_renderer(spec)
    same = renderer.render(product, PROMPT, seed=1)
    assert (np.asarray(same) == np.asarray(tiny.render(product, PROMPT, seed=1))).all()


def test_remote_models_are_downloaded_once_into_the_cache(builtin_dirs, tmp_path, monkeypatch):
    import osmf_jobs.model_dirs as model_dirs

    sd, cn = builtin_dirs
    downloads = []

    class RemoteStore(FileStore):  # a store without local paths, as S3 is
        def local_path(self, rel=""):
            return None

        def download(self, rel, dest):
            downloads.append(self.uri)
            return super().download(rel, dest)

    monkeypatch.setattr(model_dirs, "open_store", lambda uri: RemoteStore(uri.removeprefix("s3://")))
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path))
    spec = tiny_spec(model_uri=f"s3://{sd}", controlnet_uri=f"s3://{cn}")
    for _ in range(2):
        make_renderer(spec)
    assert len(downloads) == 2  # one per model, not per renderer
    assert len([p for p in (tmp_path / "s3").iterdir() if p.is_dir()]) == 2


def test_unreadable_model_uris_are_one_line_invalid_input(builtin_dirs, tmp_path):
    def load(**fields):
        make_renderer(tiny_spec(**fields))

    sd, cn = builtin_dirs
    with pytest.raises(InvalidInput, match=r"modelUri: .*missing does not exist"):
        load(model_uri=str(tmp_path / "missing"), controlnet_uri=str(cn))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="has no model_index.json"):
        load(model_uri=str(tmp_path / "empty"), controlnet_uri=str(cn))
    broken = tmp_path / "broken"
    shutil.copytree(sd, broken)
    (broken / "unet" / "config.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="modelUri: cannot load") as error:
        load(model_uri=str(broken), controlnet_uri=str(cn))
    assert "\n" not in str(error.value)
    with pytest.raises(InvalidInput, match="only fits modelUri builtin:tiny-sd"):
        load(model_uri=str(sd))
    with pytest.raises(InvalidInput, match="unknown built-in model 'builtin:sd-xl'"):
        load(model_uri="builtin:sd-xl", controlnet_uri=str(cn))
    from diffusers import ControlNetModel

    config = {k: v for k, v in json.loads((cn / "config.json").read_text()).items() if not k.startswith("_")}
    ControlNetModel(**(config | {"cross_attention_dim": 64})).save_pretrained(tmp_path / "wide")
    with pytest.raises(InvalidInput, match="controlnetUri: .* width 64"):
        load(model_uri=str(sd), controlnet_uri=str(tmp_path / "wide"))


def test_builtin_models_build_identically_in_a_fresh_cache(builtin_dirs, tmp_path, monkeypatch):
    """Every pod builds its own built-in cache; the weights must not depend on which pod."""
    from osmf_jobs.render.models import TINY_CONTROLNET, TINY_SD, diffusers_dir

    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path))
    fresh = {
        name: diffusers_dir(uri, "modelUri", marker, uri)
        for name, uri, marker in (("sd", TINY_SD, "model_index.json"), ("cn", TINY_CONTROLNET, "config.json"))
    }
    for old, new in zip(builtin_dirs, (fresh["sd"], fresh["cn"])):
        weights = sorted(p.relative_to(old) for p in old.rglob("*.safetensors"))
        assert weights and weights == sorted(p.relative_to(new) for p in new.rglob("*.safetensors"))
        assert all((old / w).read_bytes() == (new / w).read_bytes() for w in weights)
