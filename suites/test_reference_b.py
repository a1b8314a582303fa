"""Reference B's protocol (Stable Diffusion on 4th-gen Xeon).

SD 1.5 shape at 512x512, prompt "sailing ship in storm by Rembrandt": one warm-up call of 10
steps, then 10 timed calls of 20 steps (the write-up reports their mean; the table shows
the median and the JSON results hold the mean). Its figures, against diffusers FP32 32.3 s:
OpenVINO 16.7 s, static shapes 4.7 s, jemalloc/OpenMP/pinning 11.8 s, IPEX bf16 5.4 s,
+DPMSolver 5.05 s. Run it with

    pytest --sdperf suites/test_reference_b.py --sdperf-model /models/sd15 \\
        --sdperf-variants torch-fp32,ov-fp32,ov-static,env-jemalloc+env-pinned-0-3,dpm-solver

(or ``--sdperf-protocol reference-b`` on the whole ``suites/`` folder).
"""

from __future__ import annotations

import pytest


@pytest.mark.sdperf(protocol="reference-b", arch="sd", prompt="sailing ship in storm by Rembrandt",
                    height=512, width=512, steps=20, warmup_steps=10, warmup=0, rounds=10)
def test_reference_b(sdperf_measurement, sdperf_gate):
    """Reference B's protocol: latency, memory and similarity to FP32 within the baseline."""
    sdperf_gate.check(sdperf_measurement)
