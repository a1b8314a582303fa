"""The variants that ship with pytest-sdperf, registered family by family."""

from __future__ import annotations

import importlib

from .registry import VariantRegistry

# One module per family, each with ``register(registry)``; order decides listing order.
FAMILY_MODULES = (
    "pytest_sdperf.variants.torch_family",
    "pytest_sdperf.variants.torch_precision",
    "pytest_sdperf.variants.torch_pipeline",
    "pytest_sdperf.variants.torch_tiny_vae",
    "pytest_sdperf.variants.openvino_family",
    "pytest_sdperf.variants.system_family",
)


def register_builtin(registry: VariantRegistry) -> None:
    """Register every shipped variant (torch-fp32 first)."""
    for module in FAMILY_MODULES:
        importlib.import_module(module).register(registry)
