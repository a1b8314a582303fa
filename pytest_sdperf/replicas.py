"""One worker process chosen to stand for its variant, out of two or three.

A worker process has a speed of its own on these machines: in one run here (2026-12-05, the
tiny model, rounds of eight processes interleaved), three ``torch-default-attn`` workers took
0.57-0.59 s a call and a fourth 0.70 s, in every one of its 25 rounds, while four
``torch-fp32`` workers agreed within 1.3%. A process like the fourth, kept as the session's
paired reference, moves every paired ratio of the session; recorded as a variant's baseline, it
moves every later comparison of that test until the entry is re-recorded.

Two forms. ``representative`` (the session's paired reference) starts two workers of one variant, times ``PROBE_ROUNDS`` calls in each,
interleaved (so a drift of the machine hits both), and keeps the first when their medians agree
within ``TOLERANCE`` or within what their calls' noise explains (``apart``); otherwise it starts a third (where ``room`` says one fits), probes all
three again and keeps the one whose median lies between the other two (without room, the
first, saying so). The others are closed.
The kept worker is built and warm, and has forgotten the probe's calls (``restart``): they are
not part of any measurement.

``Replicas`` (a recording's variant) does the same inside the measurement, so that agreeing
processes cost only their start: it has ``DrivenWorker``'s interface, and ``pairing``'s paired
rounds go to its candidates in turn. Once each has ``PROBE_ROUNDS``, they are compared, on the
median of their rounds over the paired reference's round beside each (``beside``), the figure
the recording keeps: a drift of the machine moves the reference alike and cancels, where seconds
a call compared rounds taken at different moments (a new user's recording on a Zen 3 here,
2026-12-06, found 13 of 26 tests' first two processes more than 6% apart in seconds, one by
30%, and each of those spent its rounds on a third process and kept 5-10 rounds); and they
disagree only where the medians are apart beyond their rounds' noise too (``apart``). When two
agree, both processes' rounds are kept and the second is closed (the recording spans two
processes); otherwise a third takes its rounds, the middle one is kept and the other two's
rounds are dropped (``take_dropped``: the round indices, for the pairing to drop its reference
rounds too). The result is the kept worker's (images, memory, stages), its latency the kept
rounds.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .runner import DrivenWorker, WorkerOutcome

#: Calls timed in each candidate process.
PROBE_ROUNDS = 5
#: A process (another candidate here; pairing's reference beside a variant) is started only when
#: this many times its expected size is available.
MEMORY_HEADROOM = 1.25
#: Two processes agree when the slower one's median is at most this much above the faster's.
TOLERANCE = 0.06
#: ... or when their medians are apart by at most this many standard errors of the difference
#: (each the bootstrap standard error of a process's log median): five rounds' median moves by
#: chance, and a process of a speed of its own is one whose rounds say so. Without it, a new
#: user's recording on a Zen 3 here (2026-12-06) found 13 of 26 tests' first two processes more
#: than 6% apart in seconds a call, and 8 of the first 21 still over the paired reference, where
#: five rounds' medians of one process's ratios moved by 3-5%.
SEPARATION_Z = 2.576


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
    #: What the medians are of: "" seconds a call; else the name of the paired reference the
    #: medians are per-round ratios over (``Replicas.beside``).
    over: str = ""
    #: The first two medians are over ``TOLERANCE`` apart, but within what their rounds' noise
    #: explains (``SEPARATION_Z``): not a disagreement.
    within_noise: bool = False

    @property
    def agreed(self) -> bool:
        """Whether no disagreement was seen: one process (no room for a second), or two that
        agreed."""
        return len(self.medians) < 2 or (len(self.medians) == 2 and (self.within_noise or agree(self.medians)))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a result's info."""
        key = "medians_over" if self.over else "medians_s"
        out: dict[str, Any] = {key: [round(m, 6) for m in self.medians], "kept": self.kept}
        if self.over:
            out["over"] = self.over
        if self.first:
            out["first_medians_s"] = [round(m, 6) for m in self.first]
        if self.short:
            out["short"] = True
        if self.within_noise:
            out["within_noise"] = True
        return out

    def note(self, variant: str) -> str:
        """A line for the summary where the processes disagreed, else ''."""
        if self.agreed:
            return ""
        first = ", ".join(f"{m:.3f}" for m in (self.first or self.medians[:2]))
        unit = f"per-round ratio over {self.over}" if self.over else "s a call"
        figure = f"median per-round ratio over {self.over} {first}" if self.over else f"median {first} s a call"
        head = (f"{variant}: its first two worker processes differed by more than {TOLERANCE:.0%} "
                f"({figure})")
        if len(self.medians) < 3:
            if self.short:
                return (f"{head} over fewer than {PROBE_ROUNDS} rounds each, as the rounds ran "
                        "out; no time for a third: both processes' rounds were kept")
            return f"{head}; no room for a third, process 1 was kept"
        if self.first:
            again = ", ".join(f"{m:.3f}" for m in self.medians)
            return (f"{head}; timed again beside a third: {again} {unit}, and process "
                    f"{self.kept + 1}, the middle one, was kept")
        short = f" over fewer than {PROBE_ROUNDS} rounds, as the rounds ran out" if self.short else ""
        third = f"{self.medians[2]:.3f} {unit if self.over else 's'}"
        return (f"{head}; a third ran {third}{short}, and process "
                f"{self.kept + 1}, the middle one, was kept")


