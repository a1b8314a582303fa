"""Builders behind the OpenVINO variants: IR export (optionally with token merging) and NNCF
8-bit quantization (data-free weight compression, or hybrid calibrated on shipped prompts).

Each builder writes a complete OpenVINO pipeline folder into ``out``; ``openvino_cache`` decides
when they run. Nothing here downloads: calibration prompts ship in ``pytest_sdperf/data``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
from pathlib import Path
from typing import Any

from ..workload import Workload
from .base import BuildContext, SkipVariant

PROMPTS_FILE = "calibration_prompts.txt"
# Ops that only a merged UNet holds: tomesd's argsort/gather/scatter_reduce after tracing.
TOME_OPS = ("TopK", "ScatterElementsUpdate", "GatherElements")


def calibration_prompts() -> list[str]:
    """The prompts shipped inside the package for hybrid-quantization calibration."""
    text = importlib.resources.files("pytest_sdperf").joinpath("data", PROMPTS_FILE).read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def prompts_digest() -> str:
    """A hash of the shipped prompts (part of the hybrid cache key)."""
    return hashlib.sha256("\n".join(calibration_prompts()).encode()).hexdigest()[:12]


def cfg_batch(wl: Workload) -> int:
    """The UNet's batch for ``wl``: images per prompt, doubled by classifier-free guidance."""
    return wl.images_per_prompt * (2 if wl.guidance_scale > 1.0 else 1)


EXPORT_WEIGHTS = ("auto", "float32", "float16")


def _torch_source(ctx: BuildContext, dtype: str = "float32") -> Any:
    """The source model as a diffusers pipeline on the CPU (for tracing)."""
    from .torch_family import load_torch

    return load_torch(dataclasses.replace(ctx, device="cpu"), dtype=dtype).pipe


def stored_unet_dtype(ctx: BuildContext) -> str:
    """``float16`` when every UNet tensor of a local source is stored in float16, else ``float32``."""
    if ctx.model.kind not in ("tiny", "profile", "diffusers"):
        return "float32"
    files = sorted((Path(ctx.model.location) / "unet").glob("*.safetensors"))
    if not files:
        return "float32"
    from safetensors import safe_open

    for path in files:
        with safe_open(str(path), framework="pt") as f:
            if any(f.get_slice(name).get_dtype() != "F16" for name in f.keys()):
                return "float32"
    return "float16"


def export_weights(ctx: BuildContext) -> str:
    """The weight precision of the exported IR (``--sdperf-set ov_export_weights=``).

    ``auto`` (default) keeps the precision the UNet is stored in: a float16 checkpoint (the
    profiles, most published SD checkpoints) exports float16 weights, which is lossless and
    halves the export's memory (SDXL's float32 export needs more than 24 GiB). Inference still
    computes in float32 on CPUs without native float16: OpenVINO decompresses the weights when
    it compiles the model.
    """
    choice = ctx.setting("ov_export_weights", "auto", str)
    if choice not in EXPORT_WEIGHTS:
        raise ValueError(f"--sdperf-set ov_export_weights={choice!r}: choose one of {', '.join(EXPORT_WEIGHTS)}")
    return stored_unet_dtype(ctx) if choice == "auto" else choice


def export_ir(ctx: BuildContext, out: Path, *, weights: str = "float32") -> None:
    """Export the source model to an OpenVINO IR pipeline with dynamic shapes (float32 compute,
    ``weights`` the precision its weights are saved in)."""
    from optimum.exporters.openvino import export_from_model
    from optimum.intel import OVConfig

    half = weights == "float16"
    export_from_model(_torch_source(ctx, weights), out, ov_config=OVConfig(dtype="fp32"),
                      patch_16bit_model=half)


