"""PyTorch (diffusers) variants. ``torch-fp32`` is the reference every other is judged by."""

from __future__ import annotations

from typing import Any

from .base import BuildContext, Pipeline, SkipVariant
from .registry import VariantRegistry, VariantSpec

TORCH_REQUIRES = ("torch", "diffusers", "transformers")


def load_torch(ctx: BuildContext, dtype: str = "float32") -> Pipeline:
    """Load the source model as a diffusers pipeline in ``dtype`` on ``ctx.device``.

    safetensors only unless the user allowed pickle; remote code is never trusted.
    """
    import torch
    from diffusers import DiffusionPipeline

    if ctx.model.kind == "openvino":
        raise SkipVariant(
            f"{ctx.model.location} is an OpenVINO IR folder; PyTorch variants need a "
            "diffusers folder or hub id"
        )
    pipe: Any = DiffusionPipeline.from_pretrained(
        ctx.model.location,
        torch_dtype=getattr(torch, dtype),
        use_safetensors=None if ctx.model.allow_pickle else True,
        local_files_only=ctx.model.kind != "hub",
    )
    pipe.set_progress_bar_config(disable=True)
    if hasattr(pipe, "safety_checker"):
        pipe.safety_checker = None
    pipe = pipe.to(ctx.device)
    return Pipeline(pipe=pipe, backend="torch", info={"dtype": dtype})


def register(registry: VariantRegistry) -> None:
    """Register this family's variants."""
    registry.add(
        VariantSpec(
            name="torch-fp32",
            family="torch",
            description="diffusers, float32, default scheduler, SDPA attention (the reference)",
            requires=TORCH_REQUIRES,
            # float32 is a dtype choice too: torch-fp16+torch-fp32 would be torch-fp16 under
            # a contradictory name, so globs such as 'torch-fp16+*' leave it out.
            exclusive=("dtype",),
        )
    )
