"""Step detection in a metric's history (latency, memory, SSIM over runs), as asv does.

A history is modelled as piecewise constant plus noise. ``change_points`` fits it with PELT
(``ruptures``, an L2 cost: each segment's squared deviations from its mean) and a penalty per
extra segment of ``PENALTY_SCALE * sigma**2 * log(n)``, a BIC-like penalty: a split is kept only
when it explains more than noise of that size would by chance. The values are first divided by
their median, so one rule fits seconds, bytes and SSIM alike, and sigma (the run-to-run noise)
is estimated robustly from the median absolute difference of consecutive runs, which a few
steps barely move. ``NOISE_FLOOR`` keeps a perfectly flat history from flagging changes of a
fraction of a percent.

Example::

    >>> change_points([1.0, 1.01, 0.99, 1.0, 1.5, 1.49, 1.51, 1.5])
    [4]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

PENALTY_SCALE = 3.0
NOISE_FLOOR = 0.005  # relative: 0.5% of the median
MIN_SEGMENT = 2  # runs on each side of a step; a single odd run is an outlier, not a step


@dataclass(frozen=True)
class Step:
    """A change of level: ``index`` is the first run at the new level."""

    index: int
    before: float
    after: float

    @property
    def change_pct(self) -> float:
        """The new level against the old, in percent (positive: went up)."""
        return (self.after / self.before - 1.0) * 100.0 if self.before else math.inf


def noise_sigma(values: np.ndarray) -> float:
    """Run-to-run noise: 1.4826 * median |x[i+1] - x[i]| / sqrt(2) (robust to steps)."""
    if len(values) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(np.diff(values))) / math.sqrt(2.0))


def change_points(values: Sequence[float], min_size: int = MIN_SEGMENT) -> list[int]:
    """Indices at which a new level starts, in increasing order (empty when there is none)."""
    import ruptures

    data = np.asarray(values, dtype=float)
    n = len(data)
    if n < 2 * min_size or not np.all(np.isfinite(data)):
        return []
    scale = abs(float(np.median(data))) or 1.0
    normed = data / scale
    sigma = max(noise_sigma(normed), NOISE_FLOOR)
    penalty = PENALTY_SCALE * sigma**2 * math.log(n)
    algo = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(normed.reshape(-1, 1))
    return [int(b) for b in algo.predict(pen=penalty) if b < n]


def steps(values: Sequence[float], min_size: int = MIN_SEGMENT) -> list[Step]:
    """The change points with the median level of the segment before and after each."""
    data = [float(v) for v in values]
    cuts = change_points(data, min_size)
    bounds = [0, *cuts, len(data)]
    out = []
    for i, cut in enumerate(cuts):
        before = float(np.median(data[bounds[i]:cut]))
        after = float(np.median(data[cut:bounds[i + 2]]))
        out.append(Step(cut, before, after))
    return out
