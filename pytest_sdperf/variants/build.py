"""Worker-side assembly: run a variant's loader and transforms, then call the pipeline."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..measure.latency import StageClock
from .base import BuildContext, Pipeline
from .registry import resolve_ref
from .task import call_kwargs, for_task, init_image, input_digest

DEFAULT_LOADER = "pytest_sdperf.variants.torch_family:load_torch"


def build_pipeline(variant: Mapping[str, Any], ctx: BuildContext) -> Pipeline:
    """Load with the variant's loader (default: PyTorch float32), apply its transforms."""
    loader = resolve_ref(variant.get("loader") or DEFAULT_LOADER)
    pipeline: Pipeline = loader(ctx)
    for_task(pipeline, ctx)
    for ref in variant.get("transforms", ()):
        resolve_ref(ref)(pipeline, ctx)
    record_tf32(pipeline, ctx)
    return pipeline


def record_tf32(pipeline: Pipeline, ctx: BuildContext) -> None:
    """On CUDA, which float32 operations may run on TF32 tensor cores (``info["tf32"]``):
    PyTorch allows it for cuDNN convolutions by default, for matmuls when asked
    (``allow_tf32``, ``set_float32_matmul_precision``). The efficiency figure then holds the
    variant to the TF32 peak, not the strict float32 one it can exceed."""
    info = pipeline.info
    if not ctx.device.startswith("cuda") or info.get("ov_precision") or \
            str(info.get("dtype") or "float32") != "float32":
        return
    import torch

    ops = [name for name, on in (("convolutions", torch.backends.cudnn.allow_tf32),
                                 ("matmuls", torch.backends.cuda.matmul.allow_tf32)) if on]
    if ops:
        info["tf32"] = " and ".join(ops)


def sync_fn(device: str) -> Callable[[], None]:
    """A barrier that waits for queued GPU work, so timings cover it."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def initial_latents(pipe: Any, ctx: BuildContext) -> Any:
    """The workload's initial noise as float32 numpy, from the seed, the same in every worker."""
    import numpy as np

    wl = ctx.workload
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    channels = int(pipe.unet.config.in_channels) if hasattr(pipe, "unet") else 4
    shape = (wl.images_per_prompt, channels, wl.height // scale, wl.width // scale)
    return np.random.default_rng(wl.seed).standard_normal(shape, dtype=np.float32)


def make_generate(
    pipeline: Pipeline, ctx: BuildContext, clock: StageClock
) -> tuple[Callable[[], Any], str]:
    """A no-argument call producing float images (N, H, W, 3), and the latents' sha256."""
    import numpy as np

    wl = ctx.workload
    latents_np = initial_latents(pipeline.pipe, ctx)
    image = init_image(wl)
    digest = input_digest(wl, latents_np, image)
    latents = (pipeline.prepare_latents or _as_torch)(latents_np, pipeline, ctx)
    if pipeline.generate is not None:
        custom = pipeline.generate

        def generate_custom() -> Any:
            with pipeline.entered():
                return np.asarray(custom(pipeline, wl, latents))

        return generate_custom, digest

    def generate() -> Any:
        kwargs = call_kwargs(wl, latents, image)
        kwargs.update(output_type="np", callback_on_step_end=clock.on_step_end)
        kwargs.update(pipeline.call_kwargs)
        with pipeline.entered():
            clock.begin()
            out = pipeline.pipe(**kwargs)
        return np.asarray(out.images, dtype=np.float32)

    return generate, digest


def _as_torch(latents: Any, pipeline: Pipeline, ctx: BuildContext) -> Any:
    import torch

    tensor = torch.from_numpy(latents)
    if pipeline.backend != "torch":
        return tensor
    unet = getattr(pipeline.pipe, "unet", None)
    dtype = getattr(unet, "dtype", torch.float32)
    device = ctx.device if not pipeline.info.get("offload") else "cpu"
    return tensor.to(device=device, dtype=dtype)


