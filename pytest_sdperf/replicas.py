"""One worker process chosen to stand for its variant, out of two or three.

A worker process has a speed of its own on these machines: in one run here (2026-12-05, the
tiny model, rounds of eight processes interleaved), three ``torch-default-attn`` workers took
0.57-0.59 s a call and a fourth 0.70 s, in every one of its 25 rounds, while four
``torch-fp32`` workers agreed within 1.3%. A process like the fourth, kept as the session's
paired reference, moves every paired ratio of the session; recorded as a variant's baseline, it
moves every later comparison of that test until the entry is re-recorded.

``representative`` starts two workers of one variant, times ``PROBE_ROUNDS`` calls in each,
interleaved (so a drift of the machine hits both), and keeps the first when their medians agree
within ``TOLERANCE``; otherwise it starts a third (where ``room`` says one fits), probes all
three again and keeps the one whose median lies between the other two (without room, the
first, saying so). The others are closed.
The kept worker is built and warm, and has forgotten the probe's calls (``restart``): they are
not part of any measurement.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Callable

from .runner import DrivenWorker

#: Calls timed in each candidate process.
PROBE_ROUNDS = 5
#: A process (another candidate here; pairing's reference beside a variant) is started only when
#: this many times its expected size is available.
MEMORY_HEADROOM = 1.25
#: Two processes agree when the slower one's median is at most this much above the faster's.
TOLERANCE = 0.06


@dataclass(frozen=True)
class Probe:
    """What the probe found: each process's median seconds a call, and the one kept."""

    medians: tuple[float, ...]
    kept: int

    @property
    def agreed(self) -> bool:
        """Whether no disagreement was seen: one process (no room for a second), or two that
        agreed."""
        return len(self.medians) < 2 or (len(self.medians) == 2 and agree(self.medians))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a result's info."""
        return {"medians_s": [round(m, 6) for m in self.medians], "kept": self.kept}

    def note(self, variant: str) -> str:
        """A line for the summary where the processes disagreed, else ''."""
        if self.agreed:
            return ""
        shown = ", ".join(f"{m:.3f}" for m in self.medians)
        return (f"{variant}: its worker processes ran at different speeds (median {shown} s a "
                f"call, more than {TOLERANCE:.0%} apart); process {self.kept + 1} was kept"
                + (" (the middle one)" if len(self.medians) == 3 else
                   " (no room for a third process)"))


def agree(medians: tuple[float, ...] | list[float], tolerance: float = TOLERANCE) -> bool:
    """Whether the slowest median is within ``tolerance`` of the fastest."""
    return max(medians) <= (1.0 + tolerance) * min(medians)


def middle(medians: tuple[float, ...] | list[float]) -> int:
    """The index of the median value (of three: the one between the other two)."""
    order = sorted(range(len(medians)), key=lambda i: medians[i])
    return order[(len(order) - 1) // 2]


def _probe(workers: list[DrivenWorker], rounds: int) -> tuple[float, ...]:
    times: list[list[float]] = [[] for _ in workers]
    for _ in range(rounds):
        for i, worker in enumerate(workers):
            times[i].append(float(worker.ask(cmd="round", calibrate=False)["seconds"]))
    return tuple(statistics.median(t) for t in times)


def room_for_another(worker: DrivenWorker) -> bool:
    """Whether one more process of ``worker``'s size (its peak resident memory so far) fits in
    the memory available now, with ``pairing``'s headroom."""
    from .host import mem_available_bytes, peak_resident_bytes

    needed, available = peak_resident_bytes(worker.proc.pid), mem_available_bytes()
    return needed is None or available is None or available >= MEMORY_HEADROOM * needed


def representative(make: Callable[[int], DrivenWorker],
                   room: Callable[[DrivenWorker], bool] = room_for_another,
                   rounds: int = PROBE_ROUNDS) -> tuple[DrivenWorker, Probe]:
    """A started worker standing for its variant, and the probe (see the module). ``make(i)``
    creates the i-th candidate (not started); ``room(first)``: whether one more process like the
    first fits now. A candidate's failure (WorkerGone) closes the others and propagates."""
    workers: list[DrivenWorker] = []
    try:
        workers.append(make(0))
        workers[0].start()
        if not room(workers[0]):
            return workers[0], Probe((), 0)
        workers.append(make(1))
        workers[1].start()
        medians = _probe(workers, rounds)
        kept = 0
        if not agree(medians) and room(workers[0]):
            workers.append(make(2))
            workers[2].start()
            medians = _probe(workers, rounds)
            kept = middle(medians)
        for i, worker in enumerate(workers):
            if i != kept:
                worker.close()
        workers[kept].ask(cmd="restart")  # the probe's calls forgotten, the calibration afresh
        return workers[kept], Probe(medians, kept)
    except BaseException:
        for worker in workers:
            worker.close()
        raise
