"""The gate-validation harness, reduced: one repetition of each condition on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")


pytestmark = pytest.mark.slow  # real models end to end: pytest tests/ -m slow

# The suite harness's tests judge the fake pipeline in seconds: its steps are sleeps, which a
# busier or idler machine does not move, while the calibration workload the reference variant's
# test is judged against in the default gate is CPU work that it does move (an A/A run read the
# reference at 1.19x here, and failed it in one CI run). What these tests check is the harness's
# counting, not the gate.
SECONDS = ("--sdperf-gate", "absolute")


def test_harness_faults_trip_the_right_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_sdperf import validate

    json_out = tmp_path / "gates.json"
    assert validate.main(["--runs", "1", "--rounds", "3", "--slowdowns", "25",
                          "--cache-dir", str(tmp_path / "cache"), "--json", str(json_out)]) == 0
    printed = capsys.readouterr().out
    assert "| A/A | 1 |" in printed and "| +25% work | 1 |" in printed
    import json

    tallies = json.loads(json_out.read_text())
    assert tallies["quality fault"]["similarity_failed"] == 1
    assert tallies["memory fault"]["memory_failed"] == 1
    assert tallies["A/A"]["similarity_failed"] == 0 and tallies["A/A"]["memory_failed"] == 0
    assert tallies["+25% work"]["similarity_failed"] == 0
    assert tallies["A/A"]["rounds"] == [3]  # fixed rounds: as asked


def test_suite_harness_injects_one_slow_variant_and_counts_the_runs(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole-suite harness on the fake pipeline: a recording, an A/A run and a run with
    one variant made 3x slower (``faults.py``); the slow one is caught, the others pass."""
    from pytest_sdperf import validate_suite
    from pytest_sdperf.testing import SdperfRun

    run = SdperfRun(pytester)
    run.write_suite()
    monkeypatch.chdir(pytester.path)
    json_out = pytester.path / "suite.json"
    args = ["--runs", "2", "--conditions", "A/A,+200%", "--suite", "test_suite.py",
            "--json", str(json_out), "--",
            *[a for a in run.args("--sdperf-variants", "fake,fake-slow", *SECONDS) if a != "--sdperf"]]
    assert validate_suite.main(args) == 0
    import json

    tallies = json.loads(json_out.read_text())
    printed = capsys.readouterr()
    assert tallies["A/A"]["runs"] == 1 and tallies["A/A"]["target_failed"] == 0, printed.err
    assert tallies["+200%"]["runs"] == 1 and tallies["+200%"]["target_failed"] == 1, printed.err
    assert tallies["+200%"]["others_failed"] == 0, printed.err
    assert "| +200% | 1 | 1 | 0 |" in printed.out
    # every unchanged reading against its interval: both tests' A/A readings, and the untouched
    # test's of the +200% run (the faulted one's is left out: faulted.json names it)
    assert "| all 2 tests | 3 |" in printed.out, printed.out


def test_suite_harness_starts_from_a_committed_baseline_and_leaves_it_as_it_was(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--from baselines``: the runs meet a copy of the folder; the first run against it is an
    A/A run (it recorded nothing), every run starts from the same copy, and the folder itself
    is not written."""
    from pytest_sdperf import validate_suite
    from pytest_sdperf.testing import SdperfRun

    run = SdperfRun(pytester)
    run.write_suite()
    variants = ("--sdperf-variants", "fake,fake-slow", *SECONDS)
    run.run(*variants).assert_outcomes(passed=2)  # the recording, into ./baselines
    committed = run.baseline_file()
    before = committed.read_bytes()
    monkeypatch.chdir(pytester.path)
    json_out = pytester.path / "suite.json"
    args = ["--from", "baselines", "--runs", "1", "--conditions", "+200%", "--suite", "test_suite.py",
            "--targets", "fake-slow",
            "--json", str(json_out), "--", *[a for a in run.args(*variants) if a != "--sdperf"]]
    assert validate_suite.main(args) == 0
    import json

    tallies = json.loads(json_out.read_text())
    printed = capsys.readouterr().err
    assert "run 0 A/A (the first run against the copy)" in printed
    assert tallies["A/A"]["runs"] == 1 and tallies["A/A"]["target_failed"] == 0, printed
    assert tallies["+200%"]["target_failed"] == 1 and tallies["+200%"]["others_failed"] == 0, printed
    assert "+200% on fake-slow" in printed  # the one target --targets allows
    assert committed.read_bytes() == before
    with pytest.raises(SystemExit, match="--targets: nope did not run in the suite"):
        validate_suite.main([*args[:args.index("fake-slow")], "nope", *args[args.index("fake-slow") + 1:]])


def test_suite_harness_refuses_a_missing_baseline_folder(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_sdperf import validate_suite

    with pytest.raises(SystemExit):
        validate_suite.main(["--from", "no-such-folder"])
    assert "--from no-such-folder: not a folder" in capsys.readouterr().err


def test_a_slowdown_is_drawn_among_the_variants_whose_limit_it_exceeds() -> None:
    """A +10% fault is not given to a variant registered with a wider latency limit (a pass is
    its right verdict); +50% may be; with no variant inside the limit, all are drawn from."""
    from pytest_sdperf.validate_suite import fault_targets

    records = [{"variant": "torch-bf16", "latency_limit_pct": 10.0},
               {"variant": "torch-compile", "latency_limit_pct": 40.0},
               {"variant": "ov-fp32", "latency_limit_pct": 10.0},
               {"variant": "ov-fp32", "latency_limit_pct": 10.0},
               {"variant": "skipped", "latency_limit_pct": None}]
    variants = ["ov-fp32", "torch-bf16", "torch-compile"]
    assert fault_targets(records, variants, 10.0) == (["ov-fp32", "torch-bf16"], ["torch-compile"])
    assert fault_targets(records, variants, 50.0) == (variants, [])
    assert fault_targets(records, ["torch-compile"], 10.0) == (["torch-compile"], [])
