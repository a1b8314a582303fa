"""Charts for the HTML report, drawn with matplotlib and returned as PNG bytes.

matplotlib is imported inside each function (``Figure`` objects, no pyplot and no global
backend state), so importing this module is cheap and safe in any process.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .history import HistoryPoint

VERDICT_COLOURS = {
    "pass": "#2e7d32", "updated": "#2e7d32", "regression": "#c62828", "error": "#c62828",
    "inconclusive": "#ef6c00", "recorded": "#1565c0",
}
NEUTRAL = "#607d8b"
MIN_TREND_SPAN = 0.2  # trend charts' y range covers at least +-10% of its centre
DPI = 100


def _figure(width: float = 4.3, height: float = 3.2) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def to_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _style(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def bar_chart(labels: Sequence[str], values: Sequence[float | None], verdicts: Sequence[str],
              title: str, ylabel: str, fmt: str = "{:.2f}", baseline: float | None = None,
              intervals: Sequence[tuple[float, float] | None] | None = None) -> bytes:
    """Vertical bars, one per label, coloured by verdict and labelled with their value;
    ``intervals`` (low, high) are drawn as error bars where given."""
    fig = _figure(max(4.3, 0.7 * len(labels) + 1.5))
    ax = fig.add_subplot()
    heights = [v if v is not None else 0.0 for v in values]
    colours = [VERDICT_COLOURS.get(v, NEUTRAL) for v in verdicts]
    bars = ax.bar(range(len(labels)), heights, color=colours)
    for i, (h, span) in enumerate(zip(heights, intervals or [None] * len(heights), strict=True)):
        if span is not None:
            ax.errorbar(i, h, yerr=[[max(0.0, h - span[0])], [max(0.0, span[1] - h)]], color="black",
                        capsize=3, lw=1)
    ax.bar_label(bars, [fmt.format(v) if v is not None else "n/a" for v in values], fontsize=8)
    if baseline is not None:
        ax.axhline(baseline, color="black", lw=0.8, ls="--")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    _style(ax, title, ylabel)
    return to_png(fig)


def tradeoff_scatter(labels: Sequence[str], speedups: Sequence[float | None],
                     ssims: Sequence[float | None], verdicts: Sequence[str],
                     min_ssim: float | None = None) -> bytes:
    """Speedup (x) against SSIM to the reference (y): the speed/quality trade-off.

    Points are numbered and named in a key beside the axes: with twenty variants near SSIM 1,
    names written at the points would cover each other.
    """
    points = [(label, x, y, verdict)
              for label, x, y, verdict in zip(labels, speedups, ssims, verdicts, strict=True)
              if x is not None and y is not None]
    fig = _figure(width=6.6 if len(points) > 6 else 5.2, height=max(3.2, 0.16 * len(points) + 0.6))
    ax = fig.add_subplot()
    for number, (label, x, y, verdict) in enumerate(points, start=1):
        ax.scatter([x], [y], s=50, color=VERDICT_COLOURS.get(verdict, NEUTRAL), zorder=3,
                   label=f"{number} {label}")
        ax.annotate(str(number), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    if min_ssim is not None:
        ax.axhline(min_ssim, color="#c62828", lw=0.8, ls=":", label=f"min SSIM {min_ssim:g}")
    if points or min_ssim is not None:
        # Outside the axes: constrained layout makes room for it.
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                  handletextpad=0.3, borderaxespad=0.0)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xlabel("speedup against the reference (x)")
    _style(ax, "speed / quality (up and right is better)", "SSIM to the reference")
    ax.grid(axis="x", alpha=0.3)
    return to_png(fig)


def trend_chart(lines: Mapping[str, Sequence[HistoryPoint]], metric: str, ylabel: str,
                steps: Mapping[str, Sequence[int]]) -> bytes:
    """One line per test over the runs (x: run number), change points marked with a red ring."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure()
    ax = fig.add_subplot()
    runs = sorted({p.run_id for pts in lines.values() for p in pts})
    index = {run: i + 1 for i, run in enumerate(runs)}
    for label, pts in lines.items():
        xs = [index[p.run_id] for p in pts]
        ys = [p.value(metric) or 0.0 for p in pts]
        ax.plot(xs, ys, marker="o", ms=3, lw=1.3, label=label)
        for cut in steps.get(label, ()):
            ax.axvline(xs[cut] - 0.5, color="#c62828", lw=0.8, ls="--", alpha=0.6)
            ax.plot([xs[cut]], [ys[cut]], "o", ms=10, mfc="none", mec="#c62828", mew=1.6)
    _min_span(ax, MIN_TREND_SPAN)
    ax.set_xlabel(f"run (1 = oldest of {len(runs)})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _style(ax, ylabel, ylabel)
    if lines:
        ax.legend(fontsize=7, loc="best")
    return to_png(fig)


def sweep_chart(curves: Mapping[str, Sequence[tuple[int, float, float]]],
                knees: Mapping[str, int | None], caps_ms: Mapping[str, float], setting: str) -> bytes:
    """The latency-capped sweeps: throughput (y) against the p90 latency (x, ms), one line per
    test, each point labelled with its setting's value; the knee ringed, each cap a dotted line
    in its line's colour. ``curves``: label -> (value, p90 seconds, images/s) in sweep order."""
    fig = _figure(width=5.6, height=3.6)
    ax = fig.add_subplot()
    for label, pts in curves.items():
        xs = [lat * 1000.0 for _, lat, _ in pts]
        ys = [rate for _, _, rate in pts]
        (line,) = ax.plot(xs, ys, marker="o", ms=4, lw=1.4, label=label)
        for (value, _, _), x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(str(value), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            if value == knees.get(label):
                ax.plot([x], [y], "o", ms=11, mfc="none", mec=line.get_color(), mew=1.8)
        if label in caps_ms:
            ax.axvline(caps_ms[label], color=line.get_color(), lw=0.9, ls=":")
    ax.set_xlabel("p90 latency of a call (ms); dotted: the cap")
    _style(ax, f"throughput as {setting} rises (ringed: the knee)", "images/s")
    if curves:
        ax.legend(fontsize=7, loc="best")
    return to_png(fig)


def _min_span(ax: Axes, fraction: float) -> None:
    """Widen the y range to at least ``fraction`` of its centre, so that noise of a fraction
    of a percent does not fill the chart like a real change would."""
    low, high = ax.get_ylim()
    centre = (low + high) / 2
    half = abs(centre) * fraction / 2
    if high - low < 2 * half:
        ax.set_ylim(centre - half, centre + half)


def diff_heatmap(obtained: np.ndarray, reference: np.ndarray) -> tuple[bytes, int]:
    """|obtained - reference| averaged over RGB, as a 'magma' heat map PNG; also the max.

    The colour scale runs from 0 to the largest difference (at least 8 of 255, so noise of a
    level or two stays dark); the caption must give that maximum.
    """
    from matplotlib import colormaps
    from PIL import Image

    diff = np.abs(obtained.astype(np.int16) - reference.astype(np.int16)).mean(axis=-1)
    peak = int(np.abs(obtained.astype(np.int16) - reference.astype(np.int16)).max())
    rgba = colormaps["magma"](diff / max(float(diff.max()), 8.0), bytes=True)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[..., :3])).save(buf, format="PNG")
    return buf.getvalue(), peak
