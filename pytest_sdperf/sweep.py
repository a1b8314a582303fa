"""The latency-capped sweep: raise one setting until the latency passes a cap or throughput
stops growing, and report the knee.

Reference C's strategy for throughput under a latency ceiling: raise the requests (or streams)
in flight one step at a time; each step serves more images a second until the CPU is full or
the latency each image waits passes what the deployment allows. A test marked
``@pytest.mark.sdperf(sweep="ov_requests", sweep_values=(1, 2, 3, 4), sweep_cap_ms=2000)`` and
using the ``sdperf_knee`` fixture measures its variant once per value (a fresh worker each,
the setting passed as ``--sdperf-set`` would), in increasing order, and stops at the first
value whose latency passes the cap or whose throughput is not ``SWEEP_GROWTH`` above the best
so far. The knee is the first point within the cap whose throughput is within ``SWEEP_GROWTH``
of the best within the cap: the best throughput at the least latency that reaches it.

Each point's figures come from its timed rounds: a round is one call of the pipeline, which
makes ``images per request x requests`` images at once (``ov-async``: one per request in
flight); its throughput is those images over the median call, its latency the 90th
percentile of the calls (the call ends with its last image: each image waited at most that).
The swept setting is a variant setting (``ov_requests``, ``ov_streams``...), or the batch:
``sweep="images_per_prompt"`` raises the workload's images per call instead (a PyTorch
pipeline's throughput knob). A batch point is paired with the reference at the test's own
workload, per image, and its knee is judged as that workload's entry (its first images
against the reference images: every batch starts from the same seeded noise). ``sweep=
"instances"`` raises worker processes, each pinned to its own share of the CPUs (Intel's
multi-instance recipe, instances.py): one call is every instance's at once; a value above the
CPUs this machine offers stops the sweep there.
This module is pure (no pytest, no workers): ``Sweep`` (validated marker keywords),
``SweepPoint``, ``stop_reason``, ``SweepResult`` and ``per_image`` (the knee's figure, gated as
throughput: ``compare.check_throughput``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from .measure.latency import LatencyStats

#: A step must raise throughput by more than this share over the best so far, or the sweep
#: stops: "stopped growing" (the 2-core machines here read one setting 2-5% apart between runs).
SWEEP_GROWTH = 0.05
KEYWORDS = ("sweep", "sweep_values", "sweep_cap_ms")
#: Workload fields a sweep may raise (the others name variant settings, except INSTANCES).
WORKLOAD_SETTINGS = ("images_per_prompt",)
#: The sweep over worker processes, each pinned to its own CPUs (instances.py).
INSTANCES = "instances"
#: The latency percentile a point is judged at (the call seconds' p90, as single-stream's).
PERCENTILE = 90.0


class SweepError(ValueError):
    """A sweep keyword out of range; the message names the keyword and the range."""


@dataclass(frozen=True)
class Sweep:
    """Raise variant setting ``setting`` through ``values`` (increasing ints) under a latency cap
    on each point's p90: ``cap_ms`` milliseconds, or (``cap_factor``) that many times the first
    value's p90, so one protocol suite serves a small model and a full-size one."""

    setting: str
    values: tuple[int, ...]
    cap_ms: float | None = None
    growth: float = SWEEP_GROWTH
    cap_factor: float | None = None

    @property
    def batch(self) -> bool:
        """Whether the sweep raises the workload's images per call, not a variant setting."""
        return self.setting in WORKLOAD_SETTINGS

    @property
    def instances(self) -> bool:
        """Whether the sweep raises the worker processes (each pinned to its own CPUs)."""
        return self.setting == INSTANCES

    def cap_of(self, first: SweepPoint) -> float:
        """The cap in ms, given the first point measured."""
        if self.cap_ms is not None:
            return self.cap_ms
        return float(self.cap_factor or 1.0) * first.latency_s * 1000.0

    def cap_text(self) -> str:
        """The cap as the marker gave it: ``sweep_cap_ms=2000`` or ``sweep_cap_ms='2x'``."""
        return f"sweep_cap_ms={self.cap_ms:g}" if self.cap_ms is not None else f"sweep_cap_ms='{self.cap_factor:g}x'"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"setting": self.setting, "values": list(self.values), "cap_ms": self.cap_ms,
                "growth": self.growth, "cap_factor": self.cap_factor}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sweep:
        """The inverse of ``to_dict``."""
        cap, factor = data.get("cap_ms"), data.get("cap_factor")
        return cls(str(data["setting"]), tuple(int(v) for v in data["values"]),
                   None if cap is None else float(cap), float(data.get("growth", SWEEP_GROWTH)),
                   None if factor is None else float(factor))


def sweep_from_marker(fields: Mapping[str, Any], where: str) -> Sweep | None:
    """The marker's sweep keywords as a Sweep (None without ``sweep``); SweepError naming the
    keyword and its range for anything out of range."""
    given = {k: fields[k] for k in KEYWORDS if fields.get(k) is not None}
    if "sweep" not in given:
        if given:
            raise SweepError(f"{where}: sdperf marker keyword(s) {', '.join(sorted(given))} apply "
                             "only with sweep= the variant setting to raise (e.g. 'ov_requests')")
        return None
    setting = given["sweep"]
    if not isinstance(setting, str) or not setting.isidentifier():
        raise SweepError(f"{where}: sdperf marker sweep={setting!r} must name a variant setting "
                         "(e.g. 'ov_requests', 'ov_streams'), as --sdperf-set takes it, or "
                         "'images_per_prompt' (the batch) or 'instances' (pinned worker processes)")
    values = given.get("sweep_values")
    if (not isinstance(values, (list, tuple)) or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
            or list(values) != sorted(set(values))):
        raise SweepError(f"{where}: sdperf marker sweep_values={values!r} must be a list of "
                         "increasing ints >= 1 (e.g. (1, 2, 4, 8))")
    cap = given.get("sweep_cap_ms")
    if isinstance(cap, str) and cap.endswith("x"):
        try:
            factor = float(cap[:-1])
        except ValueError:
            factor = 0.0
        if math.isfinite(factor) and factor >= 1.0:
            return Sweep(setting, tuple(values), cap_factor=factor)
    elif not isinstance(cap, bool) and isinstance(cap, (int, float)) and math.isfinite(cap) and cap > 0:
        return Sweep(setting, tuple(values), float(cap))
    raise SweepError(f"{where}: sdperf marker sweep_cap_ms={cap!r} must be a positive number, the "
                     "p90 latency in ms each point must stay within, or 'Nx' (N >= 1): N times the "
                     "first value's p90")


