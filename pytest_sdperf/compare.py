"""Pure verdict functions: (measurement, baseline, thresholds) -> checks.

Latency rule (samples may be seconds, or ratios to a paired reference or to the calibration
workload): r, the ratio of medians (current / baseline), with a 95% bootstrap confidence
interval from the two sets of samples. ``latency_pct`` is the slowdown the gate must catch:
with the limit L = 1 + latency_pct/100 and its midpoint H = 1 + latency_pct/200,

- **regression** when r is above H and the interval lies above 1 (significantly slower, by
  more than half the limit: a slowdown of L itself is caught once the interval is narrower
  than latency_pct/2 either side);
- **pass** when r is at or below H and the interval's upper bound is at or below L (no
  slowdown of the limit's size fits the data);
- **inconclusive** otherwise (noise too large for the rounds taken: take more rounds).

The smallest slowdown a comparison could detect is latency_pct/2 plus the interval's half
width: the point must clear H by the interval's half width for the interval to clear 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from .measure.latency import LatencyStats, median_interval
from .measure.memory import common_figure

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Check:
    """One metric's verdict: measured against baseline and limit, in the metric's units."""

    metric: str
    status: str
    measured: float
    baseline: float | None
    limit: float
    unit: str
    detail: str = ""
    detectable_pct: float | None = None
    interval: tuple[float, float] | None = None  # the 95% interval of ``measured`` (latency)

    def message(self) -> str:
        """One line naming the metric, the values and the limit."""
        base = "" if self.baseline is None else f", baseline {_fmt(self.baseline, self.unit)}"
        extra = f" ({self.detail})" if self.detail else ""
        return (
            f"{self.metric}: measured {_fmt(self.measured, self.unit)}{base}, "
            f"limit {_fmt(self.limit, self.unit)}{extra}"
        )


def _fmt(value: float, unit: str) -> str:
    if unit == "B":
        return f"{value / 2**20:.1f} MiB"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "x":
        return f"{value:.3f}x"
    return f"{value:.4g}"


def ratio_of_medians_ci(
    current: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(point, low, high) of median(current)/median(baseline), percentile bootstrap."""
    cur, base = np.asarray(current, float), np.asarray(baseline, float)
    point = float(np.median(cur) / np.median(base))
    if len(cur) < 2 or len(base) < 2:
        return point, point, point
    from scipy.stats import bootstrap

    res = bootstrap(
        (cur, base),
        lambda a, b, axis=-1: np.median(a, axis=axis) / np.median(b, axis=axis),
        n_resamples=RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(0),
    )
    low, high = res.confidence_interval
    return point, float(min(low, point)), float(max(high, point))


def compare_latency(current: Sequence[float], baseline: Sequence[float], pct: float,
                    seconds: bool = True) -> Check:
    """Latency verdict under the rule in this module's docstring (``seconds``: the samples are
    seconds, else ratios to a paired reference or to the calibration)."""
    point, low, high = ratio_of_medians_ci(current, baseline)
    limit, half = 1.0 + pct / 100.0, 1.0 + pct / 200.0
    unit = " s" if seconds else ""
    what = "median" if seconds else "median per-round ratio"
    detail = (
        f"{what} {np.median(current):.3f}{unit} vs {np.median(baseline):.3f}{unit}, "
        f"95% CI of the ratio {low:.3f}-{high:.3f}, n={len(current)}/{len(baseline)}"
    )
    # A true ratio R shows up with about this interval around it, so the run flags it once
    # R > H and R - halfwidth > 1: the smallest slowdown this run could have detected.
    halfwidth = (high - low) / 2
    detectable = (max(half - 1.0, 0.0) + halfwidth) * 100.0
    detectable = max(detectable, 2 * halfwidth * 100.0)
    detail += f", smallest detectable slowdown {detectable:.0f}%"
    if point > half and low > 1.0:
        status = FAIL
    elif point <= half and high <= limit:
        status = PASS
    else:
        status = INCONCLUSIVE
        detail += "; too noisy to decide: raise --sdperf-rounds or --sdperf-time-budget"
    return Check("latency ratio", status, point, 1.0, limit, "x", detail, detectable, (low, high))


@dataclass(frozen=True)
class LatencyFigures:
    """The samples the latency gate compares, the mode they are of, and why if not the one asked."""

    mode: str
    current: tuple[float, ...]
    baseline: tuple[float, ...]
    metric: str
    note: str = ""


