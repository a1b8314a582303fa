"""The between-session spread each test's interval assumes, learnt from its baseline file.

compare.py shrinks a test's between-session spread b (the log SD of its baseline sessions'
medians) towards a prior. One prior for every test (``interval.BETWEEN_PRIOR``, 3%) is too wide
for steady variants and too narrow for others: in the committed AVX-512 baseline (four sessions
a test, 2026-12-05), the median spread of a family's tests was 1.7% for ``torch`` (paired),
2.0% for ``system`` (the env-* variants), 4.5% for ``openvino`` and 5.6% for the reference
variant's own tests (judged against the calibration workload). So the prior is learnt from the
same file, per variant family and gate figure (an empirical Bayes estimate): the median spread
of the file's entries of that family with at least ``MIN_SESSIONS`` sessions of that figure,
where at least ``MIN_TESTS`` such entries exist (never under ``FLOOR``); elsewhere
``interval.BETWEEN_PRIOR`` stands. A learnt prior rests on several tests' sessions, so it weighs
as ``interval.LEARNT_PRIOR_WEIGHT`` sessions of one test.

Re-judging the stored readings of the 27 suite-harness runs of 2026-12-05 against the baseline
they met (computed on 702 readings): with learnt priors, runs with a false first reading of
regression went from 4 to 2, and first readings of a slowed variant caught went from 5 to 6 of
12 (10% slower) and from 3 to 4 of 4 (25% slower).
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Mapping

import numpy as np

#: An entry's spread counts once it has this many sessions of the figure.
MIN_SESSIONS = 3
#: A family's prior is learnt once this many of the file's entries have MIN_SESSIONS sessions.
MIN_TESTS = 3
#: A learnt prior is never below this (a family of steady tests must not promise more than a
#: few readings showed).
FLOOR = 0.01
#: The session figures a prior is learnt for (see ``LatencyStats.session_summary``).
FIGURES = ("paired", "yardstick", "relative", "seconds")

def spread_of(medians: list[float]) -> float:
    """The log SD (ddof 1) of session medians."""
    return float(np.std(np.log(np.asarray(medians, float)), ddof=1))


def learn(entries: Mapping[str, Any], family_of: Callable[[str], str]) -> dict[tuple[str, str], float]:
    """(family, figure) -> learnt prior, from a baseline file's entries (plain data, as stored);
    ``family_of(variant name)`` gives a variant's family. Groups with too few sessions or
    entries are left out (the caller's default applies)."""
    spreads: dict[tuple[str, str], list[float]] = {}
    for data in entries.values():
        sessions = (data.get("latency") or {}).get("sessions") or ()
        family = family_of(str(data.get("variant", "")))
        for figure in FIGURES:
            medians = [float(s[figure]) for s in sessions if float(s.get(figure, 0)) > 0]
            if len(medians) >= MIN_SESSIONS:
                spreads.setdefault((family, figure), []).append(spread_of(medians))
    return {group: max(FLOOR, statistics.median(values))
            for group, values in spreads.items() if len(values) >= MIN_TESTS}


def for_family(learnt: Mapping[tuple[str, str], float], family: str) -> dict[str, float]:
    """The priors a test of ``family`` is judged with, per figure."""
    return {figure: prior for (fam, figure), prior in learnt.items() if fam == family}
