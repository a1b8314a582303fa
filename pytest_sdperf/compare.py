"""Pure verdict functions: (measurement, baseline, thresholds) -> checks.

Latency rule (samples may be seconds, or ratios to a paired reference or to the calibration
workload; the interval's pieces, ``Spread``, ``suite_z``, ``between_spread`` and
``detectable_pct``, are in ``interval.py``). A run's figure is the median of its rounds; a baseline holds the medians of the
sessions it was recorded and confirmed in (``LatencyStats.sessions``: the recording, then each
later session that did not regress, up to ``BASELINE_SESSIONS``). On these 2-core machines a
test's median moves between sessions by more than one session's rounds can show (the machine's
state changes over hours: a whole recording ran 30% slower, with ratios between unlike
variants off by up to 10%), so the comparison carries that spread:

- r = median(current) / geometric mean of the baseline's session medians;
- its standard error in log units, SE^2 = s_w^2 + (g b)^2 + (b^2 + s_r^2) / k: s_w and s_r the
  bootstrap standard errors of the log median of this run and of the recording, k the
  baseline's sessions, g this session's noise scale (``noise.py``: 1 unless the session's
  rounds move more than its baselines' recordings' did), b the between-session spread: the spread (log SD) of the baseline's
  session medians, shrunk towards a prior: the spread learnt from the baseline file's tests of
  the variant's family (``priors.py``) with the weight of ``LEARNT_PRIOR_WEIGHT`` sessions,
  else ``BETWEEN_PRIOR`` with the weight of ``BETWEEN_PRIOR_WEIGHT`` (so one or two sessions
  lean on the prior, five more on themselves);
- the interval is r * exp(+-z SE), z corrected for the number of latency checks N in the
  session (``suite_z``: a 5% chance, one-sided, that any of N unchanged tests reads slower).

With the limit L = 1 + latency_pct/100 and its midpoint H = 1 + latency_pct/200:

- **regression** when r is above H and the interval lies above 1;
- **pass** when r is at or below H, or the interval's upper bound is at or below L, or, above H
  but not a regression, when the between-session spread is what makes the interval wide
  (``within_settled``: the noise of the rounds still being taken is at most a quarter of the
  interval's variance, so more rounds would not narrow it much; and ``recording_settled``: the recording's noise is at
  most a quarter of it too). A pass above H, or one whose rounds ended
  while more would still have narrowed an interval reaching above L, carries a note
  (``Check.note``) saying so and what it could see (its smallest detectable slowdown). (Until
  2026-12-05 both were inconclusive: against the committed baseline, 3-5 tests of every
  unchanged run read so, so a ``--sdperf-strict`` nightly failed every night on nothing.)
- **inconclusive** otherwise: a reading above H that this run could still have decided (its
  rounds ended first: take more) or that the baseline's recording is too noisy to decide
  against (re-record it).

The smallest detectable slowdown is the one this comparison would flag 19 times in 20: a true
ratio R is flagged when R > H and R exp(-z SE) > 1, so with 95% power at
max(H exp(1.645 SE), exp((z + 1.645) SE)).

**Screen and pooled confirmation** (``confirm``: the gate's tests, ``confirm.confirmed``). A
single reading is a *suspect* when r > H and r exp(-``SCREEN_Z`` SE) > 1 (a 2.5% chance per
unchanged test). A suspect is measured again in fresh workers (a fresh variant worker beside the
session's reference), after the session's other tests (``later.py``: back to back, the two
readings shared the moment), and the two readings are judged pooled: r the geometric mean of the two,
s_w^2 the mean of theirs over 2, and the between-session term of this session c^2 + (b^2 -
c^2) / 2, c = ``COMMON_SPREAD`` (what a session's readings share; the rest is per reading, as
measured), at z for twice the session's checks (each test may be judged twice). The pooled
judgement alone bounds the suite's false alarms (2.5% under the model, the screen only lowers
it); the pair sees a smaller slowdown than one reading at the suite's z. The confirmation's
auto rounds sample until the pooled comparison is decided; pooled, the first reading's rounds
noise is part of what more rounds cannot narrow (``Spread.earlier``), so a confirmation after a
short first reading (the screen stops its rounds early) settles once its own rounds are precise. A confirmation that
disagrees with the first reading (``disagree``: further apart than their noise allows, at 1%)
and is not a suspect on its own is judged alone, as when a burst of other work made the first
slow. (Until 2026-12-07 any confirmation that was not a suspect on its own was judged alone:
with the confirmation after the session's other tests, a +10% ov-static read 1.138x and then
1.049x, which agree, and was missed.) Simulated (40-200 runs of 26 tests, the model's spread per reading): a 10%
slowdown of a test with a 1.7% between-session spread caught in 199 of 200 runs (79% by a
first reading and a confirmation each at the suite's z, the rule before 2026-12-06), false
alarms in 2-3% of unchanged runs (about 1% before); at a 4.5% spread, 22% caught (10%).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from .interval import (  # noqa: F401  (BETWEEN_PRIOR..COMMON_SPREAD: their old home, compare.X)
    BETWEEN_PRIOR,
    BETWEEN_PRIOR_WEIGHT,
    COMMON_SPREAD,
    LEARNT_PRIOR_WEIGHT,
    SCREEN_Z,
    SUITE_ALPHA,
    Spread,
    between_spread,
    detectable_pct,
    midpoint,
    suite_z,
)
from .measure.latency import LatencyStats, log_median_se, median_interval, round_spread_pct
from .measure.memory import common_figure

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
#: Two readings of a test further apart than this many of their difference's SEs disagree
#: (``disagree``): a burst of other work made one of them, and the confirmation is judged alone.
AGREE_Z = 2.5758293035489004  # two-sided 1%
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
    interval: tuple[float, float] | None = None  # the interval of ``measured`` (latency)
    settled: bool = True  # latency: more rounds of this run would not narrow the interval much
    note: str = ""  # a pass worth a line under the summary (latency: above half the limit, or rounds ended early)
    z: float | None = None  # latency: the interval is measured * exp(+-z SE), z for the session's checks
    #: latency: a possible regression to measure again in fresh workers (above the midpoint,
    #: its interval at ``SCREEN_Z`` above 1); every failing latency check is one
    suspect: bool = False
    readings: int = 1  # latency: this session's readings pooled in ``measured``
    #: latency: the smallest detectable slowdown with any number of rounds, this run's noise
    #: gone (the between-session spread and the recording's stay; reach.py)
    detectable_floor_pct: float | None = None
    #: latency: how much one round's gated ratio moved from round to round (``round_spread_pct``),
    #: this run's and the baseline recording's: the machine's noise then and now
    round_spread_pct: tuple[float | None, float | None] = (None, None)

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


def compare_latency(current: Sequence[float], baseline: Sequence[float], pct: float,
                    seconds: bool = True, sessions: Sequence[float] = (), checks: int = 1,
                    prior: float | None = None, earlier: Sequence[Sequence[float]] = (),
                    confirm: bool = False, noise_scale: float = 1.0) -> Check:
    """Latency verdict under the rule in this module's docstring (``seconds``: the samples are
    seconds, else ratios to a paired reference or to the calibration; ``sessions``: the
    baseline's session medians, none: the recording's alone; ``checks``: latency checks in
    the session; ``prior``: the between-session spread learnt for this test, see
    ``between_spread``). ``earlier``: this session's earlier readings of the test, in other
    workers, pooled with ``current`` (a suspect's confirmation). ``confirm``: a suspect single
    reading will be measured again and judged pooled (the gate's tests), so its smallest
    detectable slowdown is the two stages' (``detectable_pct``). ``noise_scale``: this
    session's factor on its between-session term (noise.py).

    A confirmation that disagrees with the reading before it (``disagree``: a burst of other
    work on the machine made one of them) and is not a suspect on its own is judged alone:
    pooling would carry the burst into the verdict."""
    medians = [float(x) for x in sessions if x > 0] or [float(np.median(baseline))]
    base = float(np.exp(np.mean(np.log(medians))))
    readings = [list(current), *(list(r) for r in earlier if len(r))]
    m = len(readings)
    point = float(np.exp(np.mean([np.log(float(np.median(r)) / base) for r in readings])))
    noise = [log_median_se(r, RESAMPLES) ** 2 for r in readings]
    within, earlier_part = float(np.sqrt(sum(noise))) / m, float(np.sqrt(sum(noise[1:]))) / m
    spread = Spread(within, log_median_se(baseline, RESAMPLES), between_spread(medians, prior),
                    len(medians), m, earlier_part, noise_scale)
    if m > 1 and disagree(readings, noise, spread):
        alone = compare_latency(current, baseline, pct, seconds, sessions, checks, prior, (), confirm,
                                noise_scale)
        if not alone.suspect:
            return alone
    z, se = suite_z(checks * m), spread.se  # a pooled reading is another check of the session
    low, high = point * float(np.exp(-z * se)), point * float(np.exp(z * se))
    limit = 1.0 + pct / 100.0
    half = midpoint(limit)
    unit = " s" if seconds else ""
    what = "median" if seconds else "median per-round ratio"
    k, settled = spread.sessions, spread.within_settled()
    now = " then ".join(f"{np.median(r):.3f}" for r in reversed(readings))
    pooled = f" (readings in {m} sets of fresh workers, pooled)" if m > 1 else ""
    detail = (
        f"{what} {now}{unit}{pooled} vs {base:.3f}{unit}"
        f"{f' (mean of {k} sessions)' if k > 1 else ''}, interval {low:.3f}-{high:.3f} "
        f"(z={z:.2f} for {checks} latency check{'s' if checks != 1 else ''}"
        f"{f' judged up to {m} times each' if m > 1 else ''}; between-session "
        f"spread {spread.between:.1%}{_prior_text(prior)}{_scale_text(noise_scale)}), "
        f"n={'+'.join(str(len(r)) for r in reversed(readings))}/{len(baseline)}"
    )
    detectable = detectable_pct(spread, checks, half, confirm and m == 1)
    floor = detectable_pct(replace(spread, within=0.0, earlier=0.0), checks, half, confirm and m == 1)
    detail += f", smallest detectable slowdown {detectable:.0f}%"
    # A failing reading is a suspect too: its z (``suite_z``, at least 1.96) is never under SCREEN_Z.
    suspect = point > half and point * float(np.exp(-SCREEN_Z * se)) > 1.0
    note = ""
    if point > half and low > 1.0:
        status = FAIL
    elif high <= limit or point <= half or (settled and spread.recording_settled()):
        status = PASS
        if point > half and high > limit:
            note = (f"above half the limit ({half:.3f}x) but within this test's between-session "
                    f"spread: not a regression any run here could tell from 1; it would see "
                    f"{detectable:.0f}%")
        elif high > limit and not settled:
            note = (f"the rounds ended before more of them stopped narrowing the interval: it "
                    f"would see {detectable:.0f}%; --sdperf-time-budget or --sdperf-rounds "
                    f"would narrow it")
        detail += f"; {note}" if note else ""
    else:
        status = INCONCLUSIVE
        if not settled:
            detail += "; too noisy to decide: raise --sdperf-rounds or --sdperf-time-budget"
        else:
            detail += ("; the baseline's recording is too noisy to decide against: re-record this "
                       "test (--sdperf-update-all -k TEST, more rounds: --sdperf-rounds)")
    return Check("latency ratio", status, point, 1.0, limit, "x", detail, float(detectable), (low, high),
                 settled, note, z, suspect, m, float(floor))


def disagree(readings: Sequence[Sequence[float]], noise: Sequence[float], spread: Spread) -> bool:
    """Whether the confirmation (``readings[0]``) and the reading before it differ by more than
    their noise allows (at ``AGREE_Z``): their rounds' noise (``noise``, log variances) and the
    per-reading part of this session's between-session term (b^2 - c^2, times the session's
    noise scale squared), each reading's own."""
    own = spread.scale**2 * max(spread.between**2 - min(COMMON_SPREAD, spread.between) ** 2, 0.0)
    gap = abs(float(np.log(np.median(readings[0]) / np.median(readings[1]))))
    return gap > AGREE_Z * float(np.sqrt(noise[0] + noise[1] + 2.0 * own))


def _prior_text(prior: float | None) -> str:
    return "" if prior is None else f", its prior {prior:.1%} learnt from this baseline file"


def _scale_text(scale: float) -> str:
    return "" if scale <= 1.0 else f", x{scale:.2f} in this session for its noise"


#: The session figure (``LatencyStats.session_summary``) each gate mode compares.
MODE_FIGURE = {"paired": "paired", "relative": "relative", "absolute": "seconds"}


@dataclass(frozen=True)
class LatencyFigures:
    """The samples the latency gate compares, the mode they are of, and why if not the one asked."""

    mode: str
    current: tuple[float, ...]
    baseline: tuple[float, ...]
    metric: str
    note: str = ""
    sessions: tuple[float, ...] = ()  # the baseline's session medians of these figures
    figure: str = ""  # the session figure compared (``LatencyStats.session_summary``); "": the mode's

    @property
    def session_figure(self) -> str:
        """The session figure these samples are of (the key of its learnt prior)."""
        return self.figure or MODE_FIGURE[self.mode]


def latency_figures(mode: str, current: LatencyStats, stored: LatencyStats, reference: str = "") -> LatencyFigures:
    """What ``--sdperf-gate MODE`` compares: ``paired``, each round over the ``reference``
    variant's round beside it, or over the variant's yardstick's (``VariantSpec.yardstick``)
    where both sides hold that yardstick's rounds; ``relative``, over the calibration workload;
    ``absolute``, seconds. Paired falls back to relative where either side lacks the reference's
    rounds (the reference variant itself, a baseline recorded without it), and relative to
    seconds where either side lacks calibration or the two were calibrated with different
    workloads. A run with yardstick rounds against a baseline without them (recorded before
    the variant had a yardstick) is compared over the reference, and the note says so."""
    cur_pair, base_pair = current.paired(), stored.paired()
    cur_yard, base_yard = current.over_yardstick(), stored.over_yardstick()
    if mode == "paired" and cur_yard and base_yard and current.yardstick_variant == stored.yardstick_variant:
        return LatencyFigures("paired", cur_yard, base_yard,
                              f"latency ratio (paired with {current.yardstick_variant}, its yardstick)",
                              sessions=stored.session_medians("yardstick"), figure="yardstick")
    if mode == "paired" and cur_pair and base_pair:
        note = ""
        if cur_yard:
            note = (f"compared over {reference}, not over its yardstick {current.yardstick_variant}: "
                    f"the baseline holds no {current.yardstick_variant} rounds (recorded "
                    f"before); a passing run re-records it with them, as --sdperf-update does")
        return LatencyFigures("paired", cur_pair, base_pair, f"latency ratio (paired with {reference})",
                              note, stored.session_medians("paired"), "paired")
    cur_rel, base_rel = current.relative(), stored.relative()
    relative = mode in ("relative", "paired")
    if relative and cur_rel and base_rel and stored.kernel() == current.kernel():
        return LatencyFigures("relative", cur_rel, base_rel, "latency ratio (relative to calibration)",
                              sessions=stored.session_medians("relative"))
    note = ""
    if relative and cur_rel and base_rel:
        note = (f"compared in seconds: the baseline was calibrated with {stored.kernel()}, "
                f"this run with {current.kernel()}; --sdperf-update-all re-records it")
    elif relative and (cur_pair or cur_rel):
        # Seconds from another session (another day, another load) in a gate meant to compare
        # ratios measured in one run: say so, so a verdict read against them is not trusted
        # beyond what it is.
        note = (f"compared in seconds with the baseline's session: the baseline holds no "
                f"{'paired reference rounds' if mode == 'paired' else 'calibration'} for the "
                f"{mode} gate; --sdperf-update re-records it")
    return LatencyFigures("absolute", current.samples, stored.samples, "latency ratio", note,
                          stored.session_medians("seconds"))


def check_latency(mode: str, current: LatencyStats, stored: LatencyStats, pct: float,
                  reference: str = "", checks: int = 1, priors: Mapping[str, float] | None = None,
                  earlier: Sequence[LatencyStats] = (), confirm: bool = False,
                  noise_scale: float = 1.0) -> Check:
    """The latency gate's check in ``mode`` (see ``latency_figures``) among ``checks`` latency
    checks of the session; ``priors``: the between-session spreads learnt for this test, per
    session figure (``priors.py``; a figure not in it: ``BETWEEN_PRIOR``). ``earlier``: this
    session's earlier readings of the test, pooled with ``current`` where they give the same
    figures (a suspect's confirmation); ``confirm``, ``noise_scale``: see ``compare_latency``."""
    figures = latency_figures(mode, current, stored, reference)
    pooled = [f.current for f in (latency_figures(mode, e, stored, reference) for e in earlier)
              if f.session_figure == figures.session_figure]
    check = compare_latency(figures.current, figures.baseline, pct, figures.mode == "absolute",
                            figures.sessions, checks, (priors or {}).get(figures.session_figure),
                            pooled, confirm, noise_scale)
    detail = f"{check.detail}; {figures.note}" if figures.note else check.detail
    spread = (round_spread_pct(figures.current), round_spread_pct(figures.baseline))
    return replace(check, metric=figures.metric, detail=detail, round_spread_pct=spread)


def check_throughput(mode: str, current: LatencyStats, stored: LatencyStats, pct: float,
                     reference: str = "", checks: int = 1, priors: Mapping[str, float] | None = None,
                     earlier: Sequence[LatencyStats] = (), confirm: bool = False,
                     noise_scale: float = 1.0) -> Check:
    """The throughput gate: a LoadGen run's seconds per image (``Bench.throughput``) judged by
    the latency rule, in ``mode``, at the latency limit: images/s may fall to 1 / (1 +
    ``pct``/100) of the baseline's. The check's ratio is seconds per image now over the
    baseline's (1.10: 9% fewer images/s); its detail gives both images/s."""
    check = check_latency(mode, current, stored, pct, reference, checks, priors, earlier, confirm,
                          noise_scale)
    now, base = 1.0 / current.p50, 1.0 / stored.p50
    metric = check.metric.replace("latency ratio", "throughput: seconds-per-image ratio", 1)
    detail = (f"{now:.3g} vs {base:.3g} images/s (the baseline's recording), images/s may fall "
              f"to {1.0 / (1.0 + pct / 100.0):.1%}; {check.detail}")
    return replace(check, metric=metric, detail=detail)


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


STAGE_NAMES = {"text_encode": "text encoding", "vae_encode": "VAE encode (init image)",
               "step": "one denoising step", "vae_decode": "VAE decode"}


def stage_changes(current: Mapping[str, float], stored: Mapping[str, float]) -> str:
    """Which pipeline stage moved: each stage's median now over the baseline's, largest change
    first, e.g. ``one denoising step 1.31x, VAE decode 1.02x, text encoding 0.99x``; empty
    where either side has no stage timings."""
    ratios = {STAGE_NAMES[k]: current[k] / stored[k] for k in STAGE_NAMES
              if current.get(k) and stored.get(k)}
    ranked = sorted(ratios.items(), key=lambda kv: -abs(kv[1] - 1.0))
    return ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ranked)
