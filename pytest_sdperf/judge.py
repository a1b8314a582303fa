"""The one judge: (what was measured, what is stored, thresholds, gate mode) -> Verdict.

Pure: no files, no pytest. Everything that judges calls ``judge``: the gate a test calls
(``gate.Gate``), ``sdperf compare`` (two results files), the validation harness
(``validate``) and the auto-rounds stopping rule (``rounds.more_rounds``). The
per-metric rules live in ``compare`` (latency interval rule, memory limit, similarity floors).

Example::

    verdict = judge(Figures(latency=current_stats, memory=mem, ssim=0.99, psnr=40.0),
                    Figures(latency=stored_stats, memory=stored_mem), Thresholds(), "relative")
    if verdict.status is Status.REGRESSION:
        print("\\n".join(c.message() for c in verdict.regressions()))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

from .compare import (
    FAIL,
    INCONCLUSIVE,
    Check,
    check_latency,
    check_throughput,
    compare_memory_figures,
    compare_similarity,
    compare_speedup,
)
from .measure.latency import LatencyStats
from .workload import Thresholds


class Status(str, Enum):
    """The verdict of one comparison."""

    PASS = "pass"
    REGRESSION = "regression"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Figures:
    """One side of a comparison: latency samples, memory figures, similarity to the reference
    (None where that side has none: a stored entry has no similarity to judge), and a LoadGen
    scenario's seconds per image (``throughput``, where the test ran one)."""

    latency: LatencyStats | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)
    ssim: float | None = None
    psnr: float | None = None
    throughput: LatencyStats | None = None
    #: this session's earlier readings of the same test, in other workers (a suspect's first
    #: reading, when this is its confirmation): pooled with ``latency`` / ``throughput``
    earlier: tuple[LatencyStats, ...] = ()
    earlier_throughput: tuple[LatencyStats, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """Checks in order latency, throughput, memory, SSIM, PSNR (those both sides allow), and
    their sum."""

    status: Status
    checks: tuple[Check, ...]

    @property
    def latency(self) -> Check | None:
        """The latency check, where one was made."""
        return next((c for c in self.checks if c.metric.startswith("latency")), None)

    @property
    def throughput(self) -> Check | None:
        """The throughput check (a LoadGen run's or a sweep knee's), where one was made."""
        return next((c for c in self.checks if c.metric.startswith("throughput")), None)

    @property
    def detectable_pct(self) -> float | None:
        """The smallest latency slowdown this comparison could have seen (None: no latency)."""
        return next((c.detectable_pct for c in self.checks if c.metric.startswith("latency")), None)

    def suspect(self) -> Check | None:
        """The latency or throughput check that reads as a possible regression (compare.py:
        measured again in fresh workers before the test may fail), else None."""
        return next((c for c in self.checks if c.suspect), None)

    def undecided(self) -> Check | None:
        """The latency or throughput check this reading's rounds left undecided: inconclusive
        while more rounds would still have narrowed its interval (not ``settled``), so a
        reading in fresh workers may decide it; else None. An inconclusive check that more
        rounds would not narrow (the baseline's recording is too noisy) is not one."""
        return next((c for c in self.inconclusive() if not c.settled and c.interval is not None), None)

    def regressions(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.status == FAIL]

    def inconclusive(self) -> list[Check]:
        """The checks the samples could not decide."""
        return [c for c in self.checks if c.status == INCONCLUSIVE]


def judge(current: Figures, stored: Figures | None, t: Thresholds, mode: str,
          reference: str = "", latency_checks: int = 1, priors: Mapping[str, float] | None = None,
          confirm: bool = False, noise_scale: float = 1.0) -> Verdict:
    """Compare ``current`` with ``stored`` (None: nothing stored; similarity and the speedup
    floor alone are judged) in gate ``mode`` (``paired``, ``relative``, ``absolute``: see
    compare.latency_figures). The speedup floor (``t.min_speedup``) is checked where the rounds
    were paired with the ``reference``. ``latency_checks``: the latency checks of the session, which
    widen each one's interval (interval.suite_z); a throughput check counts as one of them.
    ``priors``: the between-session spreads learnt for this test (``priors.py``). ``confirm``:
    a suspect reading will be measured again and judged pooled with ``current.earlier`` (the
    gate's tests; compare.compare_latency). ``noise_scale``: this session's factor on its
    between-session term (noise.py)."""
    checks: list[Check] = []
    paired = current.latency.paired() if current.latency is not None else None
    if t.min_speedup > 0 and paired:
        checks.append(compare_speedup(paired, t.min_speedup, reference or "the reference"))
    if stored is not None:
        if current.latency is not None and stored.latency is not None \
                and current.latency.samples and stored.latency.samples:
            checks.append(check_latency(mode, current.latency, stored.latency, t.latency_pct, reference,
                                        latency_checks, priors, current.earlier, confirm, noise_scale))
        if current.throughput is not None and stored.throughput is not None:
            checks.append(check_throughput(mode, current.throughput, stored.throughput, t.latency_pct,
                                           reference, latency_checks, priors, current.earlier_throughput,
                                           confirm, noise_scale))
        memory = compare_memory_figures(current.memory, stored.memory, t.memory_pct)
        if memory is not None:
            checks.append(memory)
    if current.ssim is not None and current.psnr is not None:
        checks.extend(compare_similarity(current.ssim, current.psnr, t.min_ssim, t.min_psnr))
    return Verdict(_status(checks), tuple(checks))


def verdict_of(checks: list[Check]) -> Verdict:
    """The verdict of checks made outside ``judge`` (--sdperf-against's head-to-head latency)."""
    return Verdict(_status(checks), tuple(checks))


def _status(checks: list[Check]) -> Status:
    if any(c.status == FAIL for c in checks):
        return Status.REGRESSION
    if any(c.status == INCONCLUSIVE for c in checks):
        return Status.INCONCLUSIVE
    return Status.PASS
