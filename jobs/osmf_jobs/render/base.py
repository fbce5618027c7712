"""The renderer interface and the procedural renderer (no torch)."""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np
from PIL import Image

from osmf_jobs import style
from osmf_jobs.render.product import product_cutout


class Renderer(abc.ABC):
    """Paints a background for a prompt around a fixed product; the product's pixels are kept exactly.

    `rendering` is the RenderingSpec (or any object with its attributes).
    """

    def __init__(self, rendering: Any):
        # RenderingSpec bounds productScale to CAIG's 0.78, which keeps the probe's border ring free.
        self.size = int(rendering.size)
        self.seed = int(rendering.seed)
        self.product_scale = float(rendering.product_scale)

    def render(self, product: Image.Image, prompt: str, seed: int | None = None) -> Image.Image:
        """One size x size RGB image; the same (product, prompt, seed) gives the same pixels."""
        return self.render_batch(product, [prompt], [self.seed if seed is None else seed])[0]

    def render_batch(self, product: Image.Image | Sequence[Image.Image], prompts: Sequence[str],
                     seeds: Sequence[int] | None = None) -> list[Image.Image]:
        """One image per prompt. `product` is one image for all prompts or one per prompt; seeds
        default to rendering.seed + i, so candidates for the same prompt differ."""
        products = [product] * len(prompts) if isinstance(product, Image.Image) else list(product)
        seeds = [self.seed + i for i in range(len(prompts))] if seeds is None else [int(s) for s in seeds]
        if not len(products) == len(prompts) == len(seeds):
            raise ValueError(f"{len(products)} products, {len(prompts)} prompts and {len(seeds)} seeds do not pair up")
        cutouts: dict[int, np.ndarray] = {}  # the same product object is cut out once
        for image in products:
            if id(image) not in cutouts:
                cutouts[id(image)] = product_cutout(image)
        return self._render([cutouts[id(image)] for image in products], list(prompts), seeds)

    @abc.abstractmethod
    def _render(self, cutouts: list[np.ndarray], prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        """Render validated RGBA cut-outs."""


class ProceduralRenderer(Renderer):
    """The background painted from the prompt's style words (style.parse_prompt -> paint_background)."""

    def _render(self, cutouts: list[np.ndarray], prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        images = []
        for cutout, prompt, seed in zip(cutouts, prompts, seeds):
            background = style.paint_background(style.parse_prompt(prompt), self.size, seed)
            image, _ = style.compose(cutout, background, self.product_scale)
            images.append(Image.fromarray(image))
        return images
