"""The paired rounds (pairing.measure_paired) with stand-in workers: which rounds are
calibrated, and what happens when the reference worker fails mid-way."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_sdperf import pairing
from pytest_sdperf.runner import WorkerGone, WorkerOutcome


class StandIn:
    """Answers the driven-worker commands the pairing sends; records them."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.commands: list[dict[str, Any]] = []
        self.last_reply = {"ready": True, "calibration": 0.1}
        self.fail_at = fail_at
        self.finished_with: list[float] | None = None
        self.proc = SimpleNamespace(pid=4242)
        self.timeout_s = 60.0

    def start(self) -> None:
        pass

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.commands.append(cmd)
        if self.fail_at is not None and len(self.commands) >= self.fail_at:
            raise WorkerGone(WorkerOutcome("crash", stderr_tail="reference died", returncode=9))
        if cmd["cmd"] == "restart":
            return {"calibration": 0.1}
        return {"seconds": 1.0, "calibration": 0.1} if cmd.get("calibrate", True) else {"seconds": 1.0}

    def finish(self, reference: list[float] | None = None) -> Any:
        self.finished_with = reference
        return "outcome"

    def close(self) -> None:
        pass


def _measure(monkeypatch: pytest.MonkeyPatch, reference: StandIn | str) -> tuple[StandIn, Any]:
    variant = StandIn()
    monkeypatch.setattr(pairing, "DrivenWorker", lambda *a, **k: variant)
    failures: list[str] = []
    request: Any = SimpleNamespace(rounds=6, auto=None)
    paired = pairing.measure_paired(request, Path("unused"), 60.0, {}, 0.0, lambda: reference,
                                    failures.append)
    return variant, paired


