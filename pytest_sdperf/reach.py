"""What a baseline file lets the latency gate see: each entry's smallest detectable slowdown
after a given number of rounds, and its floor, what no number of rounds goes under.

The gate's interval (compare.py) has SE^2 = s_w^2 + b^2 + (b^2 + s_r^2)/k for one reading.
More rounds narrow only s_w, this run's noise; the between-session spread b and the
recording's s_r stay. So a test whose b is wide cannot see a slowdown of its limit's size
however long it samples: the floor says so before a nightly does, and what would lower it
(more sessions, a steadier figure to compare, a limit of the test's own).

Every figure comes from the gate's own functions on the entry as stored: the figure the paired
gate compares (``compare.latency_figures``), the prior learnt from the same file
(``priors.learn``), the between-session spread (``interval.between_spread``) and the smallest
detectable slowdown of the two-stage gate (``interval.detectable_pct``). This run's noise after n
rounds is the recording's bootstrap SE of its log median scaled by sqrt(its rounds / n): the
recording's rounds stand for a run's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Mapping

import numpy as np

from .baselines import BaselineEntry
from .compare import RESAMPLES, latency_figures
from .config import DECIDE_MIN_ROUNDS
from .interval import Spread, between_spread, detectable_pct, midpoint
from .measure.latency import log_median_se
from .priors import for_family, learn

#: The most rounds the projection looks at (``rounds_for``): beyond it, "more than".
MOST_ROUNDS = 400


@dataclass(frozen=True)
class Reach:
    """One entry's projection (percentages are slowdowns the gate flags 19 times in 20)."""

    test: str
    variant: str
    figure: str  # paired, yardstick, relative or seconds: what the paired gate compares
    sessions: int  # k
    between: float  # b, log SD, shrunk towards its prior
    prior: float | None  # the prior learnt from the file for the family and figure; None: 3%
    per_round: float  # log SD of the recording's per-round figures
    round_s: float  # seconds one round takes: the variant's, its reference's and yardstick's medians
    limit_pct: float
    at: Mapping[int, float]  # rounds -> smallest detectable slowdown
    floor_pct: float  # with any number of rounds
    rounds_for_limit: int | None  # the fewest rounds that see the limit; None: none do
    #: the floor were the entry to hold this many sessions (``sessions``: the ones it holds), the
    #: same spread between them: what maturing the baseline would bring
    matured: tuple[int, float] | None = None

    @property
    def floor_over_limit(self) -> bool:
        """Whether no number of rounds sees the limit (its floor is over it)."""
        return self.floor_pct > self.limit_pct

    @property
    def matured_reachable(self) -> bool:
        """Whether the floor with ``matured``'s sessions is at or under the limit."""
        return self.matured is not None and self.matured[1] <= self.limit_pct

    @property
    def reachable(self) -> bool:
        """Whether some number of rounds sees a slowdown of the limit's size."""
        return self.rounds_for_limit is not None


def reach_of(test: str, entry: BaselineEntry, checks: int, limit_pct: float,
             prior: Mapping[str, float], rounds: tuple[int, ...] = (DECIDE_MIN_ROUNDS, 30),
             reference: str = "torch-fp32", sessions: int | None = None) -> Reach:
    """``entry``'s projection among ``checks`` latency checks of a session, at ``rounds``;
    ``sessions``: its floor too were it to hold that many sessions (at least its own)."""
    stats = entry.latency
    figures = latency_figures("paired", stats, stats, reference)
    recorded = [float(x) for x in figures.baseline]
    medians = [m for m in figures.sessions if m > 0] or [float(np.median(recorded))]
    own_prior = prior.get(figures.session_figure)
    s_r = log_median_se(recorded, RESAMPLES)
    base = Spread(0.0, s_r, between_spread(medians, own_prior), len(medians))
    half = midpoint(1.0 + limit_pct / 100.0)

    def sees(n: int) -> float:
        within = s_r * math.sqrt(len(recorded) / n)
        return detectable_pct(replace(base, within=within), checks, half, True)

    floor = detectable_pct(base, checks, half, True)
    matured = None
    if sessions is not None:
        k = max(sessions, base.sessions)
        matured = (k, detectable_pct(replace(base, sessions=k), checks, half, True))
    need = rounds_for(sees, limit_pct) if floor <= limit_pct else None
    per_round = float(np.std(np.log(recorded), ddof=1)) if len(recorded) > 1 else 0.0
    round_s = sum(float(np.median(side)) for side in (stats.samples, stats.reference, stats.yardstick)
                  if len(side) == len(stats.samples))
    return Reach(test, entry.variant, figures.session_figure, len(medians), base.between, own_prior,
                 per_round, round_s, limit_pct, {n: sees(n) for n in rounds}, floor, need, matured)


