"""Paired measurement across two processes: the variant's worker and a reference worker, each
built once and kept alive, driven by the parent one round at a time in ABBA order.

Each round times the variant (A) and the reference variant (B) one after the other, the other
process idle meanwhile; odd rounds go B then A, so a drift of the machine hits both sides alike.
A paired variant's rounds are not followed by the calibration workload (the reference is the
yardstick; calibrating would add a tenth of a second between A and B); unpaired rounds are.
The reference runs in its own process in the plain environment: an env-* variant (allocator,
threads, pinning) is compared with the reference as users run it, and no variant's memory
includes the reference's. One reference worker serves every test of a workload in the session
(``ReferencePool``); it is closed at the session's end.

A variant that names a yardstick (``VariantSpec.yardstick``: ov-fp32 for the OpenVINO variants
built on it) has a third kept-alive worker, the yardstick's, timed in the same rounds: even
rounds go yardstick, variant, reference; odd ones reference, variant, yardstick, so the variant
sits beside each and a drift hits all three alike. Its rounds are kept beside the variant's
(``LatencyStats.yardstick``); the paired gate compares over them where the baseline holds them
too (compare.latency_figures). A yardstick that cannot be had or fails leaves the test paired
with the reference alone, and the note says why.

Where a reference worker cannot be had (it skips on this model, fails, or the pair would not fit
in memory), the test is measured without it and compared by calibration, and the note says so.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping

from .host import mem_available_bytes
from .protocol import WorkerRequest
from .replicas import MEMORY_HEADROOM, Probe, Replicas, representative
from .rounds import more_rounds
from .runner import DrivenWorker, WorkerGone, WorkerOutcome
from .zygote import Zygote

# A paired round is "disturbed" when one side took this many times its own median: other work
# on a 2-core machine stalls a 2-thread OpenMP process far more than the other (a reference
# round of 0.26 s took 3-12 s beside a test run here, while the OpenVINO variant's did not move).
DISTURBED_FACTOR = 3.0


@dataclasses.dataclass(frozen=True)
class Paired:
    """What a paired measurement gives: the variant's outcome (its latency's ``reference`` holds
    the reference's rounds when paired) and a note where it could not be paired."""

    outcome: WorkerOutcome
    note: str = ""
    reference_pid: int | None = None  # the reference worker's process, when paired
    disturbed: int = 0  # paired rounds with one side over DISTURBED_FACTOR x its median
    processes: str = ""  # where the variant's candidate processes disagreed (replicas.Probe.note)
    yardstick_note: str = ""  # why the variant's yardstick was not timed beside it, where it was not


def disturbed_rounds(samples: list[float], reference: list[float]) -> int:
    """How many paired rounds had one side over ``DISTURBED_FACTOR`` times its own median
    (0 with fewer than 5 rounds: no median to speak of)."""
    import statistics

    if len(samples) < 5 or len(reference) != len(samples):
        return 0
    limit_a = DISTURBED_FACTOR * statistics.median(samples)
    limit_b = DISTURBED_FACTOR * statistics.median(reference)
    return sum(a > limit_a or b > limit_b for a, b in zip(samples, reference, strict=True))


class ReferencePool:
    """Comparison workers kept alive for the session, one per key: the paired reference's per
    model, workload and warm-up, and each variant yardstick's (``VariantSpec.yardstick``, keys
    ``yardstick:NAME/...``); each the representative of two or three processes
    (``replicas.representative``)."""

    def __init__(self) -> None:
        self._workers: dict[str, DrivenWorker] = {}
        self._refused: dict[str, str] = {}
        self.probes: dict[str, Probe] = {}  # how each key's worker was chosen (replicas.py)
        self._folder: Path | None = None

    def get(self, key: str, request: WorkerRequest, timeout_s: float, hang_floor_s: float,
            expected_peak: int | None, launcher: Zygote | None = None,
            role: str = "paired reference") -> DrivenWorker | str:
        """The reference worker for ``key`` (started on first use, forked by ``launcher``
        where it may be), or why there is none (``role``: what the worker is to the tests, for
        that message)."""
        if key in self._workers:
            return self._workers[key]
        if key in self._refused:
            return self._refused[key]
        available = mem_available_bytes()
        # A pair is started only when this much of the reference's expected peak is free.
        if expected_peak and available is not None and available < MEMORY_HEADROOM * expected_peak:
            return (f"the {role} would need about {expected_peak / 2**30:.1f} GiB beside "
                    f"this variant, {available / 2**30:.1f} GiB is available")
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="sdperf-reference-"))
        workdir = self._folder / f"ref{len(self._workers) + len(self._refused)}"
        request = dataclasses.replace(request, out_dir=workdir / "images")

        def make(i: int) -> DrivenWorker:
            return DrivenWorker(request, workdir / f"process{i}", timeout_s, {}, hang_floor_s, launcher)

        try:
            worker, self.probes[key] = representative(make)
        except WorkerGone as gone:
            why = gone.outcome.failure_text(request.variant.name, timeout_s).split("\n", 1)[0]
            if gone.outcome.skip_reason:
                why = gone.outcome.skip_reason
            self._refused[key] = f"the {role} {request.variant.name} is unavailable ({why})"
            return self._refused[key]
        self._workers[key] = worker
        return worker

    def drop(self, key: str, why: str) -> None:
        """A reference worker that failed mid-session: closed, and not started again."""
        worker = self._workers.pop(key, None)
        if worker is not None:
            worker.close()
        self._refused[key] = why

    def close(self) -> None:
        """End every reference worker and remove their folder."""
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


