"""Reference A's protocol (8-bit quantization and token merging on Intel CPUs).

512x512, 50 steps, prompt "cartoon bird", seed 42, against PyTorch FP32. The write-up's
figures: OpenVINO FP32 1.9x, 8-bit 3.9x (0.25x the memory), 8-bit + ToMe 5.1x. Run it with

    pytest --sdperf suites/test_reference_a.py --sdperf-model /models/sd15 \\
        --sdperf-variants torch-fp32,ov-fp32,ov-static,ov-int8-hybrid,ov-int8-hybrid+ov-tome

(or ``--sdperf-protocol reference-a`` on the whole ``suites/`` folder).
"""

from __future__ import annotations

import pytest


@pytest.mark.sdperf(protocol="reference-a", arch="sd", prompt="cartoon bird", seed=42,
                    height=512, width=512, steps=50)
def test_reference_a(sdperf_measurement, sdperf_gate):
    """Reference A's workload: latency, memory and similarity to FP32 within the baseline."""
    sdperf_gate.check(sdperf_measurement)
