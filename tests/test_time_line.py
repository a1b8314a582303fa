"""Where a session's time went: the seconds each test's timed rounds took (``Record.rounds_s``,
``LatencyStats.timed_s``) beside the session's wall time, in the summary's ``time_line``."""

from __future__ import annotations

from pytest_sdperf.measure.latency import LatencyStats
from pytest_sdperf.report import time_line
from pytest_sdperf.results import Record


def _record(name: str, rounds: int | None, seconds: float | None) -> Record:
    return Record(f"t.py::test[{name}]", name, "m", "w", "pass", rounds=rounds, rounds_s=seconds)


def test_the_timed_calls_are_the_variants_and_those_beside_it() -> None:
    alone = LatencyStats.from_samples([0.5, 0.7])
    paired = LatencyStats.from_samples([0.5, 0.7], reference=[0.4, 0.4], calibration=[0.1, 0.1])
    assert alone.timed_s() == 1.2
    assert abs(paired.timed_s() - 2.2) < 1e-12
    assert abs(paired.with_yardstick([0.3, 0.3], "y").timed_s() - 2.8) < 1e-12


def test_the_line_sets_the_rounds_time_beside_the_wall_time() -> None:
    records = [_record("a", 10, 8.0), _record("b", 30, 24.5), _record("c", 12, 9.5),
               _record("d", None, None)]  # a test failed before its rounds: not counted
    line = time_line(records, 60.0)
    assert line.startswith("sdperf: time: 60 s, 42 s of it (70%) timing 52 rounds ")
    assert "(12 a test at the median, 10-30)" in line
    assert time_line(records, None) == "" and time_line([_record("d", None, None)], 60.0) == ""
    assert "(100%)" in time_line([_record("a", 10, 80.0)], 60.0)  # never over the whole
