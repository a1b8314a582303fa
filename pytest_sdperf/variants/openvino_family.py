"""OpenVINO variants (optimum-intel + NNCF), run on the CPU device.

Every ``ov-*`` variant shares one loader, ``load_openvino``. Each part declares what it adds
to the build recipe as data (``VariantSpec.recipe``, e.g. ov-int8-hybrid ``{"weights":
"hybrid"}``); the registry's ``compose`` merges the parts' recipes, rejecting two that ask for
different values of one key, and the loader reads the merged recipe from ``ctx.recipe``, so the
parts compose: ``ov-int8-hybrid+ov-tome``, ``ov-static+ov-int8-weights``,
``ov-async+ov-int8-hybrid``... The IR comes from the cache (``openvino_cache``), built there
by ``openvino_build`` when missing; with ``--sdperf-model`` pointing at an OpenVINO IR folder
the export is skipped and that folder is used (and quantized from) as it is.

Settings (``--sdperf-set NAME=VALUE``):
    ov_calibration_samples: UNet calls recorded for ov-int8-hybrid calibration (default 200;
        each shipped prompt gives about one per denoising step).
    ov_requests: generations in flight for ov-async (default 2).
    ov_streams: the CPU plugin's streams for ov-async (default: one per request in flight).
    ov_async_form: how ov-async keeps its requests in flight: ``callbacks`` (every generation
        a greenlet of one thread, resumed by its requests' completion callbacks, so requests
        drift into different stages) or ``threads`` (a thread per generation, each blocking in
        its own requests); the default is the form measured faster (DEFAULT_ASYNC_FORM).
    tome_ratio: token-merging ratio for ov-tome (default 0.4, as in the reference; the same
        setting as the PyTorch ``tome`` variant, so both merge alike).
    ov_precision: f32, bf16 or f16 forces the CPU plugin's inference precision
        (INFERENCE_PRECISION_HINT). Unset (the default), OpenVINO chooses for the device, as in
        reference B: bf16 where the CPU computes bf16 natively, else f32. Either way the info
        holds what the compiled models really use (``ov_precision``, read back), and the IR is
        the same: precision is a compile-time setting, not part of any cached export.
        ``ov-fp32`` names the IR (exported in float32), not the compute precision.
    ov_mmap: true or false sets OpenVINO's ENABLE_MMAP when the IR is read: true (OpenVINO's
        default) maps the weights file and reads constants from the mapping, false reads the
        weights into anonymous memory. Recorded as ``ov_mmap`` in the info when set.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from .availability import module_available
from .base import DEFAULT_TOME_RATIO, BuildContext, Pipeline, SkipVariant, parse_bool, parse_tome_ratio
from .registry import VariantRegistry, VariantSpec

MODULE = "pytest_sdperf.variants.openvino_family"
OV_REQUIRES = ("openvino", "optimum.intel", "nncf", "torch", "diffusers", "transformers")
DEFAULT_SAMPLES = 200
DEFAULT_REQUESTS = 2
# Measured: see docs/measurements.md, "Two forms of ov-async" (callbacks vs threads, one run each).
DEFAULT_ASYNC_FORM = "threads"
PRECISIONS = ("f32", "bf16", "f16")


@dataclass(frozen=True)
class Recipe:
    """What to build and how to run it, assembled from the stacked parts and the settings.

    weights: ``fp32``, ``int8`` (data-free weight compression) or ``hybrid``.
    static: reshape to the workload before compiling.
    requests: generations in flight (0: one call at a time, the latency mode).
    streams: CPU streams in throughput mode (0 with requests 0; default one per request).
    form: how the requests are kept in flight (``openvino_async.FORMS``).
    tome_ratio: token merging exported into the UNet (None: no merging).
    precision: the inference precision hint to compile with (None: the device's choice).
    mmap: ENABLE_MMAP when reading the IR (None: OpenVINO's default, which maps).
    """

    weights: str = "fp32"
    static: bool = False
    requests: int = 0
    streams: int = 0
    form: str = DEFAULT_ASYNC_FORM
    tome_ratio: float | None = None
    samples: int = DEFAULT_SAMPLES
    precision: str | None = None
    mmap: bool | None = None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _precision(text: str) -> str:
    if text not in PRECISIONS:
        raise ValueError(f"must be one of {', '.join(PRECISIONS)}")
    return text


def _form(text: str) -> str:
    from .openvino_async import FORMS

    if text not in FORMS:
        raise ValueError(f"must be one of {', '.join(FORMS)}")
    return text


def recipe_for(ctx: BuildContext) -> Recipe:
    """The recipe the variant's parts declared (``ctx.recipe``: ``weights``, ``static``,
    ``async``, ``tome``, merged by the registry) completed by the settings."""
    flags = ctx.recipe
    tome = ctx.setting("tome_ratio", DEFAULT_TOME_RATIO, parse_tome_ratio) if flags.get("tome") else None
    requests = ctx.setting("ov_requests", DEFAULT_REQUESTS, _positive_int) if flags.get("async") else 0
    return Recipe(
        weights=flags.get("weights", "fp32"),
        # A merged UNet is traced at the workload's shape and only valid there.
        static=bool(flags.get("static")) or tome is not None,
        requests=requests,
        streams=ctx.setting("ov_streams", requests, _positive_int) if requests else 0,
        form=ctx.setting("ov_async_form", DEFAULT_ASYNC_FORM, _form),
        tome_ratio=tome,
        samples=ctx.setting("ov_calibration_samples", DEFAULT_SAMPLES, _positive_int),
        precision=ctx.setting("ov_precision", None, _precision),
        mmap=ctx.setting("ov_mmap", None, parse_bool),
    )


def load_openvino(ctx: BuildContext) -> Pipeline:
    """Build (or reuse from the cache) the IR the recipe needs, load it, reshape, compile."""
    from .openvino_async import make_throughput_generate, throughput_config
    from .openvino_build import load_ir, reshape_static
    from .openvino_cache import ir_size_bytes

    recipe = recipe_for(ctx)
    if recipe.requests and recipe.form == "callbacks" and not module_available("greenlet"):
        raise SkipVariant("ov_async_form=callbacks runs each generation as a greenlet: "
                          "install greenlet (pip install 'pytest-sdperf[openvino]')")
    info: dict[str, Any] = {"cache_hit": True}
    folder = ir_folder(ctx, recipe, info)
    ov_config = {"INFERENCE_PRECISION_HINT": recipe.precision} if recipe.precision else {}
    if recipe.requests:
        ov_config.update(throughput_config(recipe.streams))
    pipe = load_ir(folder, ov_config, task=ctx.workload.task, mmap=recipe.mmap)
    if recipe.static:
        reshape_static(pipe, ctx.workload)
    start = time.perf_counter()
    pipe.compile()
    info.update(compile_s=time.perf_counter() - start, model_size_bytes=ir_size_bytes(folder),
                ir=str(folder), weights=recipe.weights, static=recipe.static,
                ov_precision=compiled_precision(pipe), ov_unet_layers=unet_layer_precisions(pipe))
    if ctx.workload.task != "txt2img":
        info["task"] = ctx.workload.task
    if recipe.mmap is not None:
        info["ov_mmap"] = recipe.mmap
    if recipe.precision:
        info["ov_precision_hint"] = recipe.precision  # the plugin may not honour it (f16)
    if recipe.tome_ratio is not None:
        info["tome_ratio"] = recipe.tome_ratio
    pipeline = Pipeline(pipe=pipe, backend="openvino", info=info, prepare_latents=torch_latents)
    if recipe.requests:
        info.update(requests=recipe.requests, streams=recipe.streams, async_form=recipe.form)
        pipeline.generate = make_throughput_generate(pipe, recipe.requests, recipe.form)
    return pipeline


def compiled_precision(pipe: Any) -> str:
    """The inference precision the compiled models use, read back from each: ``bf16``, or
    ``text_encoder=f32 unet=bf16 ...`` where they differ."""
    found: dict[str, str] = {}
    for name in ("text_encoder", "text_encoder_2", "unet", "vae_decoder"):
        compiled = getattr(getattr(pipe, name, None), "request", None)
        if compiled is not None:
            found[name] = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    return " ".join(f"{name}={value}" for name, value in found.items())


def unet_layer_precisions(pipe: Any) -> dict[str, str]:
    """The precision the compiled UNet's weighted layers run in, read from the CPU plugin's
    runtime model: the most common ``runtimePrecision`` of its ``FullyConnected`` and of its
    ``Convolution`` layers, e.g. ``{"FullyConnected": "u8", "Convolution": "bf16"}``. ``u8`` for
    FullyConnected layers of 8-bit compressed weights means the plugin quantizes their
    activations at run time (dynamic quantization, on CPUs with VNNI or AMX): they compute in
    int8 although the model is "weights only". {} where the plugin gives no runtime model."""
    compiled = getattr(getattr(pipe, "unet", None), "request", None)
    try:
        nodes = compiled.get_runtime_model().get_ops() if compiled is not None else []
    except Exception:  # a device without a runtime model (GPU) or an older runtime
        return {}
    seen: dict[str, Counter[str]] = {}
    for node in nodes:
        info = node.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        if kind in ("FullyConnected", "Convolution") and "runtimePrecision" in info:
            seen.setdefault(kind, Counter())[info["runtimePrecision"].astype(str)] += 1
    return {kind: counts.most_common(1)[0][0] for kind, counts in sorted(seen.items())}


def torch_latents(latents: Any, pipeline: Pipeline, ctx: BuildContext) -> Any:
    """The workload's latents as a float32 torch tensor, which optimum's pipeline (diffusers'
    own ``__call__``) uses as given instead of drawing noise from its own generator."""
    import torch

    return torch.from_numpy(latents).to(torch.float32)


def ir_folder(ctx: BuildContext, recipe: Recipe, info: dict[str, Any]) -> Path:
    """The IR folder to load: the source's export, quantized as the recipe says."""
    from .openvino_build import compress_weights, hybrid_quantize, prompts_digest
    from .openvino_cache import cached_build

    base = _base_ir(ctx, recipe, info)
    if recipe.weights == "fp32":
        return base
    key: dict[str, Any] = {"base": base.name if base != _source(ctx) else "source"}
    build: Callable[[Path], None] = partial(compress_weights, base)
    if recipe.weights == "hybrid":
        key.update(samples=recipe.samples, prompts=prompts_digest(), static=recipe.static,
                   workload=_calibration_workload(ctx))
        build = partial(hybrid_quantize, base, wl=ctx.workload, samples=recipe.samples,
                        static=recipe.static)
        info["calibration_samples"] = recipe.samples
    stage = "int8-hybrid" if recipe.weights == "hybrid" else "int8-weights"
    entry = cached_build(ctx.cache_dir, stage, ctx.model.key, key, build)
    info.update(quantize_s=entry.build_s, cache_hit=info["cache_hit"] and entry.hit)
    _count_built(info, entry)
    return entry.path


def _source(ctx: BuildContext) -> Path:
    return Path(ctx.model.location)


def _calibration_workload(ctx: BuildContext) -> dict[str, Any]:
    """The workload fields calibration runs with (prompts come from the shipped file)."""
    wl = ctx.workload.to_dict()
    return {k: wl[k] for k in ("negative_prompt", "steps", "height", "width",
                                "images_per_prompt", "guidance_scale")}


def _base_ir(ctx: BuildContext, recipe: Recipe, info: dict[str, Any]) -> Path:
    """The float32 IR: the user's IR folder as it is, else the cached export of the source."""
    from .openvino_build import cfg_batch, export_ir, export_tome_ir, export_weights
    from .openvino_cache import cached_build

    if ctx.model.kind == "openvino":
        if recipe.tome_ratio is not None:
            raise SkipVariant(
                f"token merging must be applied to the PyTorch UNet before export, and "
                f"{ctx.model.location} is already an OpenVINO IR folder; point --sdperf-model "
                "at the diffusers source model, or at an IR exported with merging applied"
            )
        info["source"] = "openvino-ir"
        return _source(ctx)
    if recipe.tome_ratio is None:
        weights = export_weights(ctx)
        # float32 keeps the recipe of caches written before the choice existed.
        recipe_key = {} if weights == "float32" else {"weights": weights}
        entry = cached_build(ctx.cache_dir, "export", ctx.model.key, recipe_key,
                             partial(export_ir, ctx, weights=weights))
        info["export_weights"] = weights
    else:
        wl, ratio = ctx.workload, recipe.tome_ratio
        key = {"tome_ratio": ratio, "height": wl.height, "width": wl.width, "batch": cfg_batch(wl)}
        entry = cached_build(ctx.cache_dir, "export-tome", ctx.model.key, key,
                             partial(export_tome_ir, ctx, ratio=ratio))
    info.update(export_s=entry.build_s, cache_hit=entry.hit)
    _count_built(info, entry)
    return entry.path


def _count_built(info: dict[str, Any], entry: Any) -> None:
    """Add this run's build time to ``cache_build_s``, which the worker keeps out of the
    first-call time: exporting and quantizing are their own figures, not generation."""
    if not entry.hit:
        info["cache_build_s"] = info.get("cache_build_s", 0.0) + entry.build_s


#: The paired latency gate of ov-static, ov-int8-weights, ov-int8-hybrid and ov-tome compares
#: their rounds with ov-fp32's timed beside them (``VariantSpec.yardstick``): over torch-fp32
#: their ratios moved 3.3-4.7% between half-minute blocks of one process, over ov-fp32 not at
#: all (docs/measurements.md, "Which yardstick holds a ratio steady?", three probes, 2026-12-06). ov-fp32's
#: own test stays paired with torch-fp32, so a slowdown of the whole runtime is seen there.
#: ov-async has none: its throughput mode moved 9% apart from the other variants.
YARDSTICK = "ov-fp32"


def _spec(name: str, description: str, **kw: Any) -> VariantSpec:
    kw.setdefault("requires", OV_REQUIRES)
    return VariantSpec(name=name, family="openvino", description=description, backend="openvino",
                       loader=f"{MODULE}:load_openvino", **kw)


def register(registry: VariantRegistry) -> None:
    """Register this family's variants."""
    add = registry.add
    add(_spec("ov-fp32", "OpenVINO IR exported in float32 via optimum-intel, dynamic shapes, "
              "CPU; computes in the device's precision (bf16 where native; ov_precision=f32)"))
    add(_spec("ov-static", "OpenVINO IR reshaped to the workload's shapes, then compiled",
              recipe={"static": True}, yardstick=YARDSTICK))
    # Thresholds: see the measured figures at the end of this module. The two int8 parts'
    # recipes clash on "weights" too; their exclusive group rejects them first, naming the choice.
    add(_spec("ov-int8-weights", "NNCF 8-bit weight compression of every model (data-free)",
              exclusive=("ov-weights",), recipe={"weights": "int8"},
              thresholds=INT8_WEIGHTS_THRESHOLDS, yardstick=YARDSTICK))
    add(_spec("ov-int8-hybrid", "NNCF hybrid quantization: UNet weights+activations 8-bit, "
              "other weights compressed; calibrated on shipped prompts "
              f"(setting ov_calibration_samples, default {DEFAULT_SAMPLES})",
              exclusive=("ov-weights",), recipe={"weights": "hybrid"},
              thresholds=INT8_HYBRID_THRESHOLDS, yardstick=YARDSTICK))
    add(_spec("ov-async", "throughput mode: ov_requests generations in flight (default "
              f"{DEFAULT_REQUESTS}) on ov_streams CPU streams (default one each), THROUGHPUT "
              f"hint, kept in flight by ov_async_form (default {DEFAULT_ASYNC_FORM}); reports "
              "images/s", recipe={"async": True}))
    add(_spec("ov-tome", "token merging (tomesd, ratio setting tome_ratio, default "
              f"{DEFAULT_TOME_RATIO}) exported into a static-shape UNet; stacks with "
              "ov-int8-*", requires=(*OV_REQUIRES, "tomesd"), exclusive=("token-merging",),
              recipe={"tome": True}, thresholds=TOME_THRESHOLDS, yardstick=YARDSTICK))


# Per-variant similarity floors against the torch-fp32 image. The embedded model has random
# weights, so its images are noise-like textures that punish numeric change harder than a
# trained model's; the floors sit well under what was measured there (2 cores, AVX2) and still
# catch a broken pipeline (other latents or a failed export give SSIM near 0):
#   ov-fp32 / ov-static / ov-async: SSIM 1.0000, PSNR ~88 dB (default floors apply);
#   ov-int8-weights: SSIM 0.9997, PSNR 51.5 dB;  ov-int8-hybrid: SSIM 0.987, PSNR 33.5 dB;
#   ov-tome: SSIM 0.9996, PSNR 49.8 dB (at 128x128 only the top-resolution blocks merge; on a
#   trained model at 512x512 merging changes far more, reference A warns, hence the margin).
# Where OpenVINO computes in bf16 by itself (2 cores with avx512_bf16, openvino 2026.4, the
# default 128x128 10-step workload) every floor still holds with a wide margin:
#   ov-fp32 / ov-static / ov-async: SSIM 0.9995, PSNR 48.5-48.8 dB (f32 forced: 1.0000, 89+ dB);
#   ov-int8-weights: 0.9993, 46.8 dB;  ov-int8-hybrid: 0.9964, 39.4 dB;  ov-tome: 0.9993,
#   46.8 dB;  ov-int8-hybrid+ov-tome: 0.9958, 38.9 dB.
INT8_WEIGHTS_THRESHOLDS = {"min_ssim": 0.95, "min_psnr": 30.0}
INT8_HYBRID_THRESHOLDS = {"min_ssim": 0.93, "min_psnr": 25.0}
TOME_THRESHOLDS = {"min_ssim": 0.80, "min_psnr": 20.0}