def agree(medians: tuple[float, ...] | list[float], tolerance: float = TOLERANCE) -> bool:
    """Whether the slowest median is within ``tolerance`` of the fastest."""
    return max(medians) <= (1.0 + tolerance) * min(medians)


def apart(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two processes' rounds ``a`` and ``b`` say they run at different speeds: their
    medians more than ``TOLERANCE`` apart, and by more than ``SEPARATION_Z`` standard errors of
    the difference."""
    from .measure.latency import log_median_se

    first, second = statistics.median(a), statistics.median(b)
    if agree((first, second)):
        return False
    se = math.hypot(log_median_se(a), log_median_se(b))
    return abs(math.log(first / second)) > SEPARATION_Z * se


def middle(medians: tuple[float, ...] | list[float]) -> int:
    """The index of the median value (of three: the one between the other two)."""
    order = sorted(range(len(medians)), key=lambda i: medians[i])
    return order[(len(order) - 1) // 2]


def _probe(workers: list[DrivenWorker], rounds: int) -> list[list[float]]:
    times: list[list[float]] = [[] for _ in workers]
    for _ in range(rounds):
        for i, worker in enumerate(workers):
            times[i].append(float(worker.ask(cmd="round", calibrate=False)["seconds"]))
    return times


def _medians(times: list[list[float]]) -> tuple[float, ...]:
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
        times = _probe(workers, rounds)
        medians, differ = _medians(times), apart(times[0], times[1])
        noise = not agree(medians) and not differ
        first: tuple[float, ...] = ()
        kept = 0
        if differ and room(workers[0]):
            workers.append(make(2))
            workers[2].start()
            medians, first = _medians(_probe(workers, rounds)), medians
            kept = middle(medians)
        for i, worker in enumerate(workers):
            if i != kept:
                worker.close()
        workers[kept].ask(cmd="restart")  # the probe's calls forgotten, the calibration afresh
        return workers[kept], Probe(medians, kept, first, within_noise=noise)
    except BaseException:
        for worker in workers:
            worker.close()
        raise


class Replicas:
    """A recording's variant in two or three processes, driven as one (see the module)."""

    def __init__(self, make: Callable[[int], DrivenWorker],
                 room: Callable[[DrivenWorker], bool] = room_for_another, rounds: int = PROBE_ROUNDS,
                 paired: bool = False) -> None:
        """``paired``: each round's paired reference seconds will be given (``beside``), and the
        candidates are compared on their rounds over them; else on seconds a call, decided as
        each round is taken."""
        self._make, self._room, self._probe_rounds, self._paired = make, room, rounds, paired
        self._over = ""  # the paired reference's name (``beside``)
        self.workers: list[DrivenWorker] = []
        self.live: list[int] = []  # candidates still taking rounds
        self.rounds: list[int] = []  # the candidate of each round so far
        self.seconds: list[float] = []
        self.divisors: list[float] = []  # paired: the reference's seconds beside each round
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
                self.rounds, self.seconds, self.divisors, self._pending = [], [], [], []
            self.last_reply = self.workers[self.live[0]].ask(**cmd)
            return self.last_reply
        turn = min(self.live, key=lambda i: (self.rounds.count(i), i))
        self.last_reply = self.workers[turn].ask(**cmd)
        self.rounds.append(turn)
        self.seconds.append(float(self.last_reply["seconds"]))
        if not self._paired:
            self._maybe_decide()
        return self.last_reply

    def beside(self, reference_s: float, over: str) -> None:
        """The seconds of the paired reference ``over`` in the round just taken (``paired``);
        the probe is decided once each live candidate has its rounds."""
        if not self._paired or len(self.divisors) >= len(self.seconds):
            return
        self._over = over
        self.divisors.append(reference_s)
        self._maybe_decide()

    def _maybe_decide(self) -> None:
        if self.probe is None and all(self.rounds.count(i) >= self._probe_rounds for i in self.live):
            self._decide()

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
            noise = not agree(medians) and not apart(self._figures(timed[0]), self._figures(timed[1]))
            self.probe = self._probe_of(medians, timed[0], short=True, within_noise=noise)
            self._drop(set(self.live) - set(timed))
        else:
            kept = timed[middle(medians)]
            self.probe = self._probe_of(medians, kept, short=True)
            self._drop(set(self.live) - {kept})

    @property
    def _over_reference(self) -> bool:
        """Whether every round has the paired reference's seconds beside it (``beside``)."""
        return self._paired and len(self.divisors) == len(self.seconds)

    def _figures(self, i: int) -> list[float]:
        """Candidate ``i``'s rounds: over the reference beside each where every round has one
        (``paired``), else its seconds."""
        if self._over_reference:
            figures = [s / d for s, d in zip(self.seconds, self.divisors, strict=True)]
        else:
            figures = self.seconds
        return [f for c, f in zip(self.rounds, figures, strict=True) if c == i]

    def _median(self, i: int) -> float:
        return statistics.median(self._figures(i))

    def _probe_of(self, medians: tuple[float, ...], kept: int, short: bool = False,
                  within_noise: bool = False) -> Probe:
        over = self._over if self._over_reference else ""
        return Probe(medians, kept, short=short, over=over, within_noise=within_noise)

    def _decide(self) -> None:
        medians = tuple(self._median(i) for i in range(len(self.workers)))
        if len(medians) == 2 and not apart(self._figures(0), self._figures(1)):
            self.probe = self._probe_of(medians, 0, within_noise=not agree(medians))
            self.single()
        elif len(medians) == 2 and not self._room(self.workers[0]):
            self.probe = self._probe_of(medians, 0)
            self._drop({1})
        elif len(medians) == 2:
            self._add()
        else:
            self.probe = self._probe_of(medians, middle(medians))
            self._drop({0, 1, 2} - {self.probe.kept})

    def _drop(self, candidates: set[int]) -> None:
        """Close ``candidates`` and leave their rounds out (``take_dropped`` says which)."""
        for i in candidates:
            self.workers[i].close()
        self.live = [c for c in self.live if c not in candidates]
        self._pending = [k for k, c in enumerate(self.rounds) if c in candidates]
        self.rounds = [c for c in self.rounds if c not in candidates]
        self.seconds = [s for k, s in enumerate(self.seconds) if k not in self._pending]
        self.divisors = [d for k, d in enumerate(self.divisors) if k not in self._pending]

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
