"""The yardstick probe's arithmetic: what moves with time, and what a block's rounds explain."""

from __future__ import annotations

import json
import math
import random

import pytest

from pytest_sdperf.yardsticks import CALIBRATION, main, rotation, spread_of, spread_table


def _rows(blocks: int = 30, block: int = 15, seed: int = 1) -> list[dict[str, float]]:
    """Three tests: ``a`` and ``b`` slow down together as the machine's state drifts block by
    block (by up to 8%), ``c`` does not; each round has 8% noise of its own."""
    rng = random.Random(seed)
    rows = []
    for _ in range(blocks):
        state = math.exp(rng.gauss(0, 0.08))
        for _ in range(block):
            row = {"a": 0.4 * state, "b": 0.2 * state, "c": 0.3}
            row = {k: v * math.exp(rng.gauss(0, 0.08)) for k, v in row.items()}
            row |= {f"{k}:{CALIBRATION}": 0.05 * state * math.exp(rng.gauss(0, 0.05)) for k in ("a", "b", "c")}
            rows.append(row)
    return rows


def test_a_yardstick_that_drifts_with_the_test_leaves_no_excess() -> None:
    rows = _rows(blocks=60)
    together = spread_of(rows, "a", "b", 15)
    apart = spread_of(rows, "a", "c", 15)
    assert together.excess < 0.025  # the shared drift cancels: what is left is the rounds' noise
    assert 0.05 < apart.excess < 0.12  # the 8% drift stays in the ratio
    assert together.round_sd == pytest.approx(0.08 * math.sqrt(2), rel=0.15)
    assert together.level == pytest.approx(2.0, rel=0.03)
    assert spread_of(rows, "a", CALIBRATION, 15).excess < 0.025  # its calibration drifts with it


def test_the_table_pairs_each_test_with_the_earlier_ones_and_its_calibration() -> None:
    table = spread_table(_rows(blocks=4), ["a", "b", "c"], 15)
    assert [(s.test, s.yardstick) for s in table] == [
        ("b", "a"), ("c", "a"), ("c", "b"), ("a", CALIBRATION), ("b", CALIBRATION), ("c", CALIBRATION)]


def test_too_few_rounds_for_two_blocks_is_an_error_saying_so() -> None:
    with pytest.raises(ValueError, match="20 rounds make 1 blocks of 15"):
        spread_of(_rows(blocks=1, block=20), "a", "b", 15)


def test_rounds_rotate_and_reverse() -> None:
    names = ["x", "y", "z"]
    assert [rotation(names, n) for n in range(6)] == [
        ["x", "y", "z"], ["y", "z", "x"], ["z", "x", "y"],
        ["z", "y", "x"], ["x", "z", "y"], ["y", "x", "z"]]


def test_the_table_command_reads_a_probes_rounds(tmp_path, capsys) -> None:
    path = tmp_path / "rounds.jsonl"
    path.write_text("".join(json.dumps({"round": n, "t": 0.0, **r}) + "\n" for n, r in enumerate(_rows(blocks=3))))
    assert main(["table", str(path), "--block", "15"]) == 0
    out = capsys.readouterr().out
    assert "| c | a | 0.7" in out and "| a | cal | 8." in out


def test_a_probe_times_a_runs_tests_round_by_round(pytester: pytest.Pytester) -> None:
    from pytest_sdperf.testing import SdperfRun
    from pytest_sdperf.yardsticks import probe

    run = SdperfRun(pytester)
    run.write_suite()
    run.run("--sdperf-variants", "fake,fake-slow", "--basetemp", str(run.root / "tmp")).assert_outcomes(passed=2)
    folders = sorted(p.parent.name for p in (run.root / "tmp").glob("*_0/request.json"))
    assert len(folders) == 2, folders
    path = probe(run.root / "tmp", run.root / "probe", folders, minutes=0.05)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) >= 2
    assert all(set(r) == {"round", "t", *folders, *(f"{f}:{CALIBRATION}" for f in folders)} for r in rows)
    assert all(r[f] > 0 for r in rows for f in folders)
    with pytest.raises(SystemExit, match="no such request"):
        probe(run.root / "tmp", run.root / "probe2", ["nowhere"], minutes=0.05)
    with pytest.raises(SystemExit, match="nowhere: no such folder; give the --basetemp DIR"):
        probe(run.root / "nowhere", run.root / "probe3", folders, minutes=0.05)
    broken = json.loads((run.root / "tmp" / folders[0] / "request.json").read_text())
    broken["variant"]["loader"] = "pytest_sdperf.testing:no_such_loader"
    (run.root / "tmp" / "broken").mkdir()
    (run.root / "tmp" / "broken" / "request.json").write_text(json.dumps(broken))
    with pytest.raises(SystemExit, match="(?s)broken: its worker did not start: sdperf worker for fake raised an error.*no_such_loader"):
        probe(run.root / "tmp", run.root / "probe4", ["broken"], minutes=0.05)