def export_tome_ir(ctx: BuildContext, out: Path, *, ratio: float) -> None:
    """Export with tomesd token merging patched into the UNet before tracing.

    Tracing turns tomesd's token counts (how many to merge at this resolution) into graph
    constants, so the UNet is traced at the workload's own latent size and CFG batch and is
    only valid there: callers reshape it to exactly that. ``use_rand=False``: a random merge
    destination cannot live in a traced graph; the fixed choice also makes every call equal.
    """
    import tomesd
    from optimum.exporters.openvino import export_from_model
    from optimum.intel import OVConfig

    pipe = _torch_source(ctx)
    wl = ctx.workload
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    original = pipe.unet.config.sample_size
    tomesd.apply_patch(pipe, ratio=ratio, use_rand=False)
    # optimum traces the UNet with a dummy latent of sample_size - 1 on each side.
    pipe.unet.register_to_config(sample_size=[wl.height // scale + 1, wl.width // scale + 1])
    export_from_model(pipe, out, ov_config=OVConfig(dtype="fp32"), batch_size=cfg_batch(wl))
    _restore_sample_size(out / "unet" / "config.json", original)
    found = count_ops(out / "unet" / "openvino_model.xml", TOME_OPS)
    if not found:
        raise RuntimeError(f"token merging did not survive export: no {TOME_OPS} in the UNet IR")


def _restore_sample_size(config_path: Path, sample_size: Any) -> None:
    config = json.loads(config_path.read_text())
    config["sample_size"] = sample_size
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def count_ops(xml_path: Path, op_types: tuple[str, ...]) -> int:
    """How many ops of ``op_types`` an IR holds (used to prove token merging was exported)."""
    import openvino as ov

    model = ov.Core().read_model(str(xml_path))
    return sum(1 for op in model.get_ops() if op.get_type_name() in op_types)


def load_ir(folder: Path, ov_config: dict[str, str] | None = None, task: str = "txt2img",
            mmap: bool | None = None) -> Any:
    """An uncompiled OpenVINO diffusion pipeline from an IR folder, on the CPU: text-to-image,
    or image-to-image (``task="img2img"``: optimum-intel's, which needs the IR's vae_encoder).
    ``mmap``: ENABLE_MMAP for reading the IR (None leaves OpenVINO's default); it is set on the
    Core optimum reads models with, so it holds for the rest of this process (one worker)."""
    from optimum.intel import OVDiffusionPipeline, OVPipelineForImage2Image

    if mmap is not None:
        from optimum.intel.openvino import modeling_base

        modeling_base.core.set_property({"ENABLE_MMAP": mmap})

    if task == "img2img" and not (folder / "vae_encoder").is_dir():
        raise SkipVariant(f"task='img2img' encodes the init image with the VAE encoder, and the "
                          f"OpenVINO IR folder {folder} has no vae_encoder; export it with one "
                          "(optimum-cli export openvino exports both by default)")
    cls: Any = OVPipelineForImage2Image if task == "img2img" else OVDiffusionPipeline
    pipe = cls.from_pretrained(
        str(folder), compile=False, device="CPU", ov_config=ov_config or {}, local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    if hasattr(pipe, "safety_checker"):
        pipe.safety_checker = None
    return pipe


def reshape_static(pipe: Any, wl: Workload) -> None:
    """Fix every model's input shapes to the workload (reference A's deployment path)."""
    pipe.reshape(batch_size=1, height=wl.height, width=wl.width,
                 num_images_per_prompt=wl.images_per_prompt)


def compress_weights(base: Path, out: Path) -> None:
    """NNCF 8-bit weight compression of every model in the pipeline (data-free)."""
    from optimum.intel import OVConfig, OVQuantizer, OVWeightQuantizationConfig

    pipe = load_ir(base)
    config = OVWeightQuantizationConfig(bits=8)
    OVQuantizer(pipe).quantize(ov_config=OVConfig(quantization_config=config), save_directory=out)


def hybrid_quantize(base: Path, out: Path, *, wl: Workload, samples: int, static: bool) -> None:
    """NNCF hybrid quantization: UNet weights and activations to 8 bits (calibrated on UNet
    inputs collected from the shipped prompts at the workload's size and steps), the other
    models' weights compressed to 8 bits. Calibration runs in f32 whatever the CPU would
    choose (bf16 where native), so the quantized IR is the same on every machine and its
    cache key needs no precision."""
    import nncf
    from optimum.intel import OVConfig, OVQuantizer, OVWeightQuantizationConfig

    pipe = load_ir(base, {"INFERENCE_PRECISION_HINT": "f32"})
    if static:
        reshape_static(pipe, wl)
    data = collect_unet_inputs(pipe, wl, samples)
    config = OVWeightQuantizationConfig(bits=8, quant_method="hybrid", num_samples=len(data))
    OVQuantizer(pipe).quantize(
        calibration_dataset={"unet": nncf.Dataset(data)},
        ov_config=OVConfig(quantization_config=config),
        save_directory=out,
    )


def collect_unet_inputs(pipe: Any, wl: Workload, samples: int) -> list[Any]:
    """Run the pipeline over the shipped prompts until ``samples`` UNet calls are recorded."""
    import torch
    from optimum.intel.openvino.quantization import InferRequestWrapper

    pipe.compile()
    collected: list[Any] = []
    unet = pipe.unet
    unet.request = InferRequestWrapper(unet.request, collected)
    try:
        for i, prompt in enumerate(calibration_prompts() * (1 + samples // 10)):
            if len(collected) >= samples:
                break
            pipe(prompt=prompt, negative_prompt=wl.negative_prompt, height=wl.height,
                 width=wl.width, num_inference_steps=wl.steps, guidance_scale=wl.guidance_scale,
                 num_images_per_prompt=wl.images_per_prompt, output_type="np",
                 generator=torch.Generator().manual_seed(i))
    finally:
        unet.request = unet.request.request
    return collected[:samples]
