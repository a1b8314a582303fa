"""When auto rounds stop (rounds.more_rounds): on the run's own interval without a baseline,
on the decided comparison with one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from pytest_sdperf.measure.latency import LatencyStats
from pytest_sdperf.protocol import AutoRounds, AutoTarget, WorkerRequest
from pytest_sdperf.rounds import more_rounds

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
    current = _paired([1.4, 1.6, 1.5, 1.45, 1.55])
    assert _more(_request(None), current) is True  # its own median is not known to +-2%
    assert _more(_request(_target(BASELINE)), current) is False  # but it is far over the limit


def test_an_undecided_comparison_samples_on_though_the_run_is_tight() -> None:
    wide_baseline = _paired([0.9, 1.0, 1.1, 1.0, 0.95, 1.05])
    current = _paired([1.06, 1.061, 1.059, 1.06, 1.062, 1.058])  # 6% over, limit 5%
    assert _more(_request(None), current) is False  # known to +-2%: the old rule stops here
    assert _more(_request(_target(wide_baseline)), current) is True  # inconclusive: go on
    assert _more(_request(_target(wide_baseline), budget_s=6.0), current) is False  # time is up


def test_a_pass_stops_once_its_median_is_known() -> None:
    assert _more(_request(_target(BASELINE)), _paired([1.0, 1.001, 0.999, 1.0, 1.002])) is False
    assert _more(_request(_target(BASELINE)), _paired([0.9, 1.0, 1.02, 0.85, 1.01])) is True
