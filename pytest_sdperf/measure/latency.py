"""Latency statistics from raw samples, and per-stage timing of one pipeline call."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..progress import beat


@dataclass(frozen=True)
class LatencyStats:
    """Summary of the timed rounds (seconds); ``samples`` keeps the raw data for the gates.

    ``calibration`` holds, for each round, the mean seconds of the calibration workload timed
    just before and just after it (see measure/calibration.py; files written before the
    ``calibration_kernel`` field existed timed it before only); ``relative()`` divides each
    round by it. ``calibration_kernel`` names the workload ("" in older files: the legacy one).
    ``reference`` holds the paired reference variant's round beside each round (``paired()``);
    ``yardstick`` the round of ``yardstick_variant``, a variant timed beside it as its latency
    gate's yardstick where the variant names one (``VariantSpec.yardstick``: ov-fp32 for the
    OpenVINO variants built on it; ``over_yardstick()``).
    """

    samples: tuple[float, ...]
    p50: float
    p90: float
    mean: float
    stdev: float
    first_call_s: float | None = None
    stages: Mapping[str, float] = field(default_factory=dict)
    calibration: tuple[float, ...] = ()
    calibration_kernel: str = ""
    reference: tuple[float, ...] = ()
    yardstick: tuple[float, ...] = ()
    yardstick_variant: str = ""
    #: A baseline's sessions: the medians of each session's figures (``session_summary``), the
    #: recording first, then each later session that did not regress (see compare.py).
    sessions: tuple[Mapping[str, float], ...] = ()

    def session_summary(self) -> dict[str, float]:
        """This run's medians: ``seconds``, and ``paired`` / ``yardstick`` / ``relative`` where
        it has them."""
        out = {"seconds": float(np.median(self.samples))}
        paired, yardstick, relative = self.paired(), self.over_yardstick(), self.relative()
        if paired:
            out["paired"] = float(np.median(paired))
        if yardstick:
            out["yardstick"] = float(np.median(yardstick))
        if relative:
            out["relative"] = float(np.median(relative))
        return out

    def session_medians(self, figure: str) -> tuple[float, ...]:
        """The baseline sessions' medians of ``figure`` (``seconds``, ``paired``, ``yardstick``,
        ``relative``);
        with no sessions stored (a baseline written before sessions were kept), ()."""
        return tuple(float(s[figure]) for s in self.sessions if s.get(figure, 0) > 0)

    def with_session(self, run: LatencyStats, keep: int) -> LatencyStats:
        """This baseline with ``run``'s medians added as a session (the recording's own are
        the first), at most ``keep`` sessions."""
        first = self.sessions or (self.session_summary(),)
        return replace(self, sessions=(*first, run.session_summary())[:keep])

    def timed_s(self) -> float:
        """Seconds the rounds' timed calls took: the variant's, and the paired reference's, the
        yardstick's and the calibration workload's beside them (one calibration a round)."""
        return float(sum(self.samples) + sum(self.reference) + sum(self.yardstick)
                     + sum(self.calibration))

    def paired(self) -> tuple[float, ...] | None:
        """Each round's seconds over the reference variant's round beside it (``--sdperf-gate
        paired``); None when the reference was not timed."""
        if len(self.reference) != len(self.samples) or not all(r > 0 for r in self.reference):
            return None
        return tuple(s / r for s, r in zip(self.samples, self.reference, strict=True))

    def over_yardstick(self) -> tuple[float, ...] | None:
        """Each round's seconds over the yardstick variant's round beside it; None when no
        yardstick was timed."""
        if len(self.yardstick) != len(self.samples) or not all(y > 0 for y in self.yardstick):
            return None
        return tuple(s / y for s, y in zip(self.samples, self.yardstick, strict=True))

    def with_yardstick(self, rounds: list[float] | tuple[float, ...], variant: str) -> LatencyStats:
        """These rounds with ``variant``'s rounds beside them as the yardstick (none: without)."""
        return replace(self, yardstick=tuple(float(y) for y in rounds),
                       yardstick_variant=variant if len(rounds) else "")

    def kernel(self) -> str:
        """The calibration workload's name (older files: the legacy kernel)."""
        from .calibration import LEGACY_KERNEL

        return self.calibration_kernel or LEGACY_KERNEL

    def relative(self) -> tuple[float, ...] | None:
        """Each round's seconds over its calibration's seconds; None without calibration."""
        if len(self.calibration) != len(self.samples) or not all(c > 0 for c in self.calibration):
            return None
        return tuple(s / c for s, c in zip(self.samples, self.calibration, strict=True))

    @classmethod
    def from_samples(
        cls,
        samples: list[float] | tuple[float, ...],
        first_call_s: float | None = None,
        stages: Mapping[str, float] | None = None,
        calibration: list[float] | tuple[float, ...] = (),
        calibration_kernel: str = "",
        reference: list[float] | tuple[float, ...] = (),
    ) -> LatencyStats:
        """Compute p50/p90/mean/stdev; one sample has a stdev of 0."""
        if not samples:
            raise ValueError("no latency samples")
        data = np.asarray(samples, dtype=float)
        return cls(
            samples=tuple(float(x) for x in data),
            p50=float(np.percentile(data, 50)),
            p90=float(np.percentile(data, 90)),
            mean=float(data.mean()),
            stdev=float(statistics.stdev(data)) if len(data) > 1 else 0.0,
            first_call_s=first_call_s,
            stages=dict(stages or {}),
            calibration=tuple(float(c) for c in calibration),
            calibration_kernel=calibration_kernel,
            reference=tuple(float(r) for r in reference),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        out = asdict(self)
        out["samples"] = list(self.samples)
        out["calibration"] = list(self.calibration)
        out["reference"] = list(self.reference)
        out["yardstick"] = list(self.yardstick)
        out["stages"] = dict(self.stages)
        out["sessions"] = [dict(x) for x in self.sessions]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyStats:
        """The inverse of ``to_dict`` (statistics are recomputed from the samples)."""
        stats = cls.from_samples(
            list(data["samples"]), data.get("first_call_s"), data.get("stages") or {},
            list(data.get("calibration") or ()), str(data.get("calibration_kernel") or ""),
            list(data.get("reference") or ()),
        )
        sessions = tuple({str(k): float(v) for k, v in x.items()} for x in data.get("sessions") or ())
        stats = replace(stats, sessions=sessions) if sessions else stats
        yardstick = list(data.get("yardstick") or ())
        return stats.with_yardstick(yardstick, str(data.get("yardstick_variant") or "")) if yardstick else stats


def median_interval(samples: Sequence[float], resamples: int = 1000,
                    confidence: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of the median (seeded, so repeatable)."""
    from scipy.stats import bootstrap

    res = bootstrap((np.asarray(samples, dtype=float),), np.median, n_resamples=resamples,
                    confidence_level=confidence, method="percentile", rng=np.random.default_rng(0))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def log_median_se(samples: Sequence[float], resamples: int = 2000) -> float:
    """The bootstrap standard error of log(median(samples)) (0 for fewer than 2 samples)."""
    data = np.asarray(samples, float)
    if len(data) < 2:
        return 0.0
    from scipy.stats import bootstrap

    res = bootstrap((data,), lambda a, axis=-1: np.log(np.median(a, axis=axis)), n_resamples=resamples,
                    method="percentile", vectorized=True, rng=np.random.default_rng(0))
    return float(res.standard_error)


#: Fewer rounds than this give no spread (``round_spread_pct``): a MAD of three or four is chance.
SPREAD_MIN_ROUNDS = 5


def round_spread_pct(ratios: Sequence[float]) -> float | None:
    """How much one round's ratio moves from round to round, in percent: the normal-scaled
    median absolute deviation of the log ratios (a robust standard deviation: a few disturbed
    rounds do not set it); None for fewer than ``SPREAD_MIN_ROUNDS`` rounds."""
    if len(ratios) < SPREAD_MIN_ROUNDS or not all(r > 0 for r in ratios):
        return None
    from scipy.stats import median_abs_deviation

    return float(median_abs_deviation(np.log(np.asarray(ratios, float)), scale="normal")) * 100.0


def median_ci_halfwidth(samples: list[float] | tuple[float, ...]) -> float:
    """Half the width of the 95% bootstrap CI of the median, relative to the median."""
    if len(samples) < 3:
        return float("inf")
    low, high = median_interval(samples)
    return float((high - low) / 2 / np.median(samples))


class StageClock:
    """Times text encoding, each denoising step and VAE decode (and, image-to-image, the init
    image's VAE encode) of one call.

    Installs wrappers on ``pipe.encode_prompt``, ``pipe.vae.encode`` and ``pipe.vae.decode``
    where they exist and
    a ``callback_on_step_end`` for the steps; ``stages()`` gives medians per stage in seconds.
    """

    def __init__(self, pipe: Any, sync: Callable[[], None] = lambda: None) -> None:
        self._sync = sync
        self._marks: dict[str, list[float]] = {
            "text_encode": [], "vae_encode": [], "step": [], "vae_decode": []}
        self._step_start = 0.0
        self._calls = 0
        self._wrap(pipe, "encode_prompt", "text_encode")
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "decode"):
            self._wrap(vae, "decode", "vae_decode")
        if vae is not None and hasattr(vae, "encode"):
            self._wrap(vae, "encode", "vae_encode")

    def _wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr, None)
        if original is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._sync()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._sync()
                end = time.perf_counter()
                self._marks[stage].append(end - start)
                self._step_start = end

        try:
            setattr(owner, attr, timed)
        except (AttributeError, TypeError):
            pass

    def begin(self) -> None:
        """Call right before the pipeline call."""
        self._calls += 1
        self._step_start = time.perf_counter()

    def on_step_end(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> Any:
        """A diffusers ``callback_on_step_end``."""
        self._sync()
        now = time.perf_counter()
        self._marks["step"].append(now - self._step_start)
        self._step_start = now
        beat("step", n=step)  # a long call whose steps go on is slow, not hung
        return kwargs

    def stages(self) -> dict[str, float]:
        """Median seconds per stage, plus steps per call; empty stages are left out."""
        out = {k: float(np.median(v)) for k, v in self._marks.items() if v}
        if self._marks["step"] and self._calls:
            out["steps_per_call"] = len(self._marks["step"]) / self._calls
        return out

    def reset(self) -> None:
        """Forget what was measured so far."""
        self._calls = 0
        for marks in self._marks.values():
            marks.clear()
