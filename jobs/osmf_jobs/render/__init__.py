"""Renderers shared by the Group-DPO and campaign jobs (DESIGN §6, PCIG).

    renderer = make_renderer(spec.rendering)        # models load here, once
    image = renderer.render(product_rgba, prompt, seed=3)
    images = renderer.render_batch(product_rgba, prompts, seeds)

`procedural` paints the background from the prompt's style words on the CPU; `diffusers` samples
it with Stable Diffusion inpainting and a canny ControlNet. Both keep the product's pixels.
torch and diffusers are imported only for the diffusers backend.
"""

from __future__ import annotations

from typing import Any

from osmf_jobs.render.base import ProceduralRenderer, Renderer
from osmf_jobs.render.product import canny_control, inpaint_mask, product_cutout
from osmf_jobs.runtime import InvalidInput

__all__ = ["Renderer", "ProceduralRenderer", "make_renderer", "product_cutout", "inpaint_mask", "canny_control"]


def make_renderer(rendering: Any, *, device: Any = None, batch_size: int = 8) -> Renderer:
    """The renderer for a RenderingSpec; for `diffusers`, loads the models once onto `device`
    (default: CUDA in bf16 when available, else CPU in fp32). Downloaded and built-in models are
    kept in the node's model cache (`osmf_jobs.model_dirs`)."""
    if rendering.backend == "procedural":
        return ProceduralRenderer(rendering)
    if rendering.backend != "diffusers":
        raise InvalidInput(f"rendering.backend {rendering.backend!r} is unknown; use diffusers or procedural")
    for field, uri in (("modelUri", rendering.model_uri), ("controlnetUri", rendering.controlnet_uri)):
        if not uri:
            raise InvalidInput(f"rendering.{field} is required by the diffusers backend")
    import torch

    from osmf_jobs.render.inpaint import DiffusersRenderer, default_device_dtype
    from osmf_jobs.render.models import load_pipeline

    default_device, dtype = default_device_dtype()
    device = torch.device(device) if device is not None else default_device
    if device.type == "cpu":
        dtype = torch.float32
    pipeline = load_pipeline(rendering.model_uri, rendering.controlnet_uri, device=device, dtype=dtype)
    return DiffusersRenderer(rendering, pipeline, batch_size=batch_size)
