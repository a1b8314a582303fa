"""The verdict functions."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_sdperf.compare import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    compare_latency,
    compare_memory,
    compare_memory_figures,
    compare_similarity,
    ratio_of_medians_ci,
)

rng = np.random.default_rng(7)


def noisy(center: float, n: int, spread: float = 0.05) -> list[float]:
    return list(center * (1 + rng.normal(0, spread, n)))


def test_identical_distributions_pass() -> None:
    assert compare_latency(noisy(1.0, 7), noisy(1.0, 7), 10).status == PASS


def test_twice_as_slow_fails_with_a_clear_message() -> None:
    check = compare_latency(noisy(2.0, 5), noisy(1.0, 5), 50)
    assert check.status == FAIL
    assert check.measured == pytest.approx(2.0, rel=0.15)
    assert "latency ratio: measured" in check.message() and "limit 1.500x" in check.message()


def test_overlapping_noise_near_the_limit_is_inconclusive() -> None:
    base = [1.0, 1.0, 1.0, 1.0]
    current = [0.9, 1.2, 1.3, 1.8]  # median 1.25 > 1.1, but the interval reaches below
    check = compare_latency(current, base, 10)
    assert check.status == INCONCLUSIVE
    assert "raise --sdperf-rounds" in check.detail


def test_ci_brackets_the_point_estimate() -> None:
    point, low, high = ratio_of_medians_ci(noisy(1.5, 9), noisy(1.0, 9))
    assert low <= point <= high
    assert 1.2 < point < 1.8


def test_single_samples_are_compared_by_their_ratio() -> None:
    assert compare_latency([3.0], [1.0], 50).status == FAIL
    assert compare_latency([1.2], [1.0], 50).status == PASS


def test_memory() -> None:
    assert compare_memory(130e6, 100e6, 20, "peak_rss").status == FAIL
    ok = compare_memory(110e6, 100e6, 20, "peak_rss")
    assert ok.status == PASS and "MiB" in ok.message()


def test_memory_figures_pick_the_shared_figure_and_say_when_it_is_the_older_one() -> None:
    run = {"peak_rss": 900e6, "peak_anon": 130e6}
    anon = compare_memory_figures(run, {"peak_rss": 600e6, "peak_anon": 100e6}, 20)
    assert anon is not None and anon.status == FAIL and anon.metric == "memory (peak_anon)"
    rss = compare_memory_figures(run, {"peak_rss": 850e6}, 20)
    assert rss is not None and rss.status == PASS and "predates peak_anon" in rss.message()
    assert compare_memory_figures(run, {"peak_heap": 1e6}, 20) is None


def test_similarity() -> None:
    ssim, psnr = compare_similarity(0.8, 30.0, 0.9, 20.0)
    assert (ssim.status, psnr.status) == (FAIL, PASS)
    assert "SSIM: measured 0.8" in ssim.message()


def _stats(samples, calibration=(), reference=(), kernel=""):
    from pytest_sdperf.measure.latency import LatencyStats

    return LatencyStats.from_samples(samples, calibration=calibration, calibration_kernel=kernel,
                                     reference=reference)


def test_latency_figures_follow_the_gate_mode_and_fall_back_saying_why() -> None:
    from pytest_sdperf.compare import check_latency, latency_figures

    full = _stats([2.0, 2.2], calibration=[1.0, 1.0], reference=[1.0, 1.1])
    assert latency_figures("paired", full, full, "torch-fp32").current == (2.0, 2.0)
    assert latency_figures("paired", full, full, "torch-fp32").metric == "latency ratio (paired with torch-fp32)"
    no_reference = _stats([2.0, 2.2], calibration=[1.0, 1.0])
    assert latency_figures("paired", full, no_reference).mode == "relative"
    assert latency_figures("relative", full, full).current == (2.0, 2.2)
    assert latency_figures("absolute", full, full).mode == "absolute"
    other_kernel = _stats([2.0, 2.2], calibration=[1.0, 1.0], kernel="legacy-matmul")
    fallback = latency_figures("relative", full, other_kernel)
    assert fallback.mode == "absolute" and "calibrated with legacy-matmul" in fallback.note
    assert "calibrated with legacy-matmul" in check_latency("relative", full, other_kernel, 50).detail