def measure_paired(request: WorkerRequest, workdir: Path, timeout_s: float, env: Mapping[str, str],
                   hang_floor_s: float, reference: Callable[[], DrivenWorker | str],
                   on_reference_failure: Callable[[str], None],
                   launcher: Zygote | None = None, calibrate: bool = False,
                   instances: int = 0, replicas: bool = False,
                   yardstick: Callable[[], DrivenWorker | str] | None = None,
                   on_yardstick_failure: Callable[[str], None] = lambda why: None) -> Paired:
    """Start the variant's worker (forked by ``launcher`` where it may be), then take rounds
    (``rounds.more_rounds``) paired with the reference worker ``reference()`` gives, ABBA;
    without one, rounds of the variant alone. ``calibrate``: time the calibration workload
    after paired rounds too (the validation harness judges every gate mode on the same data).
    ``instances``: that many workers of the variant, pinned to shares of the request's
    ``machine_cpus``, driven as one (instances.py); a refused split skips. ``replicas``: the
    variant's worker is the representative of two or three processes (replicas.py: for a
    recording, which later sessions are compared with), the probe in ``info["processes"]``.
    ``yardstick()``: the variant's yardstick worker, or why there is none (its rounds are
    taken while the test is paired with the reference; the outcome's latency holds them)."""
    from .instances import InstanceGroup, InstancesError
    from .measure.latency import LatencyStats
    from .protocol import WorkerResult

    def make(i: int) -> DrivenWorker:
        return DrivenWorker(request, workdir / f"process{i}" if i else workdir, timeout_s, env,
                            hang_floor_s, launcher)

    variant: DrivenWorker | InstanceGroup | Replicas
    if instances:
        try:
            variant = InstanceGroup(request, workdir, timeout_s, env, hang_floor_s, instances)
        except InstancesError as exc:
            return Paired(WorkerOutcome("skip", WorkerResult.skipped(str(exc))))
    else:
        variant = Replicas(make, paired=True) if replicas else make(0)
    try:
        variant.start()
        ref = reference()
        note = ref if isinstance(ref, str) else ""
        yard: DrivenWorker | str = "" if yardstick is None else yardstick()
        yard_samples: list[float] = []
        if isinstance(variant, Replicas) and (note or calibrate):
            variant.single()  # unpaired or calibrated rounds: one process, as before
        samples: list[float] = []
        ref_samples: list[float] = []
        marks = [float(variant.last_reply.get("calibration", 0.0))]

        def so_far() -> LatencyStats:
            around = [(a + b) / 2 for a, b in zip(marks[:-1], marks[1:], strict=True)]
            stats = LatencyStats.from_samples(samples, calibration=around if note or calibrate else [],
                                              reference=[] if note else ref_samples)
            return stats if note or isinstance(yard, str) else stats.with_yardstick(yard_samples, yard.name)

        start = time.monotonic()
        # A recording's rounds dropped with an odd process out (replicas.py) are not charged to
        # its time budget: the kept process has the budget's rounds (it kept as few as 5 here,
        # and such an entry is too noisy to decide against later). At most the probe's rounds.
        walls: list[float] = []  # each kept round's wall time
        credit = 0.0
        while more_rounds(request, samples, so_far, time.monotonic() - start - credit):
            began = time.monotonic()
            first = len(samples) % 2 == 0  # even rounds: yardstick first, reference last
            if not isinstance(ref, str) and not first:
                ref, note = _reference_round(ref, ref_samples, on_reference_failure)
            if not isinstance(ref, str) and not isinstance(yard, str) and first:
                yard = _yardstick_round(yard, yard_samples, on_yardstick_failure)
            paired = not isinstance(ref, str)
            if not paired and len(marks) != len(samples) + 1:
                # The reference failed mid-way: the rounds so far were not calibrated (a paired
                # variant's rounds are not); start again, each round calibrated.
                samples, ref_samples, yard_samples = [], [], []
                marks = [float(variant.ask(cmd="restart")["calibration"])]
            reply = variant.ask(cmd="round", calibrate=calibrate or not paired)
            samples.append(float(reply["seconds"]))
            if calibrate or not paired:
                marks.append(float(reply["calibration"]))
            if not isinstance(ref, str) and not isinstance(yard, str) and not first:
                yard = _yardstick_round(yard, yard_samples, on_yardstick_failure)
            if not isinstance(ref, str) and first:
                ref, note = _reference_round(ref, ref_samples, on_reference_failure)
            walls.append(time.monotonic() - began)
            if isinstance(variant, Replicas):
                if not isinstance(ref, str):  # the candidates are compared over the reference
                    variant.beside(ref_samples[-1], ref.name)
                # An odd process out: its rounds, and the reference's beside them, left out
                # (here, once this round's reference round is in: the lists are in step).
                dropped = set(variant.take_dropped())
                credit += sum(w for k, w in enumerate(walls) if k in dropped)
                walls = [w for k, w in enumerate(walls) if k not in dropped]
                samples, ref_samples, yard_samples = _without(dropped, samples, ref_samples, yard_samples)
        if isinstance(variant, Replicas):  # a probe the rounds ran out on is decided now
            variant.settle()
            samples, ref_samples, yard_samples = _without(set(variant.take_dropped()), samples,
                                                          ref_samples, yard_samples)
        pid = None if isinstance(ref, str) else ref.proc.pid
        disturbed = 0 if note else disturbed_rounds(samples, ref_samples)
        probe = variant.probe if isinstance(variant, Replicas) else None
        outcome = variant.finish([] if note else ref_samples)
        if not note and not isinstance(yard, str):
            outcome = _with_yardstick(outcome, yard_samples, yard.name)
        why_not = yard if isinstance(yard, str) else ""
        return Paired(outcome, note, pid, disturbed, probe.note(request.variant.name) if probe else "",
                      "" if note else why_not)
    except WorkerGone as gone:
        return Paired(gone.outcome)
    finally:
        variant.close()


