"""A pytest plugin that injects one fault into one variant, for the suite harness.

``SDPERF_FAULT=VARIANT:FAULT`` with ``-p pytest_sdperf.faults`` gives VARIANT the harness
transform FAULT (``slow``: ``extra_work``, its size from ``--sdperf-set extra_work_pct=P``;
``quality``: noise on the UNet's weights; ``memory``: memory held for the worker's life), so
``python -m pytest_sdperf.validate_suite`` can run the real default suite with one variant
changed and count which tests fail. Without the variable the plugin does nothing.
"""

from __future__ import annotations

import dataclasses
import os

from .variants.registry import VariantError, VariantRegistry

ENV = "SDPERF_FAULT"
FAULTS: dict[str, str] = {
    "slow": "pytest_sdperf.testing:extra_work",
    "quality": "pytest_sdperf.testing:perturb_unet",
    "memory": "pytest_sdperf.testing:hold_memory",
}


def pytest_sdperf_add_variants(registry: VariantRegistry) -> None:
    """Give the variant named in ``SDPERF_FAULT`` its fault (after every variant is registered)."""
    value = os.environ.get(ENV, "")
    if not value:
        return
    variant, _, fault = value.partition(":")
    if fault not in FAULTS:
        raise VariantError(f"{ENV}={value!r}: the fault must be one of {', '.join(FAULTS)}")
    spec = registry.get(variant)
    registry.replace(dataclasses.replace(spec, transforms=(*spec.transforms, FAULTS[fault])))
