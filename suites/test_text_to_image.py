"""Text-to-image benchmarks: every selected variant against its baseline and the FP32 image.

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