def _without(dropped: set[int], samples: list[float], ref_samples: list[float],
             yard_samples: list[float]) -> tuple[list[float], list[float], list[float]]:
    """The variant's, the reference's and the yardstick's rounds less the rounds ``dropped``
    (``Replicas.take_dropped``)."""
    return ([x for k, x in enumerate(samples) if k not in dropped],
            [x for k, x in enumerate(ref_samples) if k not in dropped],
            [x for k, x in enumerate(yard_samples) if k not in dropped])


def _reference_round(ref: DrivenWorker, ref_samples: list[float],
                     on_failure: Callable[[str], None]) -> tuple[DrivenWorker | str, str]:
    """One timed round of the reference; on its failure, unpaired from here on, saying why."""
    try:
        ref_samples.append(float(ref.ask(cmd="round", calibrate=False)["seconds"]))
        return ref, ""
    except WorkerGone as gone:
        why = ("the paired reference failed mid-session, compared by calibration instead: "
               + gone.outcome.failure_text("the reference", ref.timeout_s).split("\n", 1)[0])
        on_failure(why)
        return why, why


def _with_yardstick(outcome: WorkerOutcome, rounds: list[float], name: str) -> WorkerOutcome:
    """``outcome`` with ``name``'s rounds beside its latency's as the yardstick."""
    result = outcome.measured
    if result is None or result.latency is None:
        return outcome
    latency = result.latency.with_yardstick(rounds, name)
    return dataclasses.replace(outcome, result=dataclasses.replace(result, latency=latency))


def _yardstick_round(yard: DrivenWorker, yard_samples: list[float],
                     on_failure: Callable[[str], None]) -> DrivenWorker | str:
    """One timed round of the yardstick; on its failure, why (the test then goes on paired
    with the reference alone, its yardstick rounds dropped)."""
    try:
        yard_samples.append(float(yard.ask(cmd="round", calibrate=False)["seconds"]))
        return yard
    except WorkerGone as gone:
        why = ("the yardstick failed mid-session, compared over the reference instead: "
               + gone.outcome.failure_text("the yardstick", yard.timeout_s).split("\n", 1)[0])
        on_failure(why)
        yard_samples.clear()
        return why
