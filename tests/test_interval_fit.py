"""interval_fit: how far unchanged readings move against their modelled interval."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from pytest_sdperf import interval_fit
from pytest_sdperf.interval_fit import Reading


def _reading(test: str, log_r: float, se: float, z: float = 2.94) -> Reading:
    r = math.exp(log_r)
    return Reading(test, r, r * math.exp(-z * se), r * math.exp(z * se), z)


def test_a_model_that_fits_reads_about_one_and_a_too_wide_or_too_narrow_one_does_not() -> None:
    rng = random.Random(0)
    readings = [_reading("fits", rng.gauss(0, 0.02), 0.02) for _ in range(400)]
    readings += [_reading("too-wide", rng.gauss(0, 0.01), 0.03) for _ in range(400)]
    readings += [_reading("too-narrow", rng.gauss(0, 0.06), 0.02) for _ in range(400)]
    fits = {f.test: f for f in interval_fit.fit(readings)}
    assert 0.9 < fits["fits"].z_rms < 1.1 and math.isclose(fits["fits"].se, 0.02, rel_tol=1e-9)
    assert fits["too-wide"].z_rms < 0.5
    assert fits["too-narrow"].z_rms > 2.5 and 0.05 < fits["too-narrow"].spread < 0.07
    lines = interval_fit.table(list(fits.values()))
    assert lines[-1].startswith("| all 3 tests | 1200 |") and "1 under 0.8, 1 over 1.25" in lines[-1]


def _record(variant: str, ratio: float, low: float, high: float, z: float = 2.94) -> dict[str, object]:
    return {"test_id": f"suites/t.py::test_t[{variant}]", "variant": variant, "ratio": ratio,
            "ratio_interval": [low, high],
            "reason": f"latency ratio: measured {ratio:.3f}x (interval {low}-{high} (z={z} for 30 latency checks))"}


def test_a_harness_folder_leaves_out_each_runs_faulted_variant(tmp_path: Path) -> None:
    """run1 faulted ``b``: its reading there is not an unchanged one; a record without an
    interval (recorded, skipped) is no reading."""
    runs = {"run0.json": [_record("a", 1.0, 0.9, 1.1), _record("b", 1.02, 0.9, 1.1)],
            "run1.json": [_record("a", 1.01, 0.9, 1.1), _record("b", 1.10, 1.0, 1.2),
                          {"test_id": "x::test_t[c]", "variant": "c", "ratio": None, "reason": "recorded"}]}
    for name, records in runs.items():
        (tmp_path / name).write_text(json.dumps({"results": records}))
    (tmp_path / interval_fit.FAULTED).write_text(json.dumps({"run1.json": "b"}))
    readings = interval_fit.from_folder(tmp_path)
    assert sorted((r.test, r.ratio) for r in readings) == [("test_t[a]", 1.0), ("test_t[a]", 1.01), ("test_t[b]", 1.02)]
    assert readings[0].z == 2.94 and math.isclose(readings[0].se, math.log(1.1 / 0.9) / (2 * 2.94))
    # a faulted paired reference moves the readings paired with it; unpaired ones stay
    paired_b = {**_record("b", 0.9, 0.8, 1.0), "info": {"paired_with": {"variant": "a", "pid": 1}}}
    (tmp_path / "run2.json").write_text(json.dumps({"results": [
        _record("a", 1.1, 1.0, 1.2), paired_b, _record("c", 1.0, 0.9, 1.1)]}))
    (tmp_path / interval_fit.FAULTED).write_text(json.dumps({"run1.json": "b", "run2.json": "a"}))
    assert [r.test for r in interval_fit.from_folder(tmp_path)].count("test_t[c]") == 1
    assert len(interval_fit.from_folder(tmp_path)) == 4
    # and so does a faulted yardstick the readings timed over it
    over_c = {**_record("d", 0.9, 0.8, 1.0), "info": {"paired_with": {"variant": "a"}, "yardstick": "c"}}
    (tmp_path / "run3.json").write_text(json.dumps({"results": [_record("c", 1.1, 1.0, 1.2), over_c]}))
    (tmp_path / interval_fit.FAULTED).write_text(json.dumps({"run1.json": "b", "run2.json": "a", "run3.json": "c"}))
    assert len(interval_fit.from_folder(tmp_path)) == 4


def test_a_per_run_summary_needs_z_and_leaves_out_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = tmp_path / "validate-suite.json"
    summary.write_text(json.dumps({"runs": [
        {"target": None, "tests": [{"test": "t[a]", "ratio": 1.0, "interval": [0.9, 1.1]}]},
        {"target": "a", "tests": [{"test": "t[a]", "ratio": 1.1, "interval": [1.0, 1.2]},
                                  {"test": "t[b]", "ratio": 0.98, "interval": [0.9, 1.1]}]}]}))
    with pytest.raises(SystemExit, match="--z"):
        interval_fit.main([str(summary)])
    assert interval_fit.main([str(summary), "--z", "2.94"]) == 0
    out = capsys.readouterr().out
    assert "| t[a] | 1 |" in out and "| t[b] | 1 |" in out and "| all 2 tests | 2 |" in out
    doc = json.loads(summary.read_text())
    summary.write_text(json.dumps({**doc, "reference_variant": "a"}))  # run 2 faulted the reference
    assert [r.test for r in interval_fit.from_summary(json.loads(summary.read_text()), 2.94)] == ["t[a]"]
    with pytest.raises(SystemExit):
        interval_fit.main([str(tmp_path / "missing.json")])
    assert "missing.json: no such file or folder" in capsys.readouterr().err
