"""PyTorch pipeline-level variants: scheduler, token merging, VAE decoding, embeddings, offload.

Transforms on the float32 pipeline ``load_torch`` builds; they compose with the precision
variants (e.g. ``torch-bf16+dpm-solver+tome``).
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Callable, ContextManager, Iterator

from .base import DEFAULT_TOME_RATIO, BuildContext, Pipeline, SkipVariant, parse_tome_ratio
from .registry import VariantRegistry, VariantSpec
from .torch_family import TORCH_REQUIRES

MODULE = "pytest_sdperf.variants.torch_pipeline"


def apply_dpm_solver(pipeline: Pipeline, ctx: BuildContext) -> None:
    """DPMSolverMultistepScheduler from the model's scheduler config, at the workload's steps."""
    from diffusers import DPMSolverMultistepScheduler

    scheduler_cls: Any = DPMSolverMultistepScheduler  # diffusers is untyped
    pipe = pipeline.pipe
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    pipeline.info["scheduler"] = "DPMSolverMultistepScheduler"


def apply_tome(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Token merging (tomesd) before self-attention, ratio from setting ``tome_ratio`` (0.4).

    tomesd picks merge destinations at random from a generator it forks off torch's global
    RNG on first use and then advances call after call, so two identical runs (or two calls
    of one run) would merge differently. A context re-seeds it from the workload's seed
    before every call: every call, in every run, merges the same tokens.
    """
    import tomesd

    ratio = ctx.setting("tome_ratio", DEFAULT_TOME_RATIO, parse_tome_ratio)
    tomesd.apply_patch(pipeline.pipe, ratio=ratio)
    unet = pipeline.pipe.unet
    pipeline.contexts.append(seeded_tome_factory(unet, ctx.workload.seed))
    pipeline.info.update(tome_ratio=ratio)


def seeded_tome_factory(unet: Any, seed: int) -> Callable[[], ContextManager[None]]:
    """A factory of contexts that give tomesd a freshly seeded generator for one call."""

    @contextlib.contextmanager
    def seeded() -> Iterator[None]:
        import torch

        info = getattr(unet, "_tome_info", None)
        if info is not None:
            device = next(unet.parameters()).device
            gen = torch.Generator(device=device)
            info["args"]["generator"] = gen.manual_seed(seed)
        yield

    return seeded


