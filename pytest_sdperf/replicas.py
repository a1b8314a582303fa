"""One worker process chosen to stand for its variant, out of two or three.

A worker process has a speed of its own on these machines: in one run here (2026-12-05, the
tiny model, rounds of eight processes interleaved), three ``torch-default-attn`` workers took
0.57-0.59 s a call and a fourth 0.70 s, in every one of its 25 rounds, while four
``torch-fp32`` workers agreed within 1.3%. A process like the fourth, kept as the session's
paired reference, moves every paired ratio of the session; recorded as a variant's baseline, it
moves every later comparison of that test until the entry is re-recorded.

Two forms. ``representative`` (the session's paired reference) starts two workers of one variant, times ``PROBE_ROUNDS`` calls in each,
interleaved (so a drift of the machine hits both), and keeps the first when their medians agree
within ``TOLERANCE``; otherwise it starts a third (where ``room`` says one fits), probes all
three again and keeps the one whose median lies between the other two (without room, the
first, saying so). The others are closed.
The kept worker is built and warm, and has forgotten the probe's calls (``restart``): they are
not part of any measurement.

``Replicas`` (a recording's variant) does the same inside the measurement, so that agreeing
processes cost only their start: it has ``DrivenWorker``'s interface, and ``pairing``'s paired
rounds go to its candidates in turn. Once each has ``PROBE_ROUNDS``, they are compared; when two
agree, both processes' rounds are kept and the second is closed (the recording spans two
processes); otherwise a third takes its rounds, the middle one is kept and the other two's
rounds are dropped (``take_dropped``: the round indices, for the pairing to drop its reference
rounds too). The result is the kept worker's (images, memory, stages), its latency the kept
rounds.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any, Callable

from .runner import DrivenWorker, WorkerOutcome

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
    #: The first two processes' medians where all were timed again beside a third (the session
    #: reference's probe); () where ``medians`` holds them (a recording's rounds are not re-timed).
    first: tuple[float, ...] = ()
    #: Decided on fewer than ``PROBE_ROUNDS`` rounds a process: the rounds ran out first.
    short: bool = False

    @property
    def agreed(self) -> bool:
        """Whether no disagreement was seen: one process (no room for a second), or two that
        agreed."""
        return len(self.medians) < 2 or (len(self.medians) == 2 and agree(self.medians))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a result's info."""
        out: dict[str, Any] = {"medians_s": [round(m, 6) for m in self.medians], "kept": self.kept}
        if self.first:
            out["first_medians_s"] = [round(m, 6) for m in self.first]
        if self.short:
            out["short"] = True
        return out

    def note(self, variant: str) -> str:
        """A line for the summary where the processes disagreed, else ''."""
        if self.agreed:
            return ""
        first = ", ".join(f"{m:.3f}" for m in (self.first or self.medians[:2]))
        head = (f"{variant}: its first two worker processes differed by more than {TOLERANCE:.0%} "
                f"(median {first} s a call)")
        if len(self.medians) < 3:
            if self.short:
                return (f"{head} over fewer than {PROBE_ROUNDS} rounds each, as the rounds ran "
                        "out; no time for a third: both processes' rounds were kept")
            return f"{head}; no room for a third, process 1 was kept"
        if self.first:
            again = ", ".join(f"{m:.3f}" for m in self.medians)
            return (f"{head}; timed again beside a third: {again} s, and process {self.kept + 1}, "
                    "the middle one, was kept")
        short = f" over fewer than {PROBE_ROUNDS} rounds, as the rounds ran out" if self.short else ""
        return (f"{head}; a third ran {self.medians[2]:.3f} s{short}, and process "
                f"{self.kept + 1}, the middle one, was kept")


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
    from .host import mem_available_bytes, proc_status_bytes

    needed, available = proc_status_bytes("VmHWM", worker.proc.pid), mem_available_bytes()
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
        first: tuple[float, ...] = ()
        kept = 0
        if not agree(medians) and room(workers[0]):
            workers.append(make(2))
            workers[2].start()
            medians, first = _probe(workers, rounds), medians
            kept = middle(medians)
        for i, worker in enumerate(workers):
            if i != kept:
                worker.close()
        workers[kept].ask(cmd="restart")  # the probe's calls forgotten, the calibration afresh
        return workers[kept], Probe(medians, kept, first)
    except BaseException:
        for worker in workers:
            worker.close()
        raise


