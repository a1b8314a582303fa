"""PyTorch precision, attention and graph variants: bf16, fp16, default attention, compile, IPEX.

Each is a transform on the float32 pipeline that ``load_torch`` builds, so they compose with
the other torch variants (``torch-bf16+dpm-solver+tome``).
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, ContextManager

from ..host import package_version
from .base import BuildContext, Pipeline, SkipVariant, parse_bool
from .registry import VariantRegistry, VariantSpec
from .torch_family import TORCH_REQUIRES

MODULE = "pytest_sdperf.variants.torch_precision"
IPEX_MODULE = "intel_extension_for_pytorch"
IPEX_PIN = "intel-extension-for-pytorch==2.8.0 with torch==2.8.0 (the 'ipex' tox environment)"
BF16_MODES = ("weights", "autocast")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _parse_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def to_channels_last(pipeline: Pipeline) -> None:
    """Put the convolutional models (UNet, VAE) in channels_last memory format."""
    import torch

    for name in ("unet", "vae"):
        module = getattr(pipeline.pipe, name, None)
        if module is not None:
            module.to(memory_format=torch.channels_last)
    pipeline.info["memory_format"] = "channels_last"


def autocast_factory(device: str, dtype_name: str) -> Callable[[], ContextManager[Any]]:
    """A factory of ``torch.autocast`` contexts for Pipeline.contexts."""

    def factory() -> ContextManager[Any]:
        import torch

        return torch.autocast(device.split(":")[0], dtype=getattr(torch, dtype_name))

    return factory


def apply_bf16(pipeline: Pipeline, ctx: BuildContext) -> None:
    """bfloat16 plus channels_last. Setting ``bf16_mode``: ``weights`` (default: every model's
    weights cast to bfloat16, halving their memory) or ``autocast`` (float32 weights, bfloat16
    autocast around each call, as IPEX's recipe does)."""
    import torch

    mode = ctx.setting("bf16_mode", "weights", _parse_choice(BF16_MODES))
    if mode == "weights":
        pipeline.pipe.to(dtype=torch.bfloat16)
    else:
        pipeline.contexts.append(autocast_factory(ctx.device, "bfloat16"))
    to_channels_last(pipeline)
    pipeline.info.update(dtype="bfloat16", bf16_mode=mode)


def apply_fp16(pipeline: Pipeline, ctx: BuildContext) -> None:
    """float16 weights on the GPU (reference D's second row)."""
    import torch

    if not ctx.device.startswith("cuda"):
        raise SkipVariant(f"torch-fp16 runs on CUDA only; the device here is {ctx.device}")
    pipeline.pipe.to(dtype=torch.float16)
    pipeline.info["dtype"] = "float16"


def apply_default_attn(pipeline: Pipeline, ctx: BuildContext) -> None:
    """``unet.set_default_attn_processor()``: the unfused attention SDPA is compared with."""
    pipeline.pipe.unet.set_default_attn_processor()
    pipeline.info["attention"] = "default (AttnProcessor)"


def _compile_settings(ctx: BuildContext) -> tuple[str, bool]:
    # reduce-overhead means CUDA graphs; on CPU the default mode is the meaningful one.
    default = "reduce-overhead" if ctx.device.startswith("cuda") else "default"
    mode = ctx.setting("compile_mode", default, _parse_choice(COMPILE_MODES))
    return mode, ctx.setting("compile_fullgraph", True, parse_bool)


def compiler_missing_reason(device: str) -> str | None:
    """Why inductor cannot build CPU kernels here (it needs a C++ compiler), or None."""
    import shutil

    if device.startswith("cuda") or shutil.which("g++") or shutil.which("c++"):
        return None
    return ("torch-compile on CPU needs a C++ compiler for inductor's kernels; install one "
            "(apt-get install -y g++) or run on a GPU")


def apply_compile(pipeline: Pipeline, ctx: BuildContext) -> None:
    """``torch.compile`` the UNet (settings ``compile_mode``, ``compile_fullgraph``).

    Compilation is lazy, so one short priming call (2 steps, latent output) triggers it here;
    its duration is ``info['compile_s']`` and stays out of the measured latency.
    """
    import torch

    reason = compiler_missing_reason(ctx.device)
    if reason:
        raise SkipVariant(reason)
    mode, fullgraph = _compile_settings(ctx)
    pipe = pipeline.pipe
    pipe.unet = torch.compile(pipe.unet, mode=mode, fullgraph=fullgraph)
    start = time.perf_counter()
    prime(pipeline, ctx)
    pipeline.info.update(compile_s=time.perf_counter() - start, compile_mode=mode,
                         compile_fullgraph=fullgraph)


def prime(pipeline: Pipeline, ctx: BuildContext, steps: int = 2) -> None:
    """Run the pipeline once on the workload's shapes (few steps, no VAE decode)."""
    import torch

    from .build import initial_latents
    from .task import call_kwargs, init_image, priming_steps

    wl = ctx.workload
    latents = torch.from_numpy(initial_latents(pipeline.pipe, ctx))
    latents = latents.to(device=ctx.device, dtype=pipeline.pipe.unet.dtype)
    kwargs = call_kwargs(wl, latents, init_image(wl), steps=priming_steps(wl, steps))
    kwargs.update(output_type="latent")
    kwargs.update(pipeline.call_kwargs)
    with pipeline.entered(), torch.no_grad():
        pipeline.pipe(**kwargs)


def ipex_unusable_reason() -> str | None:
    """None when IPEX is installed and matches torch's major.minor, else why not.

    Checked from package metadata only: importing a mismatched IPEX ends the process.
    """
    ipex_v = package_version("intel-extension-for-pytorch")
    torch_v = package_version("torch")
    if ipex_v is None or torch_v is None:
        return ("ipex-bf16 needs intel-extension-for-pytorch, which stopped development at 2.8 "
                f"and pins its torch; run it where it is installed: {IPEX_PIN}")
    short = [re.match(r"\d+\.\d+", v) for v in (ipex_v, torch_v)]
    if None in short or short[0].group() != short[1].group():  # type: ignore[union-attr]
        return (f"intel-extension-for-pytorch {ipex_v} needs torch {ipex_v.split('+')[0]}, "
                f"but torch {torch_v} is installed; use {IPEX_PIN}")
    return None


def _ipex_sample_input(pipe: Any, ctx: BuildContext) -> tuple[Any, ...]:
    """(sample, timestep, encoder_hidden_states) shaped like the workload's UNet calls."""
    import torch

    from .build import initial_latents

    latents = torch.from_numpy(initial_latents(pipe, ctx))
    cfg = 2 if ctx.workload.guidance_scale > 1 else 1
    sample = latents.repeat(cfg, 1, 1, 1).to(memory_format=torch.channels_last)
    hidden = torch.zeros(sample.shape[0], 77, int(pipe.unet.config.cross_attention_dim))
    return sample, torch.tensor(999.0), hidden


def apply_ipex_bf16(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Reference B's recipe: channels_last everywhere, ``ipex.optimize(dtype=bfloat16)`` on
    the UNet (with a sample input), VAE and text encoder, and bf16 autocast around calls."""
    reason = ipex_unusable_reason()
    if reason:
        raise SkipVariant(reason)
    if not ctx.device.startswith("cpu"):
        raise SkipVariant(f"ipex-bf16 is the CPU recipe; the device here is {ctx.device}")
    import intel_extension_for_pytorch as ipex
    import torch

    pipe = pipeline.pipe
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.to(memory_format=torch.channels_last)
    sample = _ipex_sample_input(pipe, ctx)
    pipe.unet = ipex.optimize(pipe.unet.eval(), dtype=torch.bfloat16, inplace=True,
                              sample_input=sample)
    for name in ("vae", "text_encoder"):
        if getattr(pipe, name, None) is not None:
            setattr(pipe, name, ipex.optimize(getattr(pipe, name).eval(),
                                              dtype=torch.bfloat16, inplace=True))
    pipeline.contexts.append(autocast_factory("cpu", "bfloat16"))
    pipeline.info.update(dtype="bfloat16", bf16_mode="ipex+autocast",
                         memory_format="channels_last", ipex=ipex.__version__)


def check_ipex() -> str | None:
    """Availability probe for ipex-bf16 (metadata only, never imports the extension)."""
    return ipex_unusable_reason()


def register(registry: VariantRegistry) -> None:
    """Register torch-bf16, torch-default-attn, torch-compile, ipex-bf16 and torch-fp16."""
    add = registry.add
    add(VariantSpec(
        name="torch-bf16", family="torch", requires=TORCH_REQUIRES, order=10,
        description="bfloat16 weights (setting bf16_mode=autocast: fp32 weights + bf16 "
                    "autocast) and channels_last",
        transforms=(f"{MODULE}:apply_bf16",), exclusive=("dtype",),
        # Measured on the embedded model (128x128, 10 steps): SSIM 0.9995, PSNR 49 dB to fp32,
        # so the default similarity floor (0.90 / 20 dB) holds with room for a real model's
        # larger bf16 drift. bf16 is emulated (slow) on CPUs without AVX512-BF16 or AMX; its
        # noise widens the interval (inconclusive), so the default latency limit holds.
    ))
    add(VariantSpec(
        name="torch-default-attn", family="torch", requires=TORCH_REQUIRES, order=30,
        description="unet.set_default_attn_processor(): the unfused attention SDPA replaces",
        transforms=(f"{MODULE}:apply_default_attn",), exclusive=("attention",),
        # Same math as SDPA up to float rounding (measured: SSIM 1.0000, PSNR 90 dB): default
        # similarity and latency limits. With glibc's malloc thresholds left dynamic a process
        # draws one of two speeds for the unfused attention (its large score matrices reuse
        # freed memory or fault fresh pages in, as the thresholds settled) and keeps it:
        # 2026-12-05, 37 processes of the tiny model timing it against SDPA alternately, 16 at
        # 1.03-1.14x, 19 at 1.26-1.43x, 2 between (so it had its own 60% limit until
        # 2026-12-06). With them fixed (``glibc_malloc.py``, the default), 16 processes read
        # 1.02-1.10x; 10 with them dynamic, interleaved, 1.07-1.08x (2) and 1.25-1.41x (8).
    ))
    add(VariantSpec(
        name="torch-compile", family="torch", requires=TORCH_REQUIRES, order=80,
        description="torch.compile of the UNet (settings compile_mode, compile_fullgraph); "
                    "compile time recorded as compile_s, outside the latency",
        transforms=(f"{MODULE}:apply_compile",), exclusive=("graph",),
        # Inductor reorders float reductions: tiny pixel differences only (SSIM > 0.99).
        # Its own latency limit, 40% (fail above 1.20x): its paired ratio here comes in two
        # speeds, about 0.80 and 0.89-0.93 of torch-fp32's time, with glibc's malloc thresholds
        # fixed too (sessions 0.79, 0.82, 0.80 on 2026-12-06; a new user's main job an hour
        # later read 0.89 then 0.91 in fresh workers, and failed at the default 10%). Sessions
        # with them dynamic: 0.93, 0.91, 0.82, 0.93, 0.80. The committed baseline's two later
        # sessions (a new user's runs, 2.5 h on) read 0.87 and 0.86: it now holds both speeds,
        # so its between-session spread (4.1%) carries them; the limit stays until harness runs
        # show the default 10% quiet against such a baseline.
        thresholds={"latency_pct": 40.0},
    ))
    add(VariantSpec(
        name="ipex-bf16", family="torch", requires=TORCH_REQUIRES, order=80,
        description="Intel Extension for PyTorch: ipex.optimize(bf16) + channels_last + bf16 "
                    f"autocast (reference B); needs {IPEX_PIN}",
        transforms=(f"{MODULE}:apply_ipex_bf16",), checks=(f"{MODULE}:check_ipex",),
        # Not in ``requires``: installing IPEX into a newer torch's environment breaks it, so
        # the check (package metadata, never an import) gives the precise reason instead.
        exclusive=("dtype", "graph"),
        # Not measured here (no matching IPEX): bf16 autocast drifts like torch-bf16, so the
        # default limits, as for torch-bf16.
    ))
    add(VariantSpec(
        name="torch-fp16", family="torch", requires=TORCH_REQUIRES, needs_cuda=True, order=10,
        description="float16 weights (CUDA only; CPUs lack fast fp16 kernels)",
        transforms=(f"{MODULE}:apply_fp16",), exclusive=("dtype",),
        # Not measured here (no GPU): fp16 keeps 11 mantissa bits, closer than bf16, whose
        # image stays within the default similarity floor; defaults apply.
    ))
