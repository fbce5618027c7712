"""The diffusers renderer: Stable Diffusion inpainting with a canny ControlNet (CAIG's PCIG settings).

Per image: the cut-out is composed on a black canvas (scaled to at most product_scale, centred);
the control image is the canny edge map of that foreground; the mask repaints the background
dilated into the product's rim; Euler ancestral samples the background; the product is composed
back onto the result with style.compose, so its opaque pixels are exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from osmf_jobs import style
from osmf_jobs.render.base import Renderer
from osmf_jobs.render.product import canny_control, inpaint_mask
from osmf_jobs.runtime import InvalidInput

# ControlNet's own default; the inpaint pipeline's 0.5 lets the background drift over the outline.
CONTROLNET_CONDITIONING_SCALE = 1.0


def default_device_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA in bf16 (fp16 where bf16 is missing) when there is a GPU, else CPU in fp32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.device("cpu"), torch.float32


class DiffusersRenderer(Renderer):
    """Renders through a loaded StableDiffusionControlNetInpaintPipeline (see models.load_pipeline)."""

    def __init__(self, rendering: Any, pipeline: Any, batch_size: int = 8):
        super().__init__(rendering)
        from diffusers import EulerAncestralDiscreteScheduler

        if self.size % 8:
            raise InvalidInput(f"rendering.size {self.size} must be a multiple of 8 for the diffusers backend")
        self.steps = int(rendering.steps)
        self.guidance_scale = float(rendering.guidance_scale)
        self.canny_low, self.canny_high = int(rendering.canny_low), int(rendering.canny_high)
        self.mask_dilation = int(rendering.mask_dilation)
        self.batch_size = int(batch_size)
        pipeline.scheduler = EulerAncestralDiscreteScheduler.from_config(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        if pipeline.device.type == "cuda":
            for module in (pipeline.unet, pipeline.controlnet, pipeline.vae):
                module.to(memory_format=torch.channels_last)
        self.pipeline = pipeline

    def generate(self, cutouts: list[np.ndarray], prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        """The raw sampled images (size x size x 3 uint8), before the product is pasted back."""
        out: list[np.ndarray] = []
        for start in range(0, len(prompts), self.batch_size):
            end = start + self.batch_size
            out.extend(self._generate(cutouts[start:end], prompts[start:end], seeds[start:end]))
        return out

    def _generate(self, cutouts: list[np.ndarray], prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        black = np.zeros((self.size, self.size, 3), np.uint8)
        conditions: dict[int, tuple[Image.Image, Image.Image, Image.Image]] = {}
        for cutout in cutouts:
            if id(cutout) not in conditions:
                foreground, mask = style.compose(cutout, black, self.product_scale)
                conditions[id(cutout)] = (
                    Image.fromarray(foreground),
                    Image.fromarray(inpaint_mask(mask, self.mask_dilation)),
                    Image.fromarray(canny_control(foreground, mask, self.canny_low, self.canny_high)),
                )
        images, masks, controls = zip(*(conditions[id(c)] for c in cutouts))
        # CPU generators: the same seed gives the same noise on any device.
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        with torch.inference_mode():
            result = self.pipeline(
                prompt=prompts, image=list(images), mask_image=list(masks), control_image=list(controls),
                height=self.size, width=self.size, strength=1.0, num_inference_steps=self.steps,
                guidance_scale=self.guidance_scale, controlnet_conditioning_scale=CONTROLNET_CONDITIONING_SCALE,
                generator=generators, output_type="np",
            )
        return [np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8) for image in result.images]

    def _render(self, cutouts: list[np.ndarray], prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        generated = self.generate(cutouts, prompts, seeds)
        return [Image.fromarray(style.compose(c, g, self.product_scale)[0]) for c, g in zip(cutouts, generated)]
