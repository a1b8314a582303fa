"""Reference C's protocol (asynchronous OpenVINO pipelines: latency and throughput apart).

Prompt "a photo of an astronaut riding a horse on mars", negative prompt "low resolution,
blurry", text-to-image and image-to-image. Each test measures its variant as the default suite
does (latency rounds against the baseline, memory, the FP32 image), then runs a LoadGen
scenario around the same pipeline: SingleStream for the latency of one image at a time,
Offline for images per second. The variants are the best latency variant on a CPU here
(``ov-static``) and the throughput mode (``ov-async``: one call is ``ov_requests`` images, all
counted). Raise the requests in one run, each value its own test, with

    pytest --sdperf suites/test_reference_c.py --sdperf-set ov_requests=1,2,4
    pytest --sdperf suites/ --sdperf-protocol reference-c

(deselected from ``pytest --sdperf suites/`` unless selected). ``test_reference_c_knee`` is
the write-up's search itself: ov-async's requests in flight raised 1, 2, 3, 4, 6, 8 until a
call's p90 passes three times one request's (a ceiling that scales with the model) or
throughput stops growing; the knee's images/s are gated. ``test_reference_c_batch_knee`` raises
the batch (images per call) the same way for the reference and the best latency variant, the
knob a PyTorch pipeline has; ``test_reference_c_instances_knee`` raises PyTorch's instances
(worker processes each pinned to its own CPUs, Intel's multi-instance recipe). LoadGen runs are 20 s, far below
MLPerf's 600 s, and labelled "not a compliant run".
"""

from __future__ import annotations

import pytest

PROMPT = "a photo of an astronaut riding a horse on mars"
NEGATIVE = "low resolution, blurry"
VARIANTS = "ov-static,ov-async"


@pytest.mark.sdperf(protocol="reference-c", prompt=PROMPT, negative_prompt=NEGATIVE,
                    scenario="single-stream", duration_s=20, variants=VARIANTS)
def test_reference_c_latency(sdperf_measurement, sdperf_gate):
    """Text-to-image, one query at a time: LoadGen's p90 latency."""
    sdperf_gate.check(sdperf_measurement)


@pytest.mark.sdperf(protocol="reference-c", prompt=PROMPT, negative_prompt=NEGATIVE,
                    scenario="offline", duration_s=20, variants=VARIANTS)
def test_reference_c_throughput(sdperf_measurement, sdperf_gate):
    """Text-to-image, every sample in one query: images per second."""
    sdperf_gate.check(sdperf_measurement)


@pytest.mark.sdperf(protocol="reference-c", prompt=PROMPT, negative_prompt=NEGATIVE,
                    task="img2img", strength=0.75, scenario="offline", duration_s=20,
                    variants=VARIANTS)
def test_reference_c_img2img_throughput(sdperf_measurement, sdperf_gate):
    """Image-to-image (the init image made from the seed), every sample in one query."""
    sdperf_gate.check(sdperf_measurement)


@pytest.mark.sdperf(protocol="reference-c", prompt=PROMPT, negative_prompt=NEGATIVE,
                    sweep="ov_requests", sweep_values=(1, 2, 3, 4, 6, 8), sweep_cap_ms="3x",
                    variants="ov-async")
def test_reference_c_knee(sdperf_knee, sdperf_gate):
    """Text-to-image: raise the requests in flight under a latency ceiling until throughput
    stops growing; the knee's throughput against the baseline."""
    sdperf_gate.check(sdperf_knee)


@pytest.mark.sdperf(protocol="reference-c", prompt=PROMPT, negative_prompt=NEGATIVE,
                    sweep="images_per_prompt", sweep_values=(1, 2, 3, 4, 6, 8), sweep_cap_ms="3x",
                    variants="torch-fp32,ov-static")
def test_reference_c_batch_knee(sdperf_knee, sdperf_gate):
    """Text-to-image: raise the batch under the same ceiling; the knee's throughput against the
    baseline (each image per second compared with the reference's one image at a time)."""
    sdperf_gate.check(sdperf_knee)


@pytest.mark.sdperf(protocol="reference-c", prompt=PROMPT, negative_prompt=NEGATIVE,
                    sweep="instances", sweep_values=(1, 2, 4, 8), sweep_cap_ms="3x",
                    variants="torch-fp32")
def test_reference_c_instances_knee(sdperf_knee, sdperf_gate):
    """Text-to-image: PyTorch's multi-instance recipe, N worker processes each pinned to its own
    share of the CPUs, raised under the same ceiling (up to one instance a CPU)."""
    sdperf_gate.check(sdperf_knee)
