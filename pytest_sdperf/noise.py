"""How much noisier this session is than its baselines' recordings, and how much wider that
makes each test's between-session term.

A test's between-session spread b is learnt from its baseline's sessions (compare.py), and
those were recorded on quieter hours than many a run meets: the spread of unchanged tests'
readings around their baselines grew with the machine's round-to-round noise (2026-12-07: an
rms log ratio of 1.3-3.2% in runs whose rounds spread 2-7%, 3.4-6.8% at 9-13%). So a session
that is noisier than its baselines' recordings widens this session's part of the interval:
b times ``scale``, the square root of (the median round spread of the tests judged so far
this session over the median of their recordings'), at least 1 (a quieter session is not
narrowed: measured once), at most ``SCALE_MAX``, and 1 until ``MIN_TESTS`` tests are judged.

Why the square root, measured: re-judging the 172 unchanged readings of seven noisy runs of
2026-12-07 (noise 6.2-9.1% against the recordings' 4.0%), their z scores' rms was 1.16 as
judged, 1.03 with the square root, 0.83 with the ratio itself; the square root removed one false
failure (ov-int8-weights 1.069x pooled) and kept every caught +10% target, where the ratio
itself lost vae-slicing's two. (docs/measurements.md: "Confirmations back to back, and three ways of
widening, measured".)
"""

from __future__ import annotations

import statistics
from typing import Iterable

#: Tests judged before the session's noise widens anything.
MIN_TESTS = 4
#: The power of (noise now over noise at the recordings) that scales b.
EXPONENT = 0.5
#: The widest scale (noise four times the recordings').
SCALE_MAX = 2.0


def medians(pairs: Iterable[tuple[float | None, float | None]]) -> tuple[int, float, float] | None:
    """(tests, median now, median at the recordings) over the pairs with both spreads, else None."""
    both = [(now, then) for now, then in pairs if now is not None and then is not None and then > 0]
    if not both:
        return None
    return (len(both), statistics.median(p[0] for p in both), statistics.median(p[1] for p in both))


def session_scale(pairs: Iterable[tuple[float | None, float | None]]) -> float:
    """The factor on this session's between-session term (module docstring), from the round
    spreads (this session's, its recording's) of the tests judged so far."""
    found = medians(pairs)
    if found is None or found[0] < MIN_TESTS:
        return 1.0
    return scale_of(found[1], found[2])


def scale_of(now: float, then: float) -> float:
    """The factor for a median round spread ``now`` against ``then`` at the recordings."""
    return min(SCALE_MAX, float(max(1.0, now / then) ** EXPONENT))
