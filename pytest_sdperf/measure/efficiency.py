"""FLOPs of one UNet call, the FLOP/s a variant reaches, and how far that is from the peak.

Counting: ``torch.utils.flop_counter`` on the diffusers UNet built from its config on the meta
device (no weights, no arithmetic), at the workload's latent size and UNet batch (images per
prompt, doubled by classifier-free guidance). The counter sees matrix products, convolutions
and attention; element-wise work (norms, activations, softmax) is not counted. The machine's
peak comes from measure/peak.py. Usage::

    peak = MachinePeak(cpu_peak(), measured_peaks('cpu', usable_cpus()))
    flops = unet_step_flops(UNET_CONFIG, batch=2, latent_hw=(16, 16))
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from ..host import package_version
from ..workload import Workload
from .peak import MachinePeak

TEXT_TOKENS = 77
POOLED_TEXT_DIM = 1280  # SDXL's text_embeds: text_encoder_2's projection
COUNT_VERSION = 1  # part of the disk cache key: bump when the counting changes


def unet_batch(workload: Workload, config: Mapping[str, Any]) -> int:
    """The UNet's batch: images per prompt, doubled by classifier-free guidance.

    As diffusers decides it: guidance applies when the scale is above 1 and the UNet takes no
    guidance embedding (``time_cond_proj_dim``, as LCM's distilled UNets do).
    """
    cfg = workload.guidance_scale > 1.0 and config.get("time_cond_proj_dim") is None
    return workload.images_per_prompt * (2 if cfg else 1)


def unet_step_flops(config: Mapping[str, Any], batch: int, latent_hw: tuple[int, int],
                    tome_ratio: float | None = None, cache_dir: Path | None = None) -> int:
    """FLOPs of one ``UNet2DConditionModel`` call, counted on the meta device.

    ``tome_ratio`` counts with tomesd's token merging patched in (deterministic merges, as the
    OpenVINO export uses). Cached per (config, shape) within the process and, given
    ``cache_dir``, on disk (an SDXL count takes seconds; each variant's worker asks again).

    >>> unet_step_flops(UNET_CONFIG, batch=2, latent_hw=(16, 16))  # doctest: +SKIP
    1713061888
    """
    plain = json.dumps(dict(config), sort_keys=True, default=str)
    if cache_dir is None:
        return _count(plain, batch, tuple(latent_hw), tome_ratio)
    key = [COUNT_VERSION, plain, batch, list(latent_hw), tome_ratio, package_version("torch"),
           package_version("diffusers")]
    path = cache_dir / "flops" / f"{hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return int(json.loads(path.read_text())["flops"])
    flops = _count(plain, batch, tuple(latent_hw), tome_ratio)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"flops": flops, "key": key}))
    os.replace(tmp, path)  # concurrent workers write the same figure
    return flops


@functools.lru_cache(maxsize=16)
def _count(config_json: str, batch: int, latent_hw: tuple[int, ...], tome_ratio: float | None) -> int:
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads(config_json))
        if tome_ratio:
            import tomesd

            tomesd.apply_patch(unet, ratio=tome_ratio, use_rand=False)
        args, kwargs = _dummy_inputs(unet.config, batch, latent_hw)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            unet(*args, **kwargs)
    return int(counter.get_total_flops())


def _dummy_inputs(config: Any, batch: int, hw: tuple[int, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Meta tensors shaped like one denoising step's UNet inputs (SDXL's extra ones included)."""
    import torch

    text_dim = config.encoder_hid_dim or config.cross_attention_dim
    if isinstance(text_dim, (list, tuple)):
        text_dim = text_dim[0]
    kwargs: dict[str, Any] = {"encoder_hidden_states": torch.empty(batch, TEXT_TOKENS, text_dim)}
    if config.addition_embed_type == "text_time":
        time_ids = (config.projection_class_embeddings_input_dim - POOLED_TEXT_DIM) // config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.empty(batch, POOLED_TEXT_DIM),
                                       "time_ids": torch.empty(batch, time_ids)}
    if config.time_cond_proj_dim is not None:
        kwargs["timestep_cond"] = torch.empty(batch, config.time_cond_proj_dim)
    sample = torch.empty(batch, config.in_channels, *hw)
    return (sample, torch.empty(batch)), kwargs