@dataclass(frozen=True)
class SweepPoint:
    """One value of the swept setting, measured: ``images_per_s`` (images of one call over the
    median call), ``latency_s`` (the calls' p90) and the images one call makes."""

    value: int
    images_per_s: float
    latency_s: float
    images_per_call: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"value": self.value, "images_per_s": self.images_per_s, "latency_s": self.latency_s,
                "images_per_call": self.images_per_call}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepPoint:
        """The inverse of ``to_dict``."""
        return cls(int(data["value"]), float(data["images_per_s"]), float(data["latency_s"]),
                   int(data["images_per_call"]))


def point_of(value: int, call_seconds: Sequence[float], images_per_call: int) -> SweepPoint:
    """A point from its rounds (seconds of each call) and the images one call makes."""
    import numpy as np

    calls = np.asarray(call_seconds, float)
    return SweepPoint(value, images_per_call / float(np.median(calls)),
                      float(np.percentile(calls, PERCENTILE)), images_per_call)


def within_cap(point: SweepPoint, sweep: Sweep, first: SweepPoint) -> bool:
    """Whether the point's p90 is within the cap (``first``: the sweep's first point)."""
    return point.latency_s * 1000.0 <= sweep.cap_of(first)


def stop_reason(points: Sequence[SweepPoint], sweep: Sweep) -> str | None:
    """Why the sweep stops after ``points`` (None: measure the next value)."""
    last, first = points[-1], points[0]
    name = f"{sweep.setting}={last.value}"
    if not within_cap(last, sweep, first):
        return (f"{name}: p90 {last.latency_s * 1000.0:.0f} ms passes {sweep.cap_text()} "
                f"({sweep.cap_of(first):.0f} ms)")
    before = [p.images_per_s for p in points[:-1] if within_cap(p, sweep, first)]
    if before and last.images_per_s <= max(before) * (1.0 + sweep.growth):
        return (f"{name}: {last.images_per_s:.3g} images/s, not {sweep.growth:.0%} above the best "
                f"so far ({max(before):.3g}): throughput stopped growing")
    if last.value == sweep.values[-1]:
        return f"{name}: the last of sweep_values"
    return None


@dataclass(frozen=True)
class SweepResult:
    """The points measured in order, why the sweep stopped, and the knee (None: no point met
    the cap)."""

    sweep: Sweep
    points: tuple[SweepPoint, ...]
    stopped: str

    @property
    def knee(self) -> SweepPoint | None:
        """The first point within the cap whose throughput is within ``growth`` of the best
        within the cap: the best throughput, at the least latency that reaches it (on a flat
        top, more requests only add latency)."""
        ok = [p for p in self.points if within_cap(p, self.sweep, self.points[0])] if self.points else []
        if not ok:
            return None
        best = max(p.images_per_s for p in ok)
        return next(p for p in ok if p.images_per_s * (1.0 + self.sweep.growth) >= best)

    def summary(self) -> str:
        """One line: the knee (or its absence), the curve and why it stopped."""
        s = self.sweep
        curve = ", ".join(f"{p.value}: {p.images_per_s:.3g} images/s p90 {p.latency_s * 1000.0:.0f} ms"
                          for p in self.points)
        k = self.knee
        cap = f"{s.cap_of(self.points[0]):.0f} ms" if self.points else s.cap_text()
        head = (f"knee {s.setting}={k.value}: {k.images_per_s:.3g} images/s, p90 "
                f"{k.latency_s * 1000.0:.0f} ms within {cap}" if k else
                f"no knee: no {s.setting} in {list(s.values)} met {s.cap_text()}")
        return f"{head} ({s.setting} {curve}; stopped at {self.stopped})"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the knee's value and the line included)."""
        k = self.knee
        return {"sweep": self.sweep.to_dict(), "points": [p.to_dict() for p in self.points],
                "stopped": self.stopped, "knee": k.value if k else None, "summary": self.summary()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepResult:
        """The inverse of ``to_dict`` (derived keys ignored)."""
        return cls(Sweep.from_dict(data["sweep"]),
                   tuple(SweepPoint.from_dict(p) for p in data.get("points") or ()),
                   str(data.get("stopped", "")))


def per_image(latency: LatencyStats, images_per_call: int, reference_images: int) -> LatencyStats:
    """The knee's throughput figure for the gate: its rounds as seconds per image, each over
    its calibration and, paired, over the reference's round beside it, per image too (the
    reference makes ``reference_images`` a call: the workload's images, one request)."""
    from .measure.latency import LatencyStats

    return LatencyStats.from_samples(
        [s / images_per_call for s in latency.samples], None, {}, latency.calibration,
        latency.calibration_kernel, [r / reference_images for r in latency.reference])
