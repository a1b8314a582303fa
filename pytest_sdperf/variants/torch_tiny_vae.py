"""The ``tiny-vae`` variant: AutoencoderTiny (TAESD) in place of the pipeline's VAE.

With the embedded tiny model a small random AutoencoderTiny is built under a fixed seed and
cached beside the tiny model (like ``models/source.py`` does); a profile (``sd15-arch``...)
gets a random one of TAESD's own shape (TAESD-XL's for ``sdxl-arch``: the same layers, its
scaling factor); any other model needs a real TAESD folder from
``--sdperf-set taesd=/path/to/taesd`` (diffusers layout, safetensors).
"""

from __future__ import annotations

import gc
import hashlib
import json
from pathlib import Path
from typing import Any

from ..host import package_versions
from .base import BuildContext, Pipeline, SkipVariant
from .registry import VariantRegistry, VariantSpec
from .torch_family import TORCH_REQUIRES

MODULE = "pytest_sdperf.variants.torch_tiny_vae"
TINY_TAESD_CONFIG: dict[str, Any] = {
    "encoder_block_out_channels": [32, 32, 32, 32],
    "decoder_block_out_channels": [32, 32, 32, 32],
    "num_encoder_blocks": [1, 1, 1, 1],
    "num_decoder_blocks": [1, 1, 1, 1],
    "latent_channels": 4,
}
TINY_TAESD_SEED = 20240602
TAESD_HINT = ("give a TAESD folder in diffusers layout with --sdperf-set taesd=PATH "
              "(e.g. madebyollin/taesd for SD 1.x, madebyollin/taesdxl for SDXL, saved locally)")


def tiny_taesd_key(config: dict[str, Any] | None = None) -> str:
    """Config, seed and library versions that decide a random AutoencoderTiny's bytes."""
    blob = json.dumps({"config": TINY_TAESD_CONFIG if config is None else config,
                       "seed": TINY_TAESD_SEED,
                       "versions": package_versions(("torch", "diffusers"))},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_tiny_taesd(cache_dir: Path, config: dict[str, Any] | None = None,
                      label: str = "tiny") -> Path:
    """A random AutoencoderTiny's folder in the cache (``config``: TINY_TAESD_CONFIG), built
    under a lock if missing or damaged."""
    from functools import partial

    from ..models.source import cached_folder

    config = TINY_TAESD_CONFIG if config is None else config
    target = cache_dir / "models" / f"{label}-taesd-{tiny_taesd_key(config)}"
    return cached_folder(target, partial(build_tiny_taesd, config=config),
                         f"the random {label} autoencoder")


def build_tiny_taesd(out_dir: Path, config: dict[str, Any] | None = None) -> None:
    """Build a random AutoencoderTiny deterministically and save it (safetensors)."""
    import torch
    from diffusers import AutoencoderTiny

    vae_cls: Any = AutoencoderTiny  # diffusers is untyped
    torch.manual_seed(TINY_TAESD_SEED)
    vae_cls(**(TINY_TAESD_CONFIG if config is None else config)).eval().save_pretrained(
        str(out_dir), safe_serialization=True)


def taesd_folder(ctx: BuildContext) -> Path:
    """The TAESD folder to load: the ``taesd`` setting, else the random one for the tiny model."""
    given = ctx.setting("taesd", None, lambda text: Path(text).expanduser())
    if given is not None:
        if not (given / "config.json").is_file():
            raise ValueError(f"--sdperf-set taesd={given}: no config.json there; {TAESD_HINT}")
        return given
    if ctx.model.kind == "profile":
        from ..models.profiles import get_profile

        # TAESD's own architecture is AutoencoderTiny's defaults; the profile adds its scaling.
        config = dict(get_profile(ctx.model.profile).configs.get("taesd", {}))
        return ensure_tiny_taesd(ctx.cache_dir, config, ctx.model.profile)
    if ctx.model.kind != "tiny":
        raise SkipVariant(f"tiny-vae has no TAESD for {ctx.model.location}; {TAESD_HINT}")
    return ensure_tiny_taesd(ctx.cache_dir)


def apply_tiny_vae(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Swap the pipeline's VAE for an AutoencoderTiny of the same dtype and device."""
    from diffusers import AutoencoderTiny

    vae_cls: Any = AutoencoderTiny  # diffusers is untyped
    folder = taesd_folder(ctx)
    old = pipeline.pipe.vae
    vae = vae_cls.from_pretrained(
        str(folder), torch_dtype=old.dtype, local_files_only=True,
        use_safetensors=None if ctx.model.allow_pickle else True,
    ).to(old.device)
    pipeline.pipe.vae = vae.eval()
    del old
    gc.collect()
    pipeline.info["vae"] = f"AutoencoderTiny ({folder.name})"


def register(registry: VariantRegistry) -> None:
    """Register tiny-vae."""
    registry.add(VariantSpec(
        name="tiny-vae", family="torch", requires=TORCH_REQUIRES, order=20,
        description="AutoencoderTiny (TAESD) decodes; setting taesd=PATH for a real one "
                    "(the embedded model gets a small random one)",
        transforms=(f"{MODULE}:apply_tiny_vae",), exclusive=("vae",),
        # The embedded model's TAESD is another random decoder: its image shares nothing
        # with fp32's (measured SSIM 0.002, PSNR 5.9 dB), so similarity is not gated (SSIM
        # can go below 0); latency and memory are. With a real TAESD, set min_ssim/min_psnr
        # in the baseline entry from what it measures.
        thresholds={"min_ssim": -1.0, "min_psnr": 0.0},
    ))