def apply_vae_slicing(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Decode the batch one image at a time (saves memory only with 2+ images per prompt)."""
    pipeline.pipe.vae.enable_slicing()
    pipeline.info["vae_slicing"] = ctx.workload.images_per_prompt > 1


def parse_tile_px(text: str) -> int:
    """A VAE tile size in pixels: a positive multiple of 8."""
    value = int(text)
    if value < 8 or value % 8:
        raise ValueError("must be a positive multiple of 8")
    return value


def apply_vae_tiling(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Decode in overlapping tiles (setting ``vae_tile_px``).

    The VAE tiles only images larger than its tile (its ``sample_size``, 512 for SD 1.x);
    when the workload fits in one tile the default tile becomes half the image's shorter
    side, so the tiled path really runs (and is measured) on small workloads too.
    """
    vae = pipeline.pipe.vae
    vae.enable_tiling()
    wl = ctx.workload
    own = int(getattr(vae, "tile_sample_min_size", 0) or 0)
    fits = own >= max(wl.height, wl.width)
    default = max(8, min(wl.height, wl.width) // 2 // 8 * 8) if fits else own
    tile = ctx.setting("vae_tile_px", default, parse_tile_px)
    if hasattr(vae, "tile_sample_min_size") and hasattr(vae, "tile_latent_min_size"):
        scale = int(getattr(pipeline.pipe, "vae_scale_factor", 8) or 8)
        vae.tile_sample_min_size = tile
        vae.tile_latent_min_size = max(1, tile // scale)
    pipeline.info["vae_tile_px"] = tile


def apply_precomputed_embeds(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Encode the workload's prompts once, then drop the text encoders and tokenizers.

    Every call gets the embeddings through ``call_kwargs`` (prompt=None), so the memory the
    encoders held is gone from the measured peak, as in reference D. They are encoded for
    one image per prompt: the pipeline's call repeats given embeddings (negative and SDXL's
    pooled ones too) ``num_images_per_prompt`` times itself, so repeating them here as well
    made N*N rows against N latents.
    """
    import torch

    pipe, wl = pipeline.pipe, ctx.workload
    with pipeline.entered(), torch.no_grad():
        out = pipe.encode_prompt(
            prompt=wl.prompt, device=ctx.device, num_images_per_prompt=1,
            do_classifier_free_guidance=wl.guidance_scale > 1.0,
            negative_prompt=wl.negative_prompt,
        )
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
             "negative_pooled_prompt_embeds")
    kwargs: dict[str, Any] = {"prompt": None, "negative_prompt": None}
    kwargs.update((n, t) for n, t in zip(names, out, strict=False) if t is not None)
    pipeline.call_kwargs.update(kwargs)
    released = _release_text_encoders(pipe)
    pipeline.info["released"] = released


def _release_text_encoders(pipe: Any) -> list[str]:
    released = []
    for name in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        if getattr(pipe, name, None) is not None:
            setattr(pipe, name, None)
            released.append(name)
    gc.collect()
    return released


def _require_cuda(name: str, ctx: BuildContext) -> None:
    if not ctx.device.startswith("cuda"):
        raise SkipVariant(f"{name} moves models between CPU and GPU; it needs a CUDA device, "
                    f"the device here is {ctx.device}")


def apply_model_cpu_offload(pipeline: Pipeline, ctx: BuildContext) -> None:
    """``enable_model_cpu_offload``: each whole model moves to the GPU only while it runs."""
    _require_cuda("model-cpu-offload", ctx)
    pipeline.pipe.enable_model_cpu_offload(device=ctx.device)
    pipeline.info["offload"] = "model"


def apply_sequential_cpu_offload(pipeline: Pipeline, ctx: BuildContext) -> None:
    """``enable_sequential_cpu_offload``: each submodule moves to the GPU only while it runs."""
    _require_cuda("sequential-cpu-offload", ctx)
    pipeline.pipe.enable_sequential_cpu_offload(device=ctx.device)
    pipeline.info["offload"] = "sequential"


def register(registry: VariantRegistry) -> None:
    """Register dpm-solver, tome, vae-slicing, vae-tiling, precomputed-embeds and offloads."""
    add = registry.add
    add(VariantSpec(
        name="dpm-solver", family="torch", requires=TORCH_REQUIRES, order=20,
        description="DPMSolverMultistepScheduler at the workload's steps (reference B: 20)",
        transforms=(f"{MODULE}:apply_dpm_solver",), exclusive=("scheduler",),
        # Another sampler from the same noise: measured SSIM 0.997 / PSNR 40 dB to the PNDM
        # fp32 image on the embedded model (its random UNet barely shapes the picture); on a
        # trained model the pixels differ more, so raise min_* there only after looking.
    ))
    add(VariantSpec(
        name="tome", family="torch", requires=(*TORCH_REQUIRES, "tomesd"), order=30,
        description="token merging (tomesd) before self-attention, ratio setting tome_ratio "
                    f"(default {DEFAULT_TOME_RATIO}), merge choice seeded per call",
        transforms=(f"{MODULE}:apply_tome",), exclusive=("token-merging",),
        # Merging averages tokens, so the image changes a little: measured SSIM 0.9997 /
        # PSNR 50 dB at ratio 0.4 on the embedded model; defaults hold. Reference A warns that
        # real images lose more as the ratio grows.
    ))
    add(VariantSpec(
        name="vae-slicing", family="torch", requires=TORCH_REQUIRES, order=30,
        description="VAE decodes one image at a time (only matters with 2+ images per prompt)",
        transforms=(f"{MODULE}:apply_vae_slicing",),
        # Same decoder, same math: identical image (measured PSNR 999, i.e. equal); defaults.
    ))
    add(VariantSpec(
        name="vae-tiling", family="torch", requires=TORCH_REQUIRES, order=30,
        description="VAE decodes overlapping tiles (setting vae_tile_px; small workloads get "
                    "half the image so tiling really runs)",
        transforms=(f"{MODULE}:apply_vae_tiling",),
        # Tiles are decoded apart and blended; seams move pixels: measured SSIM 0.961 /
        # PSNR 28.4 dB with 64 px tiles on the embedded model, inside the defaults.
    ))
    add(VariantSpec(
        name="precomputed-embeds", family="torch", requires=TORCH_REQUIRES, order=40,
        description="prompt embeddings computed once, text encoders released before calls",
        transforms=(f"{MODULE}:apply_precomputed_embeds",),
        # Same embeddings, same denoising: identical image (measured); defaults.
    ))
    add(VariantSpec(
        name="model-cpu-offload", family="torch", requires=(*TORCH_REQUIRES, "accelerate"),
        needs_cuda=True, order=90, exclusive=("offload",),
        description="enable_model_cpu_offload: whole models visit the GPU in turn (CUDA only)",
        transforms=(f"{MODULE}:apply_model_cpu_offload",),
        # Same weights and math, only placement changes; offloading adds transfer time.
        thresholds={"latency_pct": 75.0},
    ))
    add(VariantSpec(
        name="sequential-cpu-offload", family="torch", requires=(*TORCH_REQUIRES, "accelerate"),
        needs_cuda=True, order=90, exclusive=("offload",),
        description="enable_sequential_cpu_offload: submodules visit the GPU in turn (CUDA only)",
        transforms=(f"{MODULE}:apply_sequential_cpu_offload",),
        # Per-layer transfers dominate (reference D: 6x slower); their time varies with the bus.
        thresholds={"latency_pct": 100.0},
    ))
