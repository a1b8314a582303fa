"""Whether a variant can run on this machine, and if not, why (shown in skips and listings)."""

from __future__ import annotations

import functools
import importlib.util

from .registry import VariantSpec, resolve_ref


@functools.lru_cache(maxsize=None)
def module_available(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when torch sees a CUDA device."""
    if not module_available("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def unavailable_reason(spec: VariantSpec) -> str | None:
    """None if the variant can run here, else a sentence saying what is missing."""
    missing = [name for name in spec.requires if not module_available(name)]
    if missing:
        return (
            f"variant {spec.name} needs the package(s) {', '.join(missing)}; "
            f"install them (e.g. pip install 'pytest-sdperf[all]')"
        )
    if spec.needs_cuda and not cuda_available():
        return f"variant {spec.name} needs a CUDA GPU; none is visible to torch here"
    for ref in spec.checks:
        reason: str | None = resolve_ref(ref)()
        if reason:
            return reason
    return None
