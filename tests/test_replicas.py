"""The representative process (replicas.py): stand-in workers with set speeds, then a recording
of the fake pipeline whose first process is 3x slower."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_sdperf import replicas
from pytest_sdperf.runner import WorkerGone, WorkerOutcome
from pytest_sdperf.testing import SdperfRun


@pytest.fixture
def run(pytester: pytest.Pytester) -> SdperfRun:
    r = SdperfRun(pytester)
    r.write_suite()
    return r


class Candidate:
    """A started-on-demand stand-in worker whose every round takes ``seconds``."""

    def __init__(self, seconds: float, fail: bool = False) -> None:
        self.seconds, self.fail = seconds, fail
        self.commands: list[str] = []
        self.closed = False
        self.proc = SimpleNamespace(pid=0)
        self.name = "v"
        self.last_reply: dict[str, Any] = {"ready": True, "calibration": 0.1}

    def start(self) -> None:
        if self.fail:
            raise WorkerGone(WorkerOutcome("crash", stderr_tail="died", returncode=9))

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.commands.append(cmd["cmd"])
        return {"seconds": self.seconds} if cmd["cmd"] == "round" else {"calibration": 0.1}

    def close(self) -> None:
        self.closed = True


def _choose(speeds: list[float], room: bool = True) -> tuple[int, replicas.Probe, list[Candidate]]:
    made: list[Candidate] = []

    def make(i: int) -> Any:
        made.append(Candidate(speeds[i]))
        return made[-1]

    kept, probe = replicas.representative(make, lambda first: room)
    return made.index(kept), probe, made  # type: ignore[arg-type]


def test_two_processes_that_agree_keep_the_first() -> None:
    kept, probe, made = _choose([1.0, 1.04])
    assert kept == 0 and len(made) == 2 and probe.agreed and probe.note("v") == ""
    assert made[1].closed and not made[0].closed
    assert made[0].commands == ["round"] * replicas.PROBE_ROUNDS + ["restart"]  # probe forgotten


@pytest.mark.parametrize("speeds, middle", [([1.25, 1.0, 1.02], 2), ([1.0, 1.25, 1.02], 2), ([1.0, 0.8, 0.99], 2)])
def test_an_odd_process_out_is_left_out(speeds: list[float], middle: int) -> None:
    kept, probe, made = _choose(speeds)
    assert kept == middle and len(made) == 3 and not probe.agreed
    assert [c.closed for c in made] == [i != middle for i in range(3)]
    assert "first two worker processes differed" in probe.note("v")
    assert f"process {middle + 1}, the middle one, was kept" in probe.note("v")
    assert probe.to_dict()["kept"] == middle and len(probe.to_dict()["medians_s"]) == 3


def test_the_note_shows_the_medians_that_differed_and_those_timed_again() -> None:
    """A difference that was gone when the three were timed again (the machine, not the process)
    is shown as it was: the first two medians that differed, then the three re-timed."""
    made: list[Candidate] = []

    class Passing(Candidate):  # slow for the first probe's rounds only
        def ask(self, **cmd: Any) -> dict[str, Any]:
            reply = super().ask(**cmd)
            slow = self.commands.count("round") <= replicas.PROBE_ROUNDS
            return {"seconds": 1.3} if cmd["cmd"] == "round" and slow else reply

    def make(i: int) -> Any:
        made.append(Passing(1.0) if i == 0 else Candidate(1.0 + i / 100))
        return made[-1]

    _, probe = replicas.representative(make, lambda first: True)
    assert probe.first == (1.3, 1.01) and probe.medians == (1.0, 1.01, 1.02)
    note = probe.note("v")
    assert "(median 1.300, 1.010 s a call); timed again beside a third: 1.000, 1.010, 1.020 s" in note
    assert probe.to_dict()["first_medians_s"] == [1.3, 1.01]


def test_without_room_for_another_process_the_first_is_kept_and_said_so() -> None:
    kept, probe, made = _choose([1.0], room=False)
    assert kept == 0 and len(made) == 1 and probe.agreed and made[0].commands == []


def test_a_candidate_that_fails_closes_the_others() -> None:
    made: list[Candidate] = []

    def make(i: int) -> Any:
        made.append(Candidate(1.0, fail=i == 1))
        return made[-1]

    with pytest.raises(WorkerGone):
        replicas.representative(make, lambda first: True)
    assert all(c.closed for c in made)


class Driven(Candidate):
    """A candidate that can finish (its own rounds as a result)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.finished = False

    def finish(self, reference: list[float] | None = None) -> Any:
        from pytest_sdperf.measure.latency import LatencyStats
        from pytest_sdperf.protocol import WorkerResult

        self.finished = True
        result = WorkerResult(status="ok", latency=LatencyStats.from_samples([self.seconds]),
                              info={"me": self.seconds})
        return WorkerOutcome("ok", result)