def unet_config(pipe: Any, model_location: str | None = None) -> dict[str, Any] | None:
    """The pipeline's UNet config (torch or OpenVINO), else the source folder's ``unet/config.json``.

    None when neither holds a ``UNet2DConditionModel`` config (a fake or unusual pipeline).
    """
    found = getattr(getattr(pipe, "unet", None), "config", None)
    config = dict(found) if isinstance(found, Mapping) else None
    path = Path(model_location, "unet", "config.json") if model_location else None
    if (config is None or "block_out_channels" not in config) and path and path.is_file():
        config = json.loads(path.read_text())
    if not config or config.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        return None
    return config


@dataclass(frozen=True)
class Efficiency:
    """FLOPs of one step's UNet call and the FLOP/s achieved over the median step's time."""

    unet_step_gflops: float
    unet_batch: int
    latent_hw: tuple[int, int]
    flops_basis: str
    step_s: float | None = None
    achieved_gflops_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {**asdict(self), "latent_hw": list(self.latent_hw)}


def step_efficiency(pipe: Any, workload: Workload, info: Mapping[str, Any], stages: Mapping[str, float],
                    model_location: str | None = None, cache_dir: Path | None = None) -> Efficiency | None:
    """The efficiency of a built pipeline; None when it has no countable UNet.

    ``info["tome_ratio"]`` (tome, ov-tome) counts the merged model; otherwise the figure is the
    model's as configured, whatever the backend (OpenVINO is counted on the torch UNet).
    ``stages["step"]``: the median seconds of one denoising step (see ``StageClock``).
    """
    config = unet_config(pipe, model_location)
    if config is None:
        return None
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    hw = (workload.height // scale, workload.width // scale)
    batch = unet_batch(workload, config)
    tome = info.get("tome_ratio")
    flops = unet_step_flops(config, batch, hw, float(tome) if tome else None, cache_dir)
    merged = f", token merging ratio {tome} (tomesd, merged)" if tome else ""
    basis = (f"torch.utils.flop_counter on UNet2DConditionModel (matmul, conv, attention), "
             f"batch {batch}, latents {hw[0]}x{hw[1]}, {TEXT_TOKENS} text tokens{merged}")
    step_s = stages.get("step")
    achieved = flops / step_s / 1e9 if step_s else None
    return Efficiency(flops / 1e9, batch, hw, basis, step_s, achieved)


_OV_TYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def compute_type(info: Mapping[str, Any]) -> str:
    """The type a variant's UNet really computes in, from what its build recorded: ``int8``
    where its activations are quantized (OpenVINO hybrid), the precision read back from the
    compiled OpenVINO UNet (``ov_precision``: ``bf16``, or ``... unet=bf16 ...``), else the
    torch dtype (``float32``, ``bfloat16`` for bf16 weights or autocast, ``float16``), where
    ``tfloat32`` is float32 on CUDA with TF32 allowed (``tf32``: PyTorch's default lets
    convolutions use it, so a float32 model can pass the strict float32 GEMM peak).
    8-bit weight compression alone is ``int8`` where the compiled UNet's FullyConnected layers
    run in u8/i8 (``ov_unet_layers``, read back from the CPU plugin: it quantizes their
    activations at run time on CPUs with VNNI), else the compiled precision (weights
    decompressed). A variant whose layers mix types is held to the fastest type any of them
    computes in, so its percentage is a lower bound, never above 100% of a type it does use."""
    layers = info.get("ov_unet_layers") or {}
    if info.get("weights") == "hybrid" or any(p in ("u8", "i8") for p in layers.values()):
        return "int8"
    precision = str(info.get("ov_precision") or "")
    if precision:
        parts = dict(p.split("=", 1) for p in precision.split() if "=" in p)
        return _OV_TYPES.get(parts.get("unet", precision), "float32")
    dtype = str(info.get("dtype") or "float32")
    return "tfloat32" if dtype == "float32" and info.get("tf32") else dtype


def against_peak(efficiency: Mapping[str, Any], peak: MachinePeak, device: str,
                 dtype: str = "float32") -> dict[str, Any]:
    """``efficiency`` plus the peak of ``dtype`` (the variant's compute type) it is held to and
    the percentages of it reached: of the measured GEMM peak and of the theoretical one."""
    out = dict(efficiency)
    out["compute_type"] = dtype
    achieved = efficiency.get("achieved_gflops_per_s")
    limit = peak.limit_for(device, dtype)
    if limit is not None:
        out.update(peak_gflops_per_s=limit[0], peak_basis=limit[1])
        out["pct_of_peak"] = 100.0 * achieved / limit[0] if achieved else None
    if peak.theoretical and achieved and not device.startswith("cuda"):
        theoretical = peak.theoretical.for_type(dtype)
        out.update(theoretical_gflops_per_s=theoretical,
                   pct_of_theoretical=100.0 * achieved / theoretical)
    return out
