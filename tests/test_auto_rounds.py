"""When auto rounds stop (rounds.more_rounds): on the run's own interval without a baseline,
on the decided comparison with one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from pytest_sdperf.measure.latency import LatencyStats
from pytest_sdperf.protocol import AutoRounds, AutoTarget, WorkerRequest
from pytest_sdperf.rounds import DECIDE_MIN_ROUNDS, RECORD_MIN_ROUNDS, more_rounds

rng = np.random.default_rng(3)


def _paired(ratios: list[float]) -> LatencyStats:
    """Stats whose paired ratios are ``ratios`` (the reference at 1 s)."""
    return LatencyStats.from_samples(ratios, reference=[1.0] * len(ratios))


def _request(target: AutoTarget | None, budget_s: float = 100.0, rounds: int = 0) -> Any:
    """Only the fields the stopping rule reads (a full WorkerRequest needs a model)."""
    return SimpleNamespace(rounds=rounds, auto=AutoRounds(5, 60, 0.02, budget_s, target))


def _target(baseline: LatencyStats, pct: float = 5.0) -> AutoTarget:
    return AutoTarget("paired", baseline, pct, "ref")


def _more(request: WorkerRequest, current: LatencyStats) -> bool:
    return more_rounds(request, list(current.samples), lambda: current)


BASELINE = _paired(list(1.0 + rng.normal(0, 0.01, 20)))


def test_fixed_rounds_and_the_minimum_ignore_the_comparison() -> None:
    assert _more(_request(None, rounds=3), _paired([1.0, 1.0])) is True
    assert _more(_request(None, rounds=3), _paired([1.0, 1.0, 1.0])) is False
    assert _more(_request(_target(BASELINE)), _paired([3.0] * 4)) is True


def test_a_decided_regression_stops_although_the_run_is_noisy() -> None:
    current = _paired([1.4, 1.6, 1.5, 1.45, 1.55] * 2)
    assert _more(_request(None), current) is True  # its own median is not known to +-2%
    assert _more(_request(_target(BASELINE)), current) is False  # but it is far over the limit


def test_a_recording_takes_its_minimum_rounds_however_tight() -> None:
    tight = [1.0, 1.001, 0.999]
    assert _more(_request(None), _paired(tight * (RECORD_MIN_ROUNDS // 3))) is True
    assert _more(_request(None), _paired(tight * (RECORD_MIN_ROUNDS // 3 + 1))) is False


def test_no_comparison_is_decided_before_its_minimum_rounds() -> None:
    far_over = [1.5] * (DECIDE_MIN_ROUNDS - 1)
    assert _more(_request(_target(BASELINE)), _paired(far_over)) is True
    assert _more(_request(_target(BASELINE)), _paired(far_over + [1.5])) is False


def test_an_undecided_comparison_samples_on_while_more_rounds_would_narrow_it() -> None:
    steady = BASELINE
    for _ in range(4):  # a baseline of five agreeing sessions: a small between-session spread
        steady = steady.with_session(BASELINE, 5)
    spread = [0.95, 1.05, 0.97, 1.03, 1.0, 0.93, 1.07, 0.98, 1.02, 1.0]
    current = _paired([1.04 * x for x in spread])  # 4% over, limit 5%: undecided
    assert _more(_request(_target(steady)), current) is True
    assert _more(_request(_target(steady), budget_s=10.0), current) is False  # time is up
    # A run whose own noise is small beside what it cannot narrow (the recording alone: the
    # prior between-session spread) stops, decided or not.
    tight = _paired([1.04, 1.041, 1.039, 1.04, 1.042, 1.038] * 4)
    assert _more(_request(None), tight) is False  # known to +-2%
    assert _more(_request(_target(BASELINE)), tight) is False


def test_a_pass_stops_once_it_could_have_seen_a_slowdown_of_the_limit() -> None:
    tight = _paired([1.0, 1.001, 0.999, 1.0, 1.002] * 2)  # smallest detectable slowdown ~5%
    assert _more(_request(_target(BASELINE, pct=10.0)), tight) is False
    # A pass all the same (its interval stays under 1.10), but it could not have seen 10%:
    # its smallest detectable slowdown is about 13%, so it samples on.
    loose = _paired([0.86, 0.9, 0.94, 0.97, 1.0, 1.0, 1.03, 1.06, 1.1, 1.14])
    assert _more(_request(_target(BASELINE, pct=10.0)), loose) is True
    assert _more(_request(_target(BASELINE, pct=30.0)), loose) is False  # 13% is under 30%
