"""Text-to-image benchmarks: every selected variant against its baseline and the FP32 image.

Run with ``pytest --sdperf suites/``; without ``--sdperf`` these tests are skipped.
"""

from __future__ import annotations

import pytest


@pytest.mark.sdperf(steps=10, height=128, width=128)
def test_text_to_image(sdperf_measurement, sdperf_gate):
    """Latency, peak memory and similarity to the FP32 reference stay within the baseline."""
    sdperf_gate.check(sdperf_measurement)
