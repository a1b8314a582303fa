"""Text-to-image benchmarks: every selected variant against its baseline and the FP32 image,
and a batch workload (two images per prompt) for the variants whose batch path differs.

The workload is the model's default (tiny: 128x128, 10 steps; a profile: its own small size;
a folder: its native size at 20 steps); --sdperf-size and --sdperf-steps change it.

Run with ``pytest --sdperf suites/``; without ``--sdperf`` these tests are skipped.
"""

from __future__ import annotations

import pytest


@pytest.mark.sdperf()
def test_text_to_image(sdperf_measurement, sdperf_gate):
    """Latency, peak memory and similarity to the FP32 reference stay within the baseline."""
    sdperf_gate.check(sdperf_measurement)


@pytest.mark.sdperf(images_per_prompt=2, variants="torch-fp32,vae-slicing,precomputed-embeds")
def test_text_to_image_batch(sdperf_measurement, sdperf_gate):
    """Two images per prompt, for the variants whose batch path differs: VAE slicing decodes
    them one at a time (at one image it does nothing), precomputed embeddings are repeated per
    image; the reference variant's own test covers the batch path they share."""
    sdperf_gate.check(sdperf_measurement)
