"""The hang watchdog's rule, on a written progress file and a fake clock (no worker)."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_sdperf.config import DEFAULT_HANG_FLOOR_S as SETTINGS_DEFAULT
from pytest_sdperf.progress import DEFAULT_HANG_FLOOR_S, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _beat(path: Path, event: str, **fields: object) -> None:
    with path.open("a") as f:
        f.write(json.dumps({"event": event, "t": 0, **fields}) + "\n")


def test_armed_only_after_the_first_call_and_outside_builds(tmp_path: Path) -> None:
    path, clock = tmp_path / "p.jsonl", Clock()
    dog = Watchdog(path, floor_s=60.0, clock=clock)
    clock.now = 1000.0
    assert dog.poll() is None  # nothing known yet: only the hard cap applies
    _beat(path, "build", phase="variant")
    clock.now = 5000.0
    assert dog.poll() is None and dog.limit_s() is None
    _beat(path, "built", phase="variant")
    _beat(path, "call", n=1, seconds=5.0)
    assert dog.poll() is None and dog.limit_s() == 100.0  # 20 x 5 s, above the floor
    clock.now += 99.0
    assert dog.poll() is None
    _beat(path, "step", n=3)  # progress inside a call resets the silence
    assert dog.poll() is None
    clock.now += 99.0
    assert dog.poll() is None
    clock.now += 2.0
    stall = dog.poll()
    assert stall is not None and stall.limit_s == 100.0 and "denoising step 3" in stall.describe()


def test_the_floor_applies_to_fast_calls_and_zero_turns_it_off(tmp_path: Path) -> None:
    path, clock = tmp_path / "p.jsonl", Clock()
    _beat(path, "call", n=1, seconds=0.1)
    dog = Watchdog(path, floor_s=60.0, clock=clock)
    dog.poll()
    assert dog.limit_s() == 60.0
    clock.now = 61.0
    assert dog.poll() is not None
    off = Watchdog(path, floor_s=0.0, clock=clock)
    off.poll()
    clock.now = 10_000.0
    assert off.poll() is None


def test_a_half_written_line_waits_for_its_end(tmp_path: Path) -> None:
    path, clock = tmp_path / "p.jsonl", Clock()
    path.write_text('{"event": "call", "n": 1, "seconds": 2.0')
    dog = Watchdog(path, floor_s=1.0, clock=clock)
    dog.poll()
    assert dog.first_call_s is None
    with path.open("a") as f:
        f.write("}\n")
    dog.poll()
    assert dog.first_call_s == 2.0


def test_settings_default_is_the_watchdogs() -> None:
    assert SETTINGS_DEFAULT == DEFAULT_HANG_FLOOR_S == 60.0


def test_a_long_build_is_reported_while_it_lasts_then_once_done(tmp_path: Path) -> None:
    from pytest_sdperf import progress

    path, clock, lines = tmp_path / "p.jsonl", Clock(), []
    progress.set_reporter(lines.append)
    try:
        dog = Watchdog(path, floor_s=60.0, clock=clock, label="ov-int8-hybrid")
        _beat(path, "build", phase="variant")
        dog.poll()
        _beat(path, "stage", name="OpenVINO hybrid of tiny")
        clock.now = progress.REPORT_AFTER_S - 1
        dog.poll()
        assert lines == []  # a short build says nothing
        clock.now = progress.REPORT_AFTER_S + 1
        dog.poll()
        clock.now += 1
        dog.poll()  # not again before REPORT_EVERY_S
        clock.now += progress.REPORT_EVERY_S
        dog.poll()
        _beat(path, "built", phase="variant")
        dog.poll()
    finally:
        progress.set_reporter(None)
    assert lines == [
        "ov-int8-hybrid: building, 6 s so far (last: stage OpenVINO hybrid of tiny)",
        "ov-int8-hybrid: building, 22 s so far (last: stage OpenVINO hybrid of tiny)",
        "ov-int8-hybrid: built in 22 s",
    ]
