"""``sdperf baselines reach``: what each baseline entry lets the latency gate see, by rounds,
and the floor no number of rounds goes under (reach.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pytest_sdperf.baselines import BaselineEntry, BaselineStore
from pytest_sdperf.cli import main
from pytest_sdperf.compare import compare_latency, latency_figures
from pytest_sdperf.config import BASELINE_SESSIONS
from pytest_sdperf.measure.latency import LatencyStats
from pytest_sdperf.reach import MOST_ROUNDS, reach_of, short_test, table
from pytest_sdperf.report import floor_line
from pytest_sdperf.results import Record

HEADER = {"machine": {"key": "reach-2c"}, "environment": {"python": "3.11"}}
TEST = "suites/t.py::test_gen[{}]@tiny/w"


def _entry(variant: str, session_ratios: tuple[float, ...], noise: float, rounds: int = 30,
           thresholds: dict[str, float] | None = None) -> BaselineEntry:
    """A paired entry: rounds whose ratio over the reference has log SD ``noise``, and sessions
    whose paired medians are ``session_ratios`` (the recording's first)."""
    rng = np.random.default_rng(7)
    reference = 0.4 * np.exp(rng.normal(0, 0.05, rounds))  # the machine's drift: both sides
    samples = reference * session_ratios[0] * np.exp(rng.normal(0, noise, rounds))
    stats = LatencyStats.from_samples(list(samples), reference=list(reference))
    sessions = tuple({"seconds": 0.4 * r, "paired": r} for r in session_ratios)
    return BaselineEntry(variant=variant, model="m", workload={}, latency=replace(stats, sessions=sessions),
                         memory={"peak_rss": 2**20}, thresholds=thresholds or {})


STEADY = (1.0, 1.004, 0.997, 1.002, 0.999)
WIDE = (1.0, 1.08, 0.93, 1.06, 0.95)


def test_a_steady_entry_sees_its_limit_after_the_fewest_rounds_the_projection_finds() -> None:
    entry = _entry("steady", STEADY, 0.06)
    r = reach_of(TEST.format("steady"), entry, 20, 10.0, {})
    assert r.reachable and r.floor_pct <= 10.0
    n = r.rounds_for_limit
    assert n is not None and n > 10
    around = reach_of(TEST.format("steady"), entry, 20, 10.0, {}, rounds=(10, n - 1, n, 30, 400))
    assert around.at[n] <= 10.0 < around.at[n - 1]  # the fewest
    assert around.at[10] > around.at[30] > around.at[400] >= around.floor_pct  # rounds narrow it
    assert r.figure == "paired" and r.sessions == 5 and r.limit_pct == 10.0
    assert r.per_round == pytest.approx(0.06, abs=0.02)
    assert r.round_s == pytest.approx(2 * 0.4, rel=0.1)  # the variant's round and the reference's


def test_wide_sessions_put_the_floor_over_the_limit_however_many_rounds() -> None:
    entry = _entry("wide", WIDE, 0.02)
    r = reach_of(TEST.format("wide"), entry, 20, 10.0, {}, rounds=(10, 400))
    assert not r.reachable and r.rounds_for_limit is None
    assert r.floor_pct > 10.0 and r.at[400] - r.floor_pct < 1.0
    assert r.between > 0.05
    # A limit of the test's own that its spread allows is reachable.
    assert reach_of(TEST.format("wide"), entry, 20, 40.0, {}).reachable


def test_a_learnt_prior_moves_the_between_session_spread_as_the_gate_shrinks_it() -> None:
    entry = _entry("steady", STEADY, 0.06)
    assumed = reach_of(TEST.format("steady"), entry, 20, 10.0, {})
    learnt = reach_of(TEST.format("steady"), entry, 20, 10.0, {"paired": 0.05})
    assert assumed.prior is None and learnt.prior == 0.05
    assert learnt.between > assumed.between and learnt.floor_pct > assumed.floor_pct


def test_at_the_recordings_own_rounds_the_projection_is_what_the_gate_reports() -> None:
    """The recording read as this run's reading: the gate's own smallest detectable slowdown."""
    entry = _entry("steady", STEADY, 0.06, rounds=24)
    figures = latency_figures("paired", entry.latency, entry.latency, "torch-fp32")
    check = compare_latency(figures.current, figures.baseline, 10.0, seconds=False,
                            sessions=figures.sessions, checks=20, prior=None, confirm=True)
    r = reach_of(TEST.format("steady"), entry, 20, 10.0, {}, rounds=(24,))
    assert check.detectable_pct == pytest.approx(r.at[24], rel=1e-9)
    # Each verdict carries its floor too (the results JSON's ``detectable_floor_pct``).
    assert check.detectable_floor_pct == pytest.approx(r.floor_pct, rel=1e-9)
    assert check.detectable_floor_pct is not None and check.detectable_floor_pct < check.detectable_pct


def test_the_summary_counts_the_checks_whose_floor_is_over_their_limit() -> None:
    def record(name: str, floor: float | None, limit: float | None,
               sessions: int = BASELINE_SESSIONS) -> Record:
        return Record(TEST.format(name), name, "m", "w", "pass", detectable_floor_pct=floor,
                      latency_limit_pct=limit, info={"baseline_sessions": sessions})

    assert floor_line([record("a", 8.0, 10.0), record("b", None, None)]) == ""
    line = floor_line([record("a", 8.0, 10.0), record("b", 12.4, 10.0), record("c", 31.0, 10.0),
                       record("d", 30.0, 40.0), record("e", None, None)])
    assert line.startswith("sdperf: 2 of 4 latency checks cannot see a slowdown of their limit's size")
    assert "12-31%" in line and "sdperf baselines reach" in line and "fewer than" not in line
    young = floor_line([record("b", 12.4, 10.0, sessions=2), record("c", 31.0, 10.0),
                        record("d", 9.0, 10.0, sessions=1)])
    assert young.startswith("sdperf: 2 of 3 latency checks") and f"; 1 of them against fewer than {BASELINE_SESSIONS} sessions" in young


def test_more_sessions_lower_the_floor_and_fewer_than_the_entry_holds_change_nothing() -> None:
    entry = _entry("pinned", (1.0, 1.03, 0.985, 1.02, 0.98), 0.04)  # about 2% apart: near 10%
    now = reach_of(TEST.format("pinned"), entry, 30, 10.0, {})
    assert now.matured is None
    ten = reach_of(TEST.format("pinned"), entry, 30, 10.0, {}, sessions=10)
    assert ten.matured is not None and ten.matured[0] == 10
    assert ten.matured[1] < ten.floor_pct == now.floor_pct  # the baseline's part over 10, not 5
    many = reach_of(TEST.format("pinned"), entry, 30, 10.0, {}, sessions=1000)
    assert many.matured is not None and many.matured[1] < ten.matured[1]
    assert many.matured[1] > 5.0  # this run's own between-session part stays
    fewer = reach_of(TEST.format("pinned"), entry, 30, 10.0, {}, sessions=3)
    assert fewer.matured == (5, fewer.floor_pct)


def test_a_floor_just_under_the_limit_is_not_called_over_it() -> None:
    entry = _entry("pinned", (1.0, 1.03, 0.985, 1.02, 0.98), 0.04)
    r = reach_of(TEST.format("pinned"), entry, 30, 10.0, {})
    just = replace(r, limit_pct=r.floor_pct + 0.01, rounds_for_limit=None)
    over = replace(r, limit_pct=r.floor_pct - 0.01, rounds_for_limit=None)
    assert table([just])[1][-1] == f"more than {MOST_ROUNDS}: the floor is just under it"
    assert table([over])[1][-1] == "none: the floor is over the limit"


def test_short_test_names_the_test_without_file_model_or_workload() -> None:
    assert short_test(TEST.format("env-iomp")) == "test_gen[env-iomp]"


def test_the_command_lists_every_entry_and_ranks_an_entrys_own_limit_above_the_option(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = BaselineStore(tmp_path, "reach-2c")
    # Variants of two families, neither with the 3 entries a learnt prior needs: 3% for each.
    store.queue(TEST.format("tome"), _entry("tome", STEADY, 0.06))
    store.queue(TEST.format("ov-fp32"), _entry("ov-fp32", WIDE, 0.02))
    store.queue(TEST.format("ov-static"), _entry("ov-static", WIDE, 0.02, thresholds={"latency_pct": 40.0}))
    store.flush(HEADER)
    base = ["baselines", "reach", "--dir", str(tmp_path), "--machine-key", "reach-2c"]
    assert main(base) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("test_gen[")}
    assert set(lines) == {"test_gen[tome]", "test_gen[ov-fp32]", "test_gen[ov-static]"}
    assert "prior 3%" in lines["test_gen[tome]"] and "none" not in lines["test_gen[tome]"]
    assert "none: the floor is over the limit" in lines["test_gen[ov-fp32]"]
    assert " 40% " in lines["test_gen[ov-static]"] and "none" not in lines["test_gen[ov-static]"]
    assert "2 of 3 entries can see a slowdown of their limit's size; 1 cannot" in out
    assert main([*base, "--latency-pct", "50", "--rounds", "5", "15"]) == 0
    out = capsys.readouterr().out
    assert "sees@5" in out and "sees@15" in out and "3 of 3 entries" in out
    assert " 40% " in out and " 50% " in out  # the entry's own 40 above the option's 50
    assert "floor with K sessions" not in out
    assert main([*base, "--sessions", "10"]) == 0
    out = capsys.readouterr().out
    assert "floor with K sessions" in out and "(K=10)" in out and "with 10 sessions an entry" in out
    with pytest.raises(SystemExit) as usage:
        main([*base, "--latency-pct", "-1"])
    assert usage.value.code == 2 and "--latency-pct: '-1' must be 0 or more" in capsys.readouterr().err
