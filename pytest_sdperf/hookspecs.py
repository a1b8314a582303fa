"""Hooks pytest-sdperf calls; implement them in a conftest.py or a plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .variants.registry import VariantRegistry


@pytest.hookspec
def pytest_sdperf_add_variants(registry: VariantRegistry) -> None:
    """Register your own variants; called once at configure time, after the built-in ones.

    Loaders, transforms and checks are ``"module:function"`` strings, because each variant is
    built in a fresh worker process that imports them by name. Example::

        from pytest_sdperf.variants.registry import VariantSpec

        def pytest_sdperf_add_variants(registry):
            registry.add(VariantSpec(
                name="euler", family="mine", description="Euler scheduler",
                transforms=("my_variants:use_euler",)))
    """
