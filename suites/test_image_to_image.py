"""Image-to-image benchmarks (reference C names both tasks): the init image (made from the
workload's seed, the same in every worker) is encoded by the VAE, noised at ``strength`` and
denoised for ``int(steps * strength)`` steps. Every family runs it (diffusers' image-to-image
pipeline over the variant's own components; optimum-intel's for OpenVINO); its FP32 reference
image is its own, made by torch-fp32.

The default suite measures it for one variant of each backend, to keep the main job short:
torch-fp32 (diffusers' img2img pipeline) and ov-fp32 (optimum-intel's, the IR's VAE encoder).
Every variant runs it (measured here at the default workload: all 21 that run on a CPU, inside
their similarity floors); drop ``variants=`` for all of them, or list more.
"""

from __future__ import annotations

import pytest


@pytest.mark.sdperf(task="img2img", strength=0.75,
                    variants="torch-fp32,ov-fp32")
def test_image_to_image(sdperf_measurement, sdperf_gate):
    """Latency, peak memory and similarity to the FP32 img2img reference stay within the
    baseline."""
    sdperf_gate.check(sdperf_measurement)