def latency_figures(mode: str, current: LatencyStats, stored: LatencyStats, reference: str = "") -> LatencyFigures:
    """What ``--sdperf-gate MODE`` compares: ``paired``, each round over the ``reference``
    variant's round beside it; ``relative``, over the calibration workload; ``absolute``,
    seconds. Paired falls back to relative where either side lacks the reference's rounds (the
    reference variant itself, a baseline recorded without it), and relative to seconds where
    either side lacks calibration or the two were calibrated with different workloads."""
    cur_pair, base_pair = current.paired(), stored.paired()
    if mode == "paired" and cur_pair and base_pair:
        return LatencyFigures("paired", cur_pair, base_pair, f"latency ratio (paired with {reference})")
    cur_rel, base_rel = current.relative(), stored.relative()
    relative = mode in ("relative", "paired")
    if relative and cur_rel and base_rel and stored.kernel() == current.kernel():
        return LatencyFigures("relative", cur_rel, base_rel, "latency ratio (relative to calibration)")
    note = ""
    if relative and cur_rel and base_rel:
        note = (f"compared in seconds: the baseline was calibrated with {stored.kernel()}, "
                f"this run with {current.kernel()}; --sdperf-update-all re-records it")
    return LatencyFigures("absolute", current.samples, stored.samples, "latency ratio", note)


def check_latency(mode: str, current: LatencyStats, stored: LatencyStats, pct: float,
                  reference: str = "") -> Check:
    """The latency gate's check in ``mode`` (see ``latency_figures``)."""
    figures = latency_figures(mode, current, stored, reference)
    check = compare_latency(figures.current, figures.baseline, pct, figures.mode == "absolute")
    detail = f"{check.detail}; {figures.note}" if figures.note else check.detail
    return replace(check, metric=figures.metric, detail=detail)


def compare_speedup(paired: Sequence[float], floor: float, reference: str) -> Check:
    """Speedup floor: the speedup over ``reference`` is 1 / the median of the per-round paired
    ratios (variant / reference), with the 95% bootstrap interval of that median inverted.
    **Fail** when the whole interval lies below ``floor`` (significantly slower than the floor),
    **pass** when the point is at or above it, **inconclusive** otherwise."""
    median = float(np.median(paired))
    low = high = median
    if len(paired) >= 2:
        low, high = median_interval(paired, RESAMPLES, CONFIDENCE)
        low, high = min(low, median), max(high, median)
    point, interval = 1.0 / median, (1.0 / high, 1.0 / low)
    detail = f"95% CI {interval[0]:.3f}-{interval[1]:.3f}, n={len(paired)} paired rounds"
    if interval[1] < floor:
        status = FAIL
    elif point >= floor:
        status = PASS
    else:
        status = INCONCLUSIVE
        detail += "; too noisy to decide: raise --sdperf-rounds or --sdperf-time-budget"
    return Check(f"speedup over {reference}", status, point, None, floor, "x", detail,
                 interval=interval)


def compare_memory(current: float, baseline: float, pct: float, figure: str) -> Check:
    """Memory verdict: fail above ``baseline * (1 + pct/100)``."""
    limit = baseline * (1.0 + pct / 100.0)
    status = FAIL if current > limit else PASS
    return Check(f"memory ({figure})", status, current, baseline, limit, "B")


def compare_memory_figures(
    current: Mapping[str, Any], baseline: Mapping[str, Any], pct: float
) -> Check | None:
    """The memory check on the first figure of ``measure.memory.GATED_FIGURES`` both records
    have (None when they share none); a baseline recorded before ``peak_anon`` is compared on
    peak RSS, and the message says so."""
    figure = common_figure(current, baseline)
    if figure is None:
        return None
    name, measured, base = figure
    check = compare_memory(measured, base, pct, name)
    if name == "peak_rss" and current.get("peak_anon"):
        note = ("compared on peak RSS, which counts file-backed pages of shared libraries: "
                "the baseline predates peak_anon; --sdperf-update-all re-records it")
        check = replace(check, detail=f"{check.detail}; {note}")
    return check


def compare_similarity(ssim: float, psnr: float, min_ssim: float, min_psnr: float) -> list[Check]:
    """Similarity to the FP32 reference: fail below the minimum SSIM or PSNR."""
    return [
        Check("SSIM", FAIL if ssim < min_ssim else PASS, ssim, None, min_ssim, ""),
        Check("PSNR", FAIL if psnr < min_psnr else PASS, psnr, None, min_psnr, "dB"),
    ]


STAGE_NAMES = {"text_encode": "text encoding", "step": "one denoising step", "vae_decode": "VAE decode"}


def stage_changes(current: Mapping[str, float], stored: Mapping[str, float]) -> str:
    """Which pipeline stage moved: each stage's median now over the baseline's, largest change
    first, e.g. ``one denoising step 1.31x, VAE decode 1.02x, text encoding 0.99x``; empty
    where either side has no stage timings."""
    ratios = {STAGE_NAMES[k]: current[k] / stored[k] for k in STAGE_NAMES
              if current.get(k) and stored.get(k)}
    ranked = sorted(ratios.items(), key=lambda kv: -abs(kv[1] - 1.0))
    return ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ranked)