class Replicas:
    """A recording's variant in two or three processes, driven as one (see the module)."""

    def __init__(self, make: Callable[[int], DrivenWorker],
                 room: Callable[[DrivenWorker], bool] = room_for_another, rounds: int = PROBE_ROUNDS) -> None:
        self._make, self._room, self._probe_rounds = make, room, rounds
        self.workers: list[DrivenWorker] = []
        self.live: list[int] = []  # candidates still taking rounds
        self.rounds: list[int] = []  # the candidate of each round so far
        self.seconds: list[float] = []
        self._pending: list[int] = []  # round indices dropped since take_dropped
        self.probe: Probe | None = None
        self.last_reply: dict[str, Any] = {}

    @property
    def proc(self) -> Any:
        """The first candidate's process."""
        return self.workers[0].proc

    @property
    def kept(self) -> int:
        """The candidate whose result stands (its images, memory, stages)."""
        return self.probe.kept if self.probe is not None else 0

    def _add(self) -> None:
        worker = self._make(len(self.workers))
        self.workers.append(worker)
        worker.start()
        self.live.append(len(self.workers) - 1)

    def start(self) -> None:
        """Start the first candidate, and the second where there is room for it."""
        try:
            self._add()
            self.last_reply = self.workers[0].last_reply
            if self._room(self.workers[0]):
                self._add()
            else:
                self.probe = Probe((), 0)
        except BaseException:
            self.close()
            raise

    def single(self) -> None:
        """Drive the first candidate alone from here on (unpaired rounds, a restart)."""
        for i in self.live[1:]:
            self.workers[i].close()
        self.live = self.live[:1]
        if self.probe is None:
            self.probe = Probe((), self.live[0])

    def ask(self, **cmd: Any) -> dict[str, Any]:
        """A round goes to the live candidate with the fewest rounds; a restart drives the
        kept one alone and forgets every round."""
        if cmd.get("cmd") != "round":
            self.single()
            if cmd.get("cmd") == "restart":
                self.rounds, self.seconds, self._pending = [], [], []
            self.last_reply = self.workers[self.live[0]].ask(**cmd)
            return self.last_reply
        turn = min(self.live, key=lambda i: (self.rounds.count(i), i))
        self.last_reply = self.workers[turn].ask(**cmd)
        self.rounds.append(turn)
        self.seconds.append(float(self.last_reply["seconds"]))
        if self.probe is None and all(self.rounds.count(i) >= self._probe_rounds for i in self.live):
            self._decide()
        return self.last_reply

    def settle(self) -> None:
        """Decide a probe the rounds ran out on (call after the last round, then
        ``take_dropped``): two processes are compared on the rounds they have and both kept
        (which one is odd needs a third); of three, the middle one is kept and the other two's
        rounds dropped, as when the probe completes. A candidate without rounds is left out."""
        if self.probe is not None:
            return
        timed = [i for i in self.live if i in self.rounds]
        if len(timed) < 2:
            kept = (timed or self.live)[0]
            self.probe = Probe((), kept)
            self._drop(set(self.live) - {kept})
            return
        medians = tuple(self._median(i) for i in timed)
        if len(timed) == 2:
            self.probe = Probe(medians, timed[0], short=True)
            self._drop(set(self.live) - set(timed))
        else:
            kept = timed[middle(medians)]
            self.probe = Probe(medians, kept, short=True)
            self._drop(set(self.live) - {kept})

    def _median(self, i: int) -> float:
        return statistics.median(s for c, s in zip(self.rounds, self.seconds, strict=True) if c == i)

    def _decide(self) -> None:
        medians = tuple(self._median(i) for i in range(len(self.workers)))
        if len(medians) == 2 and agree(medians):
            self.probe = Probe(medians, 0)
            self.single()
        elif len(medians) == 2 and not self._room(self.workers[0]):
            self.probe = Probe(medians, 0)
            self._drop({1})
        elif len(medians) == 2:
            self._add()
        else:
            self.probe = Probe(medians, middle(medians))
            self._drop({0, 1, 2} - {self.probe.kept})

    def _drop(self, candidates: set[int]) -> None:
        """Close ``candidates`` and leave their rounds out (``take_dropped`` says which)."""
        for i in candidates:
            self.workers[i].close()
        self.live = [c for c in self.live if c not in candidates]
        self._pending = [k for k, c in enumerate(self.rounds) if c in candidates]
        self.rounds = [c for c in self.rounds if c not in candidates]
        self.seconds = [s for k, s in enumerate(self.seconds) if k not in self._pending]

    def take_dropped(self) -> list[int]:
        """The indices of the rounds just dropped, among the rounds before they were (the
        caller drops its own rounds at the same indices, keeping both in step)."""
        pending, self._pending = self._pending, []
        return pending

    def finish(self, reference: list[float] | None = None) -> WorkerOutcome:
        """The kept candidate's result, its latency the kept rounds (``reference``: the paired
        reference's rounds beside the kept rounds, in order)."""
        from .measure.latency import LatencyStats

        kept = self.kept
        for i in self.live:
            if i != kept:
                self.workers[i].close()
        outcome = self.workers[kept].finish([])
        result = outcome.measured
        if result is None or result.latency is None:
            return outcome
        lat = result.latency
        samples = self.seconds
        if not samples:
            return outcome
        group = LatencyStats.from_samples(samples, lat.first_call_s, lat.stages, lat.calibration,
                                          lat.calibration_kernel, reference or [])
        info = {**result.info, "processes": {**(self.probe or Probe((), kept)).to_dict(),
                                             "rounds": list(self.rounds)}}
        return dataclasses.replace(outcome, result=dataclasses.replace(result, latency=group, info=info))

    def close(self) -> None:
        """End every candidate."""
        for worker in self.workers:
            worker.close()