def _drive(speeds: list[float], rounds: int) -> tuple[replicas.Replicas, list[Driven], list[float], list[int]]:
    made: list[Driven] = []

    def make(i: int) -> Any:
        made.append(Driven(speeds[i]))
        return made[-1]

    group = replicas.Replicas(make, lambda first: True)
    group.start()
    samples: list[float] = []
    dropped: list[int] = []
    for _ in range(rounds):
        samples.append(group.ask(cmd="round", calibrate=False)["seconds"])
        gone = set(group.take_dropped())
        dropped += sorted(gone)
        samples = [x for k, x in enumerate(samples) if k not in gone]
    return group, made, samples, dropped


class Drifting(Driven):
    """A candidate whose rounds take its seconds times the machine's speed in that round."""

    machine = [1.0]

    def ask(self, **cmd: Any) -> dict[str, Any]:
        reply = super().ask(**cmd)
        return {"seconds": self.seconds * self.machine[0]} if cmd["cmd"] == "round" else reply


def _drive_paired(speeds: list[float], machine: list[float],
                  reference_s: float = 0.5) -> tuple[replicas.Replicas, list[Drifting], list[float]]:
    """Rounds of a paired recording, the machine's speed ``machine[k]`` in round k (the
    reference's round beside it slowed alike), each reference round given after its round
    (``beside``). The kept rounds' divisors."""
    made: list[Drifting] = []

    def make(i: int) -> Any:
        made.append(Drifting(speeds[i]))
        return made[-1]

    group = replicas.Replicas(make, lambda first: True, paired=True)
    group.start()
    divisors: list[float] = []
    for speed in machine:
        Drifting.machine[0] = speed
        group.ask(cmd="round", calibrate=False)
        divisors.append(reference_s * speed)
        group.beside(divisors[-1], "the-reference")
        gone = set(group.take_dropped())
        divisors = [x for k, x in enumerate(divisors) if k not in gone]
    Drifting.machine[0] = 1.0
    return group, made, divisors


def test_paired_replicas_compare_their_rounds_over_the_reference() -> None:
    """The machine is 30% slower in every round the second process takes: in seconds the two
    are 30% apart (a third would be started), over the reference beside each round they agree,
    so both processes' rounds are kept and no third is started."""
    machine = [1.0, 1.3] * 7  # process k % 2 takes round k until the probe is decided
    group, made, divisors = _drive_paired([1.0, 1.0], machine)
    assert len(made) == 2 and group.probe is not None and group.probe.agreed
    assert group.probe.over == "the-reference" and group.probe.medians == (2.0, 2.0)
    assert len(divisors) == 14 and made[1].closed
    assert not replicas.agree((group._median(0) * 0.5, 1.3))  # what seconds would have said
    processes = group.finish(divisors).result.info["processes"]
    assert processes["medians_over"] == [2.0, 2.0] and processes["over"] == "the-reference"


def test_paired_replicas_still_drop_a_process_slow_over_the_reference() -> None:
    group, made, divisors = _drive_paired([1.3, 1.0, 1.02], [1.0] * 20)
    assert len(made) == 3 and group.kept == 2 and group.probe is not None
    assert group.probe.over == "the-reference" and group.probe.medians == (2.6, 2.0, 2.04)
    assert set(group.finish(divisors).result.info["processes"]["rounds"]) == {2}
    note = group.probe.note("v")
    assert ("(median per-round ratio over the-reference 2.600, 2.000); a third ran 2.040 "
            "per-round ratio over the-reference") in note


class Noisy(Driven):
    """A candidate whose rounds take its seconds times the next of ``factors``, in turn."""

    def __init__(self, seconds: float, factors: list[float]) -> None:
        super().__init__(seconds)
        self.factors, self.n = factors, 0

    def ask(self, **cmd: Any) -> dict[str, Any]:
        reply = super().ask(**cmd)
        if cmd["cmd"] != "round":
            return reply
        self.n += 1
        return {"seconds": self.seconds * self.factors[(self.n - 1) % len(self.factors)]}


