"""Reference D's protocol (SDXL memory and speed on one A100 40 GB).

SDXL at 1024x1024, 4 images per prompt, 3 runs with the last one timed, peak GPU memory (on a
CPU, peak RSS). REFERENCE.md does not restate the write-up's prompt or step count: this uses
the suite's default prompt and diffusers' default 50 steps. Its table (fp32 + default attention
72.2 s / 28.1 GB ... fp16 + SDPA 11.4 s / 21.7 GB, + tiny autoencoder 10.4 s / 15.5 GB) is
beside the README's. Run it on a GPU with

    pytest --sdperf suites/test_reference_d.py --sdperf-model /models/sdxl-base \\
        --sdperf-variants 'torch-fp32,torch-default-attn,torch-fp16,torch-fp16+*'

(or ``--sdperf-protocol reference-d`` on the whole ``suites/`` folder).
"""

from __future__ import annotations

import pytest


@pytest.mark.sdperf(protocol="reference-d", arch="sdxl", height=1024, width=1024, steps=50,
                    images_per_prompt=4, warmup=1, rounds=1)
def test_reference_d(sdperf_measurement, sdperf_gate):
    """Reference D's protocol: the third call's latency and the peak memory within the baseline."""
    sdperf_gate.check(sdperf_measurement)