def rounds_for(sees: Callable[[int], float], limit_pct: float) -> int | None:
    """The fewest rounds (at least ``DECIDE_MIN_ROUNDS``, at most ``MOST_ROUNDS``) whose
    smallest detectable slowdown is at most ``limit_pct``; None: more than ``MOST_ROUNDS``.
    ``sees`` falls as rounds grow, so a bisection finds it."""
    low, high = DECIDE_MIN_ROUNDS, MOST_ROUNDS
    if sees(high) > limit_pct:
        return None
    while low < high:
        mid = (low + high) // 2
        if sees(mid) <= limit_pct:
            high = mid
        else:
            low = mid + 1
    return low


def reach_of_file(entries: Mapping[str, BaselineEntry], family_of: Callable[[str], str],
                  limit_of: Callable[[BaselineEntry], float], checks: int | None = None,
                  rounds: tuple[int, ...] = (DECIDE_MIN_ROUNDS, 30),
                  reference: str = "torch-fp32", sessions: int | None = None) -> list[Reach]:
    """Every entry's projection, with the priors learnt from these entries as the gate learns
    them; ``checks``: latency checks of the session (None: one per entry); ``sessions``: see
    ``reach_of``."""
    plain = {key: {"variant": e.variant, "latency": e.latency.to_dict()} for key, e in entries.items()}
    learnt = learn(plain, family_of)
    n = checks if checks is not None else max(len(entries), 1)
    return [reach_of(key, e, n, limit_of(e), for_family(learnt, family_of(e.variant)), rounds, reference,
                     sessions) for key, e in entries.items()]


def short_test(key: str) -> str:
    """An entry key's test name: ``test_text_to_image[env-iomp]`` (the file, model and
    workload left out)."""
    return key.split("::", 1)[-1].split("@", 1)[0]


def table(reaches: list[Reach]) -> list[list[str]]:
    """Rows for ``sdperf baselines reach`` (the first row is the header)."""
    rounds = sorted(reaches[0].at) if reaches else []
    matured = any(r.matured for r in reaches)
    rows = [["test", "figure", "k", "between", "per round", "s/round", "limit",
             *(f"sees@{n}" for n in rounds), "floor", *(["floor with K sessions"] if matured else []),
             "rounds for the limit"]]
    for r in reaches:
        prior = "prior 3%" if r.prior is None else f"prior {r.prior:.1%}"
        rows.append([short_test(r.test), r.figure, str(r.sessions), f"{r.between:.1%} ({prior})",
                     f"{r.per_round:.1%}", f"{r.round_s:.2f}", f"{r.limit_pct:g}%",
                     *(f"{r.at[n]:.1f}%" for n in rounds), f"{r.floor_pct:.1f}%",
                     *([_matured_cell(r)] if matured else []), _need_cell(r)])
    return rows


def _matured_cell(r: Reach) -> str:
    return f"{r.matured[1]:.1f}% (K={r.matured[0]})" if r.matured else "-"


def _need_cell(r: Reach) -> str:
    """The fewest rounds that see the limit and their time, or why none do."""
    if r.rounds_for_limit is not None:
        return f"{r.rounds_for_limit} (~{r.rounds_for_limit * r.round_s:.0f} s)"
    if r.floor_over_limit:
        return "none: the floor is over the limit"
    return f"more than {MOST_ROUNDS}: the floor is just under it"
