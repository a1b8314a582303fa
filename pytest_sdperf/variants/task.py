"""What one call of a pipeline gets, by the workload's task.

``txt2img`` starts every variant from the same initial latents (``build.initial_latents``).
``img2img`` (diffusers' image-to-image pipeline built from the same components; optimum-intel's
for OpenVINO) starts from an init image: the user's file (marker ``init_image``) or one made
from the workload's seed, the same in every worker. Its noise (the VAE's latent sample and the
noise added at ``strength``) comes from a CPU ``torch.Generator`` seeded afresh for every call,
so every call and every variant draws the same noise: float32, bfloat16 and float16 draws from
one seed agree to the last bit of the narrower type, and OpenVINO's pipeline runs diffusers'
own ``__call__``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
from typing import Any

from ..workload import Workload
from .base import BuildContext, Pipeline, SkipVariant

GRID = 8  # the made init image: an 8x8 grid of seeded colours, upsampled (smooth, photo-like)


@functools.lru_cache(maxsize=4)
def init_image(wl: Workload) -> Any:
    """The init image of an img2img workload as an RGB PIL image of the workload's size (made
    or read once per workload: callers pass it to every call), None for text-to-image."""
    if wl.task != "img2img":
        return None
    import numpy as np
    from PIL import Image

    size = (wl.width, wl.height)
    if wl.init_image:
        with Image.open(wl.init_image) as img:
            rgb = img.convert("RGB")
        return rgb if rgb.size == size else rgb.resize(size, Image.Resampling.LANCZOS)
    grid = np.random.default_rng(wl.seed).integers(0, 256, (GRID, GRID, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)


def call_kwargs(wl: Workload, latents: Any, image: Any, steps: int | None = None) -> dict[str, Any]:
    """The workload's keyword arguments for one pipeline call (no output type, no callback).

    ``steps`` replaces the workload's steps (a short priming call).
    """
    kwargs: dict[str, Any] = {
        "prompt": wl.prompt,
        "negative_prompt": wl.negative_prompt,
        "num_inference_steps": wl.steps if steps is None else steps,
        "num_images_per_prompt": wl.images_per_prompt,
        "guidance_scale": wl.guidance_scale,
    }
    if wl.task == "img2img":
        import torch

        kwargs.update(image=image, strength=wl.strength,
                      generator=torch.Generator("cpu").manual_seed(wl.seed))
    else:
        kwargs.update(height=wl.height, width=wl.width, latents=latents)
    return kwargs


def priming_steps(wl: Workload, steps: int = 2) -> int:
    """Steps for a short priming call that still runs ``steps`` denoising steps' shapes: an
    img2img call runs ``int(steps * strength)`` of the steps it is given."""
    if wl.task != "img2img":
        return steps
    return max(steps, math.ceil(steps / wl.strength))


def input_digest(wl: Workload, latents: Any, image: Any) -> str:
    """sha256 of what a call starts from (the latents; for img2img the init image's pixels
    with the seed and strength), to prove every variant got the same input."""
    if wl.task != "img2img":
        return hashlib.sha256(latents.tobytes()).hexdigest()
    import numpy as np

    digest = hashlib.sha256(np.asarray(image).tobytes())
    digest.update(f"seed={wl.seed} strength={wl.strength}".encode())
    return digest.hexdigest()


def takes_image(pipe: Any) -> bool:
    """Whether ``pipe``'s call names an init image (an image-to-image pipeline)."""
    try:
        return "image" in inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        return False


def for_task(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Turn a loader's text-to-image pipeline into the workload's task, in place.

    A PyTorch pipeline becomes diffusers' image-to-image pipeline over the same components
    (``AutoPipelineForImage2Image.from_pipe``: no weights are copied), before any transform,
    so transforms (scheduler, token merging, VAE slicing, compile) apply to it as to the
    text-to-image one. A loader may build the image-to-image pipeline itself and say so with
    ``info["task"] = "img2img"`` (the OpenVINO loader does: optimum's call takes ``**kwargs``);
    any other pipeline skips, saying why.
    """
    if ctx.workload.task != "img2img" or pipeline.info.get("task") == "img2img":
        return
    if takes_image(pipeline.pipe):
        pipeline.info["task"] = "img2img"
        return
    if pipeline.backend != "torch":
        raise SkipVariant(f"{ctx.variant}: its loader built a {type(pipeline.pipe).__name__}, "
                          "which takes no init image; task='img2img' needs the loader to build "
                          "an image-to-image pipeline when ctx.workload.task is 'img2img'")
    from diffusers import AutoPipelineForImage2Image

    auto: Any = AutoPipelineForImage2Image  # diffusers is untyped
    try:
        pipe = auto.from_pipe(pipeline.pipe)
    except ValueError as exc:
        raise SkipVariant(f"{ctx.variant}: diffusers has no image-to-image pipeline for "
                          f"{type(pipeline.pipe).__name__} ({exc})") from None
    pipe.set_progress_bar_config(disable=True)
    pipeline.pipe = pipe
    pipeline.info["task"] = "img2img"
