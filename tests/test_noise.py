"""How much one round's ratio moves from round to round (``round_spread_pct``), this run's and
the baseline recording's, and the summary line that sets them side by side (``noise_line``)."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_sdperf.compare import check_latency, compare_latency
from pytest_sdperf.measure.latency import SPREAD_MIN_ROUNDS, LatencyStats, round_spread_pct
from pytest_sdperf.noise import MIN_TESTS, SCALE_MAX, session_scale
from pytest_sdperf.report import noise_line
from pytest_sdperf.results import Record


def _ratios(sd: float, n: int, seed: int = 3) -> list[float]:
    return list(np.exp(np.random.default_rng(seed).normal(0.0, sd, n)))


def test_the_spread_is_a_robust_sd_of_the_log_ratios_in_percent() -> None:
    assert round_spread_pct(_ratios(0.05, 400)) == pytest.approx(5.0, rel=0.12)
    assert round_spread_pct(_ratios(0.12, 400)) == pytest.approx(12.0, rel=0.12)
    # a few disturbed rounds (3x) hardly move it; a plain SD would be many times larger
    disturbed = _ratios(0.05, 40) + [3.0, 3.2, 2.9]
    assert round_spread_pct(disturbed) == pytest.approx(5.0, rel=0.35)
    assert np.std(np.log(disturbed)) * 100 > 20.0
    assert round_spread_pct(_ratios(0.05, SPREAD_MIN_ROUNDS - 1)) is None
    assert round_spread_pct([1.0] * SPREAD_MIN_ROUNDS) == 0.0


def _paired(sd: float, n: int, seed: int) -> LatencyStats:
    """Rounds whose ratio over the reference beside them has log SD ``sd``, while the machine
    moves both sides together by much more (which pairing takes out)."""
    rng = np.random.default_rng(seed)
    reference = 0.4 * np.exp(rng.normal(0.0, 0.30, n))
    samples = reference * np.exp(rng.normal(0.0, sd, n))
    return LatencyStats.from_samples(list(samples), reference=list(reference))


def test_the_latency_check_carries_this_runs_spread_and_the_recordings() -> None:
    check = check_latency("paired", _paired(0.10, 60, 1), _paired(0.02, 60, 2), 10.0, "ref")
    now, then = check.round_spread_pct
    assert now == pytest.approx(10.0, rel=0.3) and then == pytest.approx(2.0, rel=0.3)


def _record(name: str, now: float | None, then: float | None) -> Record:
    return Record(f"t.py::test[{name}]", name, "m", "w", "pass", round_spread_pct=now,
                  baseline_round_spread_pct=then)


def test_the_summary_says_when_the_machine_was_noisier_than_at_the_recordings() -> None:
    assert noise_line([_record("a", None, None), _record("b", 4.0, None)]) == ""
    noisy = noise_line([_record("a", 9.0, 2.0), _record("b", 12.0, 3.0), _record("c", 10.0, 2.5),
                        _record("d", None, None)])
    assert noisy.startswith("sdperf: round-to-round noise")
    assert "median of 3 tests): 10.0% this run, 2.5% in their baselines' recordings" in noisy
    assert "noisier than when they were recorded" in noisy and "--sdperf-time-budget" in noisy
    assert noisy.endswith("their between-session spread was widened for it (by x2.00 at this noise: "
                          "a test's spread between sessions grows with the noise, noise.py)")
    quiet = noise_line([_record("a", 1.0, 4.0), _record("b", 1.5, 3.0)])
    assert quiet.endswith("quieter than when they were recorded")
    alike = noise_line([_record("a", 3.0, 2.5), _record("b", 2.0, 2.5)])
    assert "noisier" not in alike and "quieter" not in alike


def test_a_noisier_session_widens_its_between_session_term_by_the_square_root() -> None:
    """noise.py: (median spread now / at the recordings) ** 0.5, over the tests judged so far;
    1 until MIN_TESTS are, and for a quieter session; at most SCALE_MAX."""
    four_times = [(8.0, 2.0)] * MIN_TESTS
    assert session_scale(four_times) == pytest.approx(2.0)
    assert session_scale(four_times[:-1]) == 1.0  # too few tests judged yet
    assert session_scale([(8.0, 4.0)] * MIN_TESTS + [(None, 3.0), (5.0, None)]) == pytest.approx(2**0.5)
    assert session_scale([(2.0, 4.0)] * MIN_TESTS) == 1.0  # quieter: not narrowed
    assert session_scale([(40.0, 2.0)] * MIN_TESTS) == SCALE_MAX


def test_the_scale_widens_the_interval_and_what_it_could_see_and_says_so() -> None:
    """A reading 9% over a baseline whose sessions spread 2%: a suspect that fails on a session
    as noisy as the recordings, a pass on one with a scale of 2; the detail names it."""
    rng = np.random.default_rng(5)
    sessions = [1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 1.03, 0.97, 1.0, 1.0]
    baseline = list(np.exp(rng.normal(0.0, 0.01, 30)))
    current = list(1.09 * np.exp(rng.normal(0.0, 0.01, 30)))
    plain = compare_latency(current, baseline, 10.0, False, sessions, checks=26)
    wide = compare_latency(current, baseline, 10.0, False, sessions, checks=26, noise_scale=2.0)
    assert plain.status == "fail" and wide.status != "fail"
    assert wide.measured == plain.measured
    assert wide.interval[0] < plain.interval[0] and wide.interval[1] > plain.interval[1]
    assert wide.detectable_pct > plain.detectable_pct and wide.detectable_floor_pct > plain.detectable_floor_pct
    assert "x2.00 in this session for its noise" in wide.detail
    assert "in this session for its noise" not in plain.detail