def test_medians_apart_by_chance_are_not_a_disagreement() -> None:
    """Five rounds each whose medians are 8% apart while the rounds of each move by +-15%: within
    what the rounds' noise explains, so both are kept, no third started, and no note; the same 8%
    with rounds that agree within 1% is a process of its own speed, and a third is started."""
    factors = [0.85, 1.15, 1.0, 0.9, 1.1]
    made: list[Driven] = []

    def make(i: int) -> Any:
        made.append(Noisy([1.0, 1.08][i], factors))
        return made[-1]

    group = replicas.Replicas(make, lambda first: True)
    group.start()
    for _ in range(12):
        group.ask(cmd="round", calibrate=False)
    assert len(made) == 2 and group.probe is not None and group.probe.within_noise
    assert group.probe.agreed and group.probe.note("v") == "" and group.take_dropped() == []
    assert not replicas.agree(group.probe.medians)
    steady = [0.995, 1.005, 1.0, 0.998, 1.002]
    assert replicas.apart([1.0 * f for f in steady], [1.08 * f for f in steady])
    assert not replicas.apart([1.0 * f for f in factors], [1.08 * f for f in factors])
    kept, probe = replicas.representative(lambda i: Noisy([1.0, 1.08][i], factors), lambda first: True)
    assert probe.within_noise and probe.agreed and probe.to_dict()["within_noise"] is True


def test_replicas_that_agree_keep_both_processes_rounds() -> None:
    group, made, samples, dropped = _drive([1.0, 1.02], 14)
    assert len(made) == 2 and dropped == [] and made[1].closed and not made[0].closed
    assert samples.count(1.02) == replicas.PROBE_ROUNDS and len(samples) == 14
    outcome = group.finish([0.5] * 14)
    assert made[0].finished and not made[1].finished
    assert list(outcome.result.latency.samples) == samples and len(outcome.result.latency.reference) == 14
    assert outcome.result.info["processes"]["kept"] == 0 and outcome.result.info["me"] == 1.0


def test_replicas_drop_the_odd_process_and_the_far_one() -> None:
    group, made, samples, dropped = _drive([1.3, 1.0, 1.02], 20)
    assert len(made) == 3 and group.kept == 2 and made[0].closed and made[1].closed
    assert len(dropped) == 2 * replicas.PROBE_ROUNDS and set(samples) == {1.02}
    outcome = group.finish([0.5] * len(samples))
    assert made[2].finished and set(outcome.result.info["processes"]["rounds"]) == {2}
    assert "process 3, the middle one, was kept" in group.probe.note("v")


def test_replicas_driven_alone_after_a_restart() -> None:
    group, made, samples, _ = _drive([1.0, 1.3], 3)
    group.ask(cmd="restart")
    assert made[1].closed and group.rounds == [] and group.kept == 0
    assert group.ask(cmd="round")["seconds"] == 1.0


def test_middle_and_agree() -> None:
    assert replicas.middle([3.0, 1.0, 2.0]) == 2 and replicas.middle([1.0, 2.0]) == 0
    assert replicas.agree([1.0, 1.06]) and not replicas.agree([1.0, 1.07])


def test_a_recording_is_made_in_the_representative_process(run: SdperfRun) -> None:
    """The first process of fake-slow-once is 3x slower: the recording's probe sees it, keeps
    a normal one, and says so; the next run (normal speed) compares at about 1x."""
    once = run.root / "slow-once"
    args = ("--sdperf-variants", "fake,fake-slow-once", "--sdperf-set", f"fake_once_file={once}",
            "--sdperf-rounds", "auto", "--sdperf-json", str(run.root / "r.json"))
    first = run.run(*args)
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(["*fake-slow-once: its first two worker processes differed by more than 6%*"])
    record = next(r for r in json.loads((run.root / "r.json").read_text())["results"]
                  if r["variant"] == "fake-slow-once")
    processes = record["info"]["processes"]
    # compared over the paired reference: the fake's rounds over the fake beside each
    medians, kept = processes["medians_over"], processes["kept"]
    assert processes["over"] == "fake"
    assert len(medians) == 3 and kept != 0 and medians[0] > 2 * max(medians[1:])
    # only the kept process's rounds, each paired with a reference round
    assert set(processes["rounds"]) == {kept} and len(processes["rounds"]) == len(record["samples"])
    # Only fake-slow-once's comparison is asserted: the reference fake's own test is judged
    # against the CPU calibration workload while the fake's steps are sleeps, so it moves with
    # the machine's speed between the two runs (read 1.30x once here while other work ran).
    second = run.run(*args)
    record = next(r for r in json.loads((run.root / "r.json").read_text())["results"]
                  if r["variant"] == "fake-slow-once")
    assert record["verdict"] == "pass", second.stdout.str()
    assert 0.6 < record["ratio"] < 1.5 and "processes" not in record["info"]  # a comparison: one