def test_a_paired_variant_is_not_calibrated_and_an_unpaired_one_is(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = StandIn()
    variant, paired = _measure(monkeypatch, reference)
    rounds = [c for c in variant.commands if c["cmd"] == "round"]
    assert len(rounds) == 6 and not any(c["calibrate"] for c in rounds)
    assert len(reference.commands) == 6 and variant.finished_with == [1.0] * 6
    assert paired.note == "" and paired.reference_pid == 4242

    variant, paired = _measure(monkeypatch, "no reference here")
    assert [c.get("calibrate") for c in variant.commands] == [True] * 6
    assert variant.finished_with == [] and paired.note == "no reference here"


def test_a_reference_that_fails_mid_way_restarts_the_rounds_calibrated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reference = StandIn(fail_at=3)  # two reference rounds, then it dies
    variant, paired = _measure(monkeypatch, reference)
    names = [c["cmd"] for c in variant.commands]
    restart = names.index("restart")
    assert restart > 0  # some paired rounds were taken first
    after = variant.commands[restart + 1:]
    assert len(after) == 6 and all(c == {"cmd": "round", "calibrate": True} for c in after)
    assert variant.finished_with == [] and "died (exit status 9)" in paired.note


def test_rounds_with_one_side_far_over_its_median_are_counted_as_disturbed() -> None:
    variant = [0.13, 0.12, 0.16, 0.18, 0.20, 0.33, 0.14]
    reference = [0.27, 0.26, 3.47, 12.3, 5.26, 0.25, 0.26]  # seen here beside a test run
    assert pairing.disturbed_rounds(variant, reference) == 3
    assert pairing.disturbed_rounds(variant[:4], reference[:4]) == 0  # too few to say
    assert pairing.disturbed_rounds([1.0] * 6, [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]) == 0


def test_a_measurement_says_how_many_rounds_were_disturbed(monkeypatch: pytest.MonkeyPatch) -> None:
    reference = StandIn()
    slow = iter([1.0, 1.0, 9.0, 1.0, 1.0, 1.0])
    reference.ask = lambda **cmd: {"seconds": next(slow)}  # type: ignore[method-assign]
    _, paired = _measure(monkeypatch, reference)
    assert paired.disturbed == 1


class Timed(StandIn):
    """A stand-in that logs its rounds in a shared order and finishes with real rounds."""

    def __init__(self, name: str, log: list[str], seconds: float, fail_at: int | None = None) -> None:
        super().__init__(fail_at)
        self.name, self.log, self.seconds = name, log, seconds

    def ask(self, **cmd: Any) -> dict[str, Any]:
        reply = super().ask(**cmd)
        if cmd["cmd"] == "round":
            self.log.append(self.name)
            reply["seconds"] = self.seconds
        return reply

    def finish(self, reference: list[float] | None = None) -> Any:
        from pytest_sdperf.measure.latency import LatencyStats
        from pytest_sdperf.protocol import WorkerResult

        self.finished_with = reference
        rounds = [c for c in self.commands if c["cmd"] == "round"]
        latency = LatencyStats.from_samples([self.seconds] * len(rounds), reference=reference or [])
        return WorkerOutcome("ok", WorkerResult("ok", latency=latency))


def _measure_with_yardstick(monkeypatch: pytest.MonkeyPatch, yard: Timed | str,
                            log: list[str]) -> tuple[Any, list[str]]:
    variant = Timed("V", log, 0.8)
    monkeypatch.setattr(pairing, "DrivenWorker", lambda *a, **k: variant)
    failures: list[str] = []
    request: Any = SimpleNamespace(rounds=4, auto=None, variant=SimpleNamespace(name="ov-static"))
    paired = pairing.measure_paired(request, Path("unused"), 60.0, {}, 0.0,
                                    lambda: Timed("R", log, 1.0), lambda why: None,
                                    yardstick=lambda: yard, on_yardstick_failure=failures.append)
    return paired, failures


def test_a_yardstick_is_timed_beside_the_variant_in_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    yard = Timed("Y", log, 0.5)
    yard.name = "ov-fp32"
    paired, failures = _measure_with_yardstick(monkeypatch, yard, log)
    # Even rounds yardstick, variant, reference; odd ones reference, variant, yardstick: the
    # variant beside both sides each round, and each pair of rounds symmetric.
    assert log == ["ov-fp32", "V", "R", "R", "V", "ov-fp32"] * 2
    latency = paired.outcome.measured.latency
    assert latency.yardstick == (0.5,) * 4 and latency.yardstick_variant == "ov-fp32"
    assert latency.over_yardstick() == pytest.approx((1.6,) * 4)
    assert latency.paired() == pytest.approx((0.8,) * 4)  # the reference's rounds as before
    assert paired.yardstick_note == "" and failures == []


def test_a_yardstick_that_fails_leaves_the_test_paired_with_the_reference(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    yard = Timed("Y", log, 0.5, fail_at=3)  # two rounds, then it dies
    paired, failures = _measure_with_yardstick(monkeypatch, yard, log)
    latency = paired.outcome.measured.latency
    assert latency.yardstick == () and latency.over_yardstick() is None
    assert latency.paired() == pytest.approx((0.8,) * 4)
    assert len(failures) == 1 and "died (exit status 9)" in failures[0]
    assert paired.yardstick_note == failures[0]

    log.clear()
    paired, _ = _measure_with_yardstick(monkeypatch, "its yardstick ov-fp32 cannot run here (no openvino)", log)
    assert set(log) == {"V", "R"} and paired.outcome.measured.latency.yardstick == ()
    assert "cannot run here" in paired.yardstick_note


def test_a_timed_command_waits_until_the_other_workers_threads_have_settled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A round sent to one worker right after another worker replied waits SETTLE_S from that
    reply (its OpenMP threads spin meanwhile); a round to the worker that replied last, an
    untimed command, or one sent after SETTLE_S has passed does not wait."""
    import io

    from pytest_sdperf import runner

    slept: list[float] = []
    monkeypatch.setattr(runner.time, "sleep", slept.append)
    monkeypatch.setattr(runner, "_LAST", runner._LastReply(pid=1, at=runner.time.monotonic()))
    assert 0.5 * runner.SETTLE_S < runner.settle(2) <= runner.SETTLE_S and len(slept) == 1
    assert runner.settle(1) == 0.0
    monkeypatch.setattr(runner, "_LAST", runner._LastReply(pid=1, at=runner.time.monotonic() - 1.0))
    assert runner.settle(2) == 0.0 and len(slept) == 1

    worker: Any = object.__new__(runner.DrivenWorker)
    worker.proc = SimpleNamespace(pid=2, stdin=io.BytesIO())
    worker.watchdog = SimpleNamespace(resume=lambda: None)
    monkeypatch.setattr(runner, "_LAST", runner._LastReply(pid=1, at=runner.time.monotonic()))
    worker.send(cmd="finish", reference=[])
    assert len(slept) == 1
    worker.send(cmd="round", calibrate=False)
    assert len(slept) == 2 and worker.proc.stdin.getvalue().count(b"\n") == 2
