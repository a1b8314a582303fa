"""pytest-sdperf: performance regression gates for Stable Diffusion pipelines."""

from __future__ import annotations

__version__ = "0.1.0"