def test_paired_rounds_stay_in_step_when_an_odd_process_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through pairing.measure_paired: the first two processes differ by 7.5%, the third is
    slower still, so the first is kept and the others' rounds go, with the reference rounds
    beside them; every kept round keeps the reference round next to it (ABBA)."""
    from pytest_sdperf import pairing

    steps: list[str] = []

    class Timed(Driven):
        def ask(self, **cmd: Any) -> dict[str, Any]:
            reply = super().ask(**cmd)
            if cmd["cmd"] == "round":
                steps.append("v")
                reply = {"seconds": self.seconds + len(steps) * 1e-6}
            return reply

    class Reference(Candidate):
        def ask(self, **cmd: Any) -> dict[str, Any]:
            steps.append("r")
            return {"seconds": 1.0 + len(steps) * 1e-6}  # its position, about 1 s

    speeds = iter([1.0, 0.93, 1.3])
    monkeypatch.setattr(pairing, "DrivenWorker", lambda *a, **k: Timed(next(speeds)))
    request: Any = SimpleNamespace(rounds=24, auto=None, variant=SimpleNamespace(name="v"))
    paired = pairing.measure_paired(request, Path("unused"), 60.0, {}, 0.0, lambda: Reference(1.0),
                                    lambda why: None, replicas=True)
    latency = paired.outcome.result.latency
    assert len(latency.samples) == len(latency.reference) > 0
    for v, r in zip(latency.samples, latency.reference, strict=True):
        assert round(v, 3) == 1.0 and abs(round((v - 1.0) * 1e6) - round((r - 1.0) * 1e6)) == 1  # beside each other
    assert paired.outcome.result.info["processes"]["kept"] == 0 and "a third ran" in paired.processes


def test_a_probe_the_rounds_ran_out_on_is_decided_on_what_it_has() -> None:
    """The budget ended after the third process took 2 of its 5 rounds (a recording here mixed
    three processes' rounds, two of which had disagreed): the middle one is kept, the other two's
    rounds are dropped, and the probe says it was short."""
    group, made, samples, dropped = _drive([1.3, 1.0, 1.02], 2 * replicas.PROBE_ROUNDS + 2)
    assert len(made) == 3 and group.probe is None and dropped == []
    group.settle()
    gone = group.take_dropped()
    assert len(gone) == 2 * replicas.PROBE_ROUNDS and group.kept == 2 and group.probe.short
    assert [x for k, x in enumerate(samples) if k not in set(gone)] == [1.02, 1.02]
    note = group.probe.note("v")
    assert "(median 1.300, 1.000 s a call); a third ran 1.020 s over fewer than 5 rounds" in note
    assert group.finish([0.5, 0.5]).result.info["processes"]["short"] is True


def test_two_processes_cut_short_keep_both_and_say_so() -> None:
    group, made, samples, _ = _drive([1.3, 1.0], 5)
    group.settle()
    assert group.take_dropped() == [] and group.kept == 0 and group.probe.short
    assert group.probe.medians == (1.3, 1.0)
    assert ("over fewer than 5 rounds each, as the rounds ran out; no time for a third: both "
            "processes' rounds were kept") in group.probe.note("v")
    agreeing, _, _, _ = _drive([1.0, 1.01], 3)
    agreeing.settle()
    assert agreeing.probe.agreed and agreeing.probe.note("v") == ""


def test_rounds_dropped_with_an_odd_process_are_not_charged_to_the_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording with a 30 s budget, each call taking 1 s on a stand-in clock: the first two
    processes differ, a third takes its 5 rounds, and the first two's 10 rounds (20 s with the
    reference's) are dropped at the 15th round; the kept process still has the budget's rounds
    (15, not the 5 it would have kept when the dropped rounds counted)."""
    from pytest_sdperf import pairing

    clock = [0.0]

    class Clocked(Driven):
        def ask(self, **cmd: Any) -> dict[str, Any]:
            reply = super().ask(**cmd)
            if cmd["cmd"] == "round":
                clock[0] += 1.0
            return reply

    speeds = iter([1.3, 1.0, 1.02])
    monkeypatch.setattr(pairing, "DrivenWorker", lambda *a, **k: Clocked(next(speeds)))
    monkeypatch.setattr(pairing, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    auto = SimpleNamespace(min_rounds=5, max_rounds=60, budget_s=30.0, halfwidth=0.02, target=None)
    request: Any = SimpleNamespace(rounds=0, auto=auto, variant=SimpleNamespace(name="v"))
    paired = pairing.measure_paired(request, Path("unused"), 60.0, {}, 0.0, lambda: Clocked(0.5),
                                    lambda why: None, replicas=True)
    latency = paired.outcome.result.latency
    assert paired.outcome.result.info["processes"]["kept"] == 2
    assert set(latency.samples) == {1.02} and len(latency.samples) == len(latency.reference) == 15
