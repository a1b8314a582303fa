"""When to stop timing rounds: a fixed count, or auto rounds decided by the judge.

Asked after every round, by the worker timing itself or by the parent driving a worker (and its
paired reference) one round at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .config import DECIDE_MIN_ROUNDS, RECORD_MIN_ROUNDS

__all__ = ["DECIDE_MIN_ROUNDS", "RECORD_MIN_ROUNDS", "more_rounds", "undecided"]

if TYPE_CHECKING:
    from .measure.latency import LatencyStats
    from .protocol import AutoTarget, WorkerRequest


def more_rounds(request: WorkerRequest, samples: list[float], so_far: Callable[[], LatencyStats],
                spent_s: float | None = None) -> bool:
    """Fixed rounds; or auto rounds (rounds 0), at least ``min_rounds``, then until time is up or:

    - with no baseline to compare with (``auto.target`` None: a first recording), after
      ``RECORD_MIN_ROUNDS``, the median of the gated ratios (over the yardstick, else the paired
      reference, else the calibration) is known to +-``halfwidth``;
    - with a baseline, once ``DECIDE_MIN_ROUNDS`` are taken, the gate's comparison is decided:
      a regression, or with ``auto.target.confirm`` a suspect (compare.py: a possible
      regression), stops at once (the gate measures it again in fresh workers); a suspect's
      confirmation (``auto.target.earlier``) is judged pooled with the first reading, as the
      gate judges it, and is not stopped by a suspect; a comparison reading
      at or below half the limit, its interval at or below the limit, stops once it could have
      seen a slowdown of the limit's size (its smallest detectable slowdown is at most
      ``latency_pct``); any other samples on; and any stops once more rounds would not narrow
      the interval much (``Check.settled``: this run's own noise is at most a quarter of its
      variance, the rest being the baseline's and the between-session spread).

    ``so_far()`` gives the rounds taken as LatencyStats; only auto rounds ask for it.
    ``spent_s``: the time the rounds took, where it is more than their samples (a paired
    reference's rounds); the budget counts it."""
    if request.rounds > 0:
        return len(samples) < request.rounds
    auto = request.auto
    if len(samples) < auto.min_rounds:
        return True
    spent = sum(samples) if spent_s is None else spent_s
    if len(samples) >= auto.max_rounds or spent >= auto.budget_s:
        return False
    return undecided(so_far(), auto.target, auto.halfwidth)


def undecided(stats: LatencyStats, target: AutoTarget | None, halfwidth: float) -> bool:
    """Whether auto rounds should sample on, given the rounds so far (see ``more_rounds``)."""
    from .interval import midpoint
    from .judge import Figures, Status, judge
    from .measure.latency import median_ci_halfwidth
    from .workload import Thresholds

    if target is None:
        if len(stats.samples) < RECORD_MIN_ROUNDS:
            return True
        ratios = stats.over_yardstick() or stats.paired() or stats.relative() or stats.samples
        return median_ci_halfwidth(ratios) > halfwidth
    if len(stats.samples) < DECIDE_MIN_ROUNDS:
        return True
    limits = Thresholds(latency_pct=target.latency_pct)
    verdict = judge(Figures(stats, earlier=target.earlier), Figures(target.baseline), limits,
                    target.mode, target.reference, target.checks, target.priors, target.confirm,
                    target.noise_scale)
    latency = verdict.latency
    if verdict.status is Status.REGRESSION or latency is None:
        return False
    if target.confirm and latency.suspect:  # measured again in fresh workers, and pooled
        return False
    if latency.settled:  # the between-session spread dominates: more rounds would not help
        return False
    # Undecided: a reading above half the limit, or an interval reaching above the limit (a
    # pass with a note once the rounds end), or one that could not yet see the limit's size.
    high = latency.interval[1] if latency.interval else float("inf")
    detectable = latency.detectable_pct
    return (latency.measured > midpoint(latency.limit) or high > latency.limit
            or detectable is None or detectable > target.latency_pct)
