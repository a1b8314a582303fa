"""The parts of a latency comparison's interval: the between-session spread, the session's
z, the standard error's terms and the smallest slowdown it could see (compare.py's docstring
states the rule; these are its pieces, pure numbers)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from .priors import spread_of

#: The between-session spread (log SD of a test's session medians) assumed before a baseline
#: has sessions of its own: measured on these machines (2026-12-03, 24 tests x 3 sessions of the
#: default suite): median 2.5%, root mean square 5.9% (OpenVINO and torch-compile 6-15%).
BETWEEN_PRIOR = 0.03
#: How many sessions' worth of weight the prior has against a baseline's own sessions.
BETWEEN_PRIOR_WEIGHT = 2.0
#: The weight of a prior learnt from the baseline file's tests of the variant's family
#: (``priors.py``): it rests on several tests' sessions, not on an assumption.
LEARNT_PRIOR_WEIGHT = 4.0
#: The chance, one-sided, that an unchanged suite reads any latency check as slower.
SUITE_ALPHA = 0.05
#: The screen's z: a single reading above the midpoint whose interval at this z lies above 1 is
#: a suspect, measured again in fresh workers and judged pooled with it at the suite's z
#: (``suite_z``), which alone bounds the suite's false alarms (a suspect is a pass until then).
SCREEN_Z = 1.959963984540054
#: The part of the between-session spread a session shares between its readings of one test
#: (log SD): what fresh workers in the same session do not average away. Measured on these
#: machines (2026-12-05, 27 harness runs of the default suite): the run-common part of every
#: test's paired ratio had a log SD of 1.1%, and the tests' own run-to-run spread matched their
#: spread between sessions days apart (OpenVINO 4.5-6.5% both), so the rest is per reading.
COMMON_SPREAD = 0.011
_POWER_Z = 1.6448536269514722  # a 95% chance of flagging a slowdown of the detectable size
_POWER_Z_EACH = 1.959963984540054  # 97.5% for each of two stages: at least 95% for both


def suite_z(checks: int) -> float:
    """The interval's z for ``checks`` latency checks in one session: a 5% chance (one-sided,
    ``SUITE_ALPHA``) that any of them reads an unchanged test as slower; at least 1.96."""
    from scipy.stats import norm

    return max(1.959963984540054, float(norm.ppf(1.0 - SUITE_ALPHA / max(checks, 1))))


def between_spread(session_medians: Sequence[float], prior: float | None = None) -> float:
    """The between-session spread b (log SD) from a baseline's session medians, shrunk towards
    ``prior`` (learnt from the baseline file, ``priors.py``) with the weight of
    ``LEARNT_PRIOR_WEIGHT`` sessions; None: towards ``BETWEEN_PRIOR`` with the weight of
    ``BETWEEN_PRIOR_WEIGHT``."""
    n = len(session_medians)
    own = spread_of(list(session_medians)) ** 2 * (n - 1) if n >= 2 else 0.0
    weight = BETWEEN_PRIOR_WEIGHT if prior is None else LEARNT_PRIOR_WEIGHT
    prior = BETWEEN_PRIOR if prior is None else prior
    return float(np.sqrt((weight * prior**2 + own) / (weight + max(n - 1, 0))))


@dataclass(frozen=True)
class Spread:
    """The parts of a latency comparison's standard error (log units, see the module docstring)."""

    within: float  # s_w: this run's rounds (of all its readings, pooled)
    recording: float  # s_r: the recording's rounds
    between: float  # b: between sessions
    sessions: int  # k
    readings: int = 1  # m: this session's readings pooled (a suspect and its confirmation: 2)
    #: the earlier readings' part of ``within`` (log SE): their rounds are over, so more rounds
    #: of the reading being taken cannot narrow it
    earlier: float = 0.0
    #: this session's noise over its baselines' recordings', as a factor on its between-session
    #: term (noise.py; 1: as noisy as they were, or quieter)
    scale: float = 1.0

    @property
    def current(self) -> float:
        """The between-session variance of this session's pooled readings: the part the session
        shares (``COMMON_SPREAD``, at most b) plus the rest over m, times ``scale`` squared."""
        common = min(COMMON_SPREAD, self.between) ** 2
        return self.scale**2 * (common + (self.between**2 - common) / self.readings)

    @property
    def floor(self) -> float:
        """The variance more rounds of this run cannot remove."""
        return self.current + (self.between**2 + self.recording**2) / self.sessions

    @property
    def se(self) -> float:
        """The standard error of log r."""
        return float(np.sqrt(self.within**2 + self.floor))

    def within_settled(self) -> bool:
        """Whether the noise of the rounds still being taken is at most a quarter of the
        interval's variance (more rounds would not narrow it much). Pooled with earlier
        readings, their rounds' noise is part of what stays: a confirmation after a short first
        reading (a suspect stops its rounds early) is settled once its own rounds are, not never."""
        own = self.within**2 - self.earlier**2
        return own <= (self.floor + self.earlier**2) / 3

    def recording_settled(self) -> bool:
        """Whether the baseline's recording's own noise is at most a quarter of the interval's
        variance (a re-recording would not narrow it much). With ``within_settled``, at least
        half the variance is the between-session spread, which no run here narrows."""
        return self.recording**2 / self.sessions <= self.se**2 / 4


def midpoint(limit: float) -> float:
    """H, halfway between no change and the limit L: a reading above it is a slowdown's."""
    return (1.0 + limit) / 2.0


def detectable_pct(spread: Spread, checks: int, half: float, two_stage: bool) -> float:
    """The smallest slowdown (percent) flagged 19 times in 20: the reading's, a true ratio R
    being flagged when R > H and R exp(-z SE) > 1 (z for ``checks`` times its readings); or,
    ``two_stage`` (a suspect is measured again and judged pooled), the larger of the screen's
    (at ``SCREEN_Z``, this reading's SE) and the pooled judgement's (at z for twice the checks,
    the SE of two such readings), each at 97.5% power so both together at least 95%."""
    z = suite_z(checks * spread.readings)
    if not two_stage:
        return float((max(half * np.exp(_POWER_Z * spread.se),
                          np.exp((z + _POWER_Z) * spread.se)) - 1.0) * 100.0)
    each = _POWER_Z_EACH
    pooled = replace(spread, within=spread.within / np.sqrt(2.0), readings=spread.readings * 2).se
    worst = max(half * np.exp(each * spread.se), np.exp((SCREEN_Z + each) * spread.se),
                half * np.exp(each * pooled), np.exp((suite_z(checks * 2) + each) * pooled))
    return float((worst - 1.0) * 100.0)
