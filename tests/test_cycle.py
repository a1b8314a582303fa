"""The baseline cycle, through pytest itself, with the fake pipeline."""

from __future__ import annotations

import json
import re
import statistics

import pytest

from pytest_sdperf.rounds import DECIDE_MIN_ROUNDS, RECORD_MIN_ROUNDS
from pytest_sdperf.testing import SdperfRun


@pytest.fixture
def run(pytester: pytest.Pytester) -> SdperfRun:
    r = SdperfRun(pytester)
    r.write_suite()
    return r


def _scale_samples(path, factor: float) -> None:
    doc = json.loads(path.read_text())
    for entry in doc["entries"].values():
        entry["latency"]["samples"] = [s * factor for s in entry["latency"]["samples"]]
        for session in entry["latency"].get("sessions", []):  # its sessions' medians too
            session.update({k: v * factor for k, v in session.items()})
    path.write_text(json.dumps(doc))


def test_record_pass_regress_update_cycle(run: SdperfRun) -> None:
    # The fake reference variant's own test is gated over calibration, which other work on the
    # machine slows while the fake's sleeps do not: seconds keep this plumbing test steady.
    run.options = ("--sdperf-gate", "absolute")
    first = run.run("--sdperf-variants", "fake")
    first.assert_outcomes(passed=1)  # a first recording passes, with a warning
    first.stdout.fnmatch_lines(["*SdperfRecorded*no FP32 reference image*no baseline entry for*recorded now*",
                                "fake *recorded"])
    path = run.baseline_file()
    assert "test_gen[fake]" in path.read_text()

    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)

    _scale_samples(path, 1 / 3)  # the baseline now claims a 3x faster pipeline
    before = path.read_bytes()
    regressed = run.run("--sdperf-variants", "fake")
    regressed.assert_outcomes(failed=1)
    regressed.stdout.fnmatch_lines([
        "*sdperf regression in*test_gen[[]fake[]]*",
        "*latency ratio*: measured*limit 1.500x*",
        f"*baseline: {path}*",
        "*obtained:*obtained.json*",
    ])
    assert path.read_bytes() == before, "a failing run without --sdperf-update wrote the baseline"

    updated = run.run("--sdperf-variants", "fake", "--sdperf-update")
    updated.assert_outcomes(failed=1)
    updated.stdout.fnmatch_lines(["*--sdperf-update: the baseline entry was rewritten*"])
    assert path.read_bytes() != before
    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)


def test_strict_fails_a_recording_and_an_inconclusive_comparison(run: SdperfRun) -> None:
    first = run.run("--sdperf-variants", "fake", "--sdperf-strict")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*no baseline entry for*recorded now*",
                                "*--sdperf-strict: a missing baseline entry or reference image fails*"])
    path = run.baseline_file()
    assert "test_gen[fake]" in path.read_text()  # recorded all the same
    # a decided comparison passes under --sdperf-strict (a wide limit: five rounds of the fake
    # pipeline beside a 2-core machine's other work can read as too noisy to decide 50%)
    run.run("--sdperf-variants", "fake", "--sdperf-strict",
            "--sdperf-latency-pct", "1000").assert_outcomes(passed=1)
    doc = json.loads(path.read_text())
    for entry in doc["entries"].values():  # median 2x faster, too noisy to decide
        entry["latency"]["samples"] = [s * f for s, f in zip(entry["latency"]["samples"], (0.5, 0.5, 0.5, 5, 0.2), strict=True)]
        entry["latency"].pop("calibration", None)
        entry["latency"].pop("sessions", None)  # the recording alone, as before sessions were kept
    path.write_text(json.dumps(doc))
    loose = run.run("--sdperf-variants", "fake", "--sdperf-gate", "absolute", "--sdperf-json", "r.json")
    loose.assert_outcomes(passed=1)
    record = json.loads((run.root / "r.json").read_text())["results"][0]
    assert record["verdict"] == "inconclusive" and record["reason"].startswith("latency ratio: measured")
    loose.stdout.fnmatch_lines(["fake: latency ratio: measured *"])  # why, under the summary
    strict = run.run("--sdperf-variants", "fake", "--sdperf-gate", "absolute", "--sdperf-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*--sdperf-strict: inconclusive: latency*"])


def test_a_settled_reading_above_half_the_limit_passes_strict_with_its_note(run: SdperfRun) -> None:
    # A baseline whose sessions spread widely (a test that state-dependent), 1.2x faster than
    # the recording: the run reads about 1.2x, above the midpoint of a 10% limit, but no run
    # could tell that from 1 against this spread. It passes, even under --sdperf-strict, and says
    # so under the summary and in the JSON.
    run.options = ("--sdperf-gate", "absolute", "--sdperf-latency-pct", "10")
    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)
    path = run.baseline_file()
    doc = json.loads(path.read_text())
    for entry in doc["entries"].values():
        median = statistics.median(entry["latency"]["samples"]) / 1.2
        entry["latency"]["samples"] = [s / 1.2 for s in entry["latency"]["samples"]]
        entry["latency"]["sessions"] = [{"seconds": median * f} for f in (1.0, 1.2, 0.85, 1.15, 0.87)]
    path.write_text(json.dumps(doc))
    result = run.run("--sdperf-variants", "fake", "--sdperf-strict", "--sdperf-json", "r.json")
    result.assert_outcomes(passed=1)
    record = json.loads((run.root / "r.json").read_text())["results"][0]
    assert record["verdict"] == "pass" and "above half the limit (1.050x)" in record["reason"]
    # where the time went: this reading's rounds, the variant's calls and the calibration's beside them
    assert record["rounds"] == len(record["samples"]) and record["rounds_s"] > sum(record["samples"])
    result.stdout.fnmatch_lines(["sdperf: 1 pass (1 noted)",
                                 "sdperf: time: * s, * s of it (*%) timing * rounds *",
                                 "fake: latency ratio: measured *above half the limit*it would see*"])


def test_update_all_rewrites_and_passes(run: SdperfRun) -> None:
    # Seconds, as in the cycle above: over calibration, the fake reference's run after the
    # re-recording once read 1.27x here (its sleeps steady, the calibration sped up) and failed.
    run.options = ("--sdperf-gate", "absolute")
    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)
    _scale_samples(run.baseline_file(), 1 / 3)
    run.run("--sdperf-variants", "fake", "--sdperf-update-all").assert_outcomes(passed=1)
    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)


def test_slower_variant_fails_against_its_own_baseline(run: SdperfRun) -> None:
    """A variant whose code got 3x slower since its baseline was recorded."""
    run.run("--sdperf-variants", "fake-slow", "--sdperf-set", "fake_slowdown=1").assert_outcomes(passed=1)
    result = run.run("--sdperf-variants", "fake-slow", "--sdperf-set", "fake_slowdown=3",
                     "--sdperf-rounds", "auto", "--basetemp", str(run.root / "tmp"),
                     "--sdperf-json", "r.json")
    result.assert_outcomes(failed=1)
    # The confirmation's rounds were aimed at the comparison pooled with the first reading
    # (the first pass's folder is the test's _0, its rerun at the session's end _1: later.py).
    (confirmation,) = (run.root / "tmp").glob("*_[0-9]/confirmation/request.json")
    (first,) = (run.root / "tmp").glob("*_0/request.json")
    assert confirmation.parent.parent.name.endswith("_1")
    target = json.loads(confirmation.read_text())["auto"]["target"]
    first_result = json.loads((first.parent / "result.json").read_text())
    assert target["confirm"] is False and len(target["earlier"]) == 1
    assert target["earlier"][0]["samples"] == first_result["latency"]["samples"]
    again = json.loads((confirmation.parent / "result.json").read_text())
    record = json.loads((run.root / "r.json").read_text())["results"][0]  # both readings' rounds
    assert record["rounds"] == len(first_result["latency"]["samples"]) + len(again["latency"]["samples"])
    result.stdout.fnmatch_lines(["*confirmed in fresh workers, judged pooled with the first measurement, "
                                 "which read alone: latency ratio*",
                                 "*stages, now over the baseline (largest change first): one denoising step *x*"])
    found = re.search(r"latency ratio[^:]*: measured ([0-9.]+)x, baseline 1.000x, limit 1.500x",
                      result.stdout.str())
    assert found and float(found.group(1)) > 2.0, result.stdout.str()  # about 3x slower


def test_baseline_calibrated_with_another_kernel_is_compared_in_seconds(run: SdperfRun) -> None:
    """Ratios to a different calibration workload do not compare: seconds are, and it says so."""
    relative = ("--sdperf-gate", "relative")
    run.run("--sdperf-variants", "fake-slow", *relative, "--sdperf-set", "fake_slowdown=1").assert_outcomes(passed=1)
    doc = json.loads(run.baseline_file().read_text())
    entry = next(iter(doc["entries"].values()))
    kernel = entry["latency"]["calibration_kernel"]
    assert kernel == "unet-block-v1-numpy"  # the fake pipeline has no torch
    del entry["latency"]["calibration_kernel"]  # as files written before kernels were named
    run.baseline_file().write_text(json.dumps(doc))
    result = run.run("--sdperf-variants", "fake-slow", *relative, "--sdperf-set", "fake_slowdown=3")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "relative to calibration" not in out
    assert f"the baseline was calibrated with conv-matmul-v0, this run with {kernel}" in out


def test_paired_gate_times_the_reference_beside_the_variant(run: SdperfRun) -> None:
    """--sdperf-gate paired: the reference's rounds interleave with the variant's in one worker,
    the entry keeps both, and a slower variant fails on its ratio to the reference."""
    paired = ("--sdperf-gate", "paired")
    run.run("--sdperf-variants", "fake,fake-slow", *paired, "--sdperf-set", "fake_slowdown=1")
    entries = json.loads(run.baseline_file().read_text())["entries"]
    by_variant = {e["variant"]: e["latency"] for e in entries.values()}
    assert len(by_variant["fake-slow"]["reference"]) == len(by_variant["fake-slow"]["samples"]) == 5
    assert by_variant["fake"]["reference"] == []  # the reference is not paired with itself
    ratio = statistics.median(s / r for s, r in zip(by_variant["fake-slow"]["samples"],
                                                     by_variant["fake-slow"]["reference"], strict=True))
    assert 0.7 < ratio < 1.4  # the same work as the reference
    result = run.run("--sdperf-variants", "fake,fake-slow", *paired, "--sdperf-set", "fake_slowdown=3")
    # Only fake-slow's verdict is this test's subject: the reference's own test is gated over
    # calibration, which other work on the machine moves while the fake's sleeps do not
    # (test_record_pass_regress_update_cycle covers that gate in seconds).
    result.stdout.fnmatch_lines(["*latency ratio (paired with fake): measured 2.*x, baseline 1.000x*",
                                 "FAILED test_suite.py::test_gen[[]fake-slow[]]*"])


def test_similarity_gate_fails_a_noisy_variant(run: SdperfRun) -> None:
    run.options = ("--sdperf-gate", "absolute")  # seconds: the fake's sleeps ignore machine load
    run.run("--sdperf-variants", "fake,fake-noisy").assert_outcomes(passed=1, failed=1)
    result = run.run("--sdperf-variants", "fake,fake-noisy")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*SSIM: measured 0.*limit 0.9*"])
    assert "test_gen[fake-noisy]" in result.stdout.str().split("FAILED")[-1]


@pytest.mark.slow
def test_memory_gate_fails_when_a_call_holds_more(run: SdperfRun) -> None:
    slow = ("--sdperf-set", "fake_delay=0.1")  # so touching the pages is no latency change
    run.run("--sdperf-variants", "fake-hungry", *slow, "--sdperf-set", "fake_hold_mb=0").assert_outcomes(passed=1)
    result = run.run("--sdperf-variants", "fake-hungry", *slow, "--sdperf-set", "fake_hold_mb=200")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memory (peak_anon): measured*MiB, baseline*MiB, limit*"])
    assert "sdperf regression" in result.stdout.str()
    assert not re.search(r"^\s+latency ratio.*limit", result.stdout.str().split("sdperf summary")[0], re.M)
    # a baseline recorded before peak_anon is compared on peak RSS, saying so
    for path in (run.root / "baselines").glob("*.json"):
        doc = json.loads(path.read_text())
        for entry in doc["entries"].values():
            entry["memory"].pop("peak_anon", None)
        path.write_text(json.dumps(doc))
    result = run.run("--sdperf-variants", "fake-hungry", *slow, "--sdperf-set", "fake_hold_mb=200")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memory (peak_rss): measured*the baseline predates peak_anon*"])


def test_summary_table_and_json(run: SdperfRun) -> None:
    out = run.root / "results.json"
    result = run.run("--sdperf-variants", "fake,fake-slow", "--sdperf-json", str(out))
    result.stdout.fnmatch_lines(["*sdperf summary*", "variant*p50*speedup*SSIM*PSNR*verdict",
                                 "fake *1.00x*", "fake-slow *0.3*x*"])
    doc = json.loads(out.read_text())
    assert {r["variant"] for r in doc["results"]} == {"fake", "fake-slow"}
    assert doc["machine"]["key"] and doc["environment"]["python"]
    assert all(r["round_spread_pct"] is None for r in doc["results"])  # recorded: nothing to set beside
    # compared: each row carries its rounds' spread and its recording's, the summary both
    result = run.run("--sdperf-variants", "fake,fake-slow", "--sdperf-json", str(out))
    result.stdout.fnmatch_lines(["sdperf: round-to-round noise (*median of 2 tests): *% this run, "
                                 "*% in their baselines' recordings*"])
    for r in json.loads(out.read_text())["results"]:
        assert r["round_spread_pct"] >= 0.0 and r["baseline_round_spread_pct"] >= 0.0


def test_other_machines_baselines_are_never_compared_silently(run: SdperfRun) -> None:
    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)
    mine = run.baseline_file()
    other = mine.with_name("x86_64-some-other-cpu-avx512-64c.json")
    mine.rename(other)
    result = run.run("--sdperf-variants", "fake")
    result.assert_outcomes(passed=1)  # recorded anew for this machine, naming the other key
    result.stdout.fnmatch_lines(["*baselines exist for other machines: x86_64-some-other-cpu-avx512-64c*"])

    before = other.read_bytes()
    # Compared by calibration-relative latency, on request. The verdict is not this test's
    # subject, and the fake's sleeps ignore the machine's load while calibration does not (a
    # CI run failed it here): a wide limit keeps it about the comparison and the other file.
    asked = run.run("--sdperf-variants", "fake", "--sdperf-machine-key", other.stem,
                    "--sdperf-latency-pct", "1000")
    asked.assert_outcomes(passed=1)
    asked.stdout.fnmatch_lines(["fake *pass"])
    assert other.read_bytes() == before  # another machine's file is never written

    missing = run.run("--sdperf-variants", "fake", "--sdperf-machine-key", "nowhere", "-rs")
    missing.assert_outcomes(skipped=1)
    missing.stdout.fnmatch_lines(["*machine key nowhere; this machine is*"])


def test_a_speedup_floor_fails_a_variant_that_stopped_paying_off(run: SdperfRun) -> None:
    """--sdperf-min-speedup holds a variant to a least speedup over the reference timed beside
    it, from its first run on: met at the same speed as the reference, lost at 3x slower."""
    floor = ("--sdperf-variants", "fake,fake-slow", "--sdperf-min-speedup", "fake-s*=0.7")
    run.run(*floor, "--sdperf-set", "fake_slowdown=1").assert_outcomes(passed=2)
    result = run.run(*floor, "--sdperf-set", "fake_slowdown=3", "--sdperf-latency-pct", "1000")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*speedup over fake: measured 0.3*x, limit 0.700x (95% CI*"])


def test_a_list_setting_parametrizes_the_tests_once_a_value(run: SdperfRun) -> None:
    out = run.root / "r.json"
    result = run.run("--sdperf-variants", "fake,fake-slow", "--sdperf-set", "fake_slowdown=1,3",
                     "--sdperf-latency-pct", "1000", "--sdperf-json", str(out), "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_gen?fake-slow-fake_slowdown=1? PASSED*",
                                 "*test_gen?fake-slow-fake_slowdown=3? PASSED*"])
    slow = {r["info"]["swept"]["fake_slowdown"]: r["p50_s"]
            for r in json.loads(out.read_text())["results"] if r["variant"] == "fake-slow"}
    assert slow["3"] > 2 * slow["1"]  # each test ran with its own value
    entries = json.loads(run.baseline_file().read_text())["entries"]
    assert len(entries) == 4  # one baseline entry a value


def test_a_long_build_says_what_it_is_doing(run: SdperfRun) -> None:
    result = run.run("--sdperf-variants", "fake", "--sdperf-set", "fake_build_s=6", "-q")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["sdperf: fake: building, 5 s so far (last: stage fake build)",
                                 "sdperf: fake: built in 6 s"])


def test_auto_rounds_stop_when_the_median_is_known(run: SdperfRun) -> None:
    args = [a for a in run.args("--sdperf-variants", "fake") if a != "5"]
    args[args.index("--sdperf-rounds") + 1:args.index("--sdperf-rounds") + 1] = ["auto"]
    run.pytester.runpytest_subprocess(*args, "--sdperf-time-budget", "20")
    entry = next(iter(json.loads(run.baseline_file().read_text())["entries"].values()))
    samples = entry["latency"]["samples"]
    assert 5 <= len(samples) <= 60 and sum(samples) < 25  # min rounds, max rounds, budget
    assert len(entry["latency"]["calibration"]) == len(samples)


def test_auto_rounds_with_a_baseline_stop_once_the_comparison_is_decided(run: SdperfRun) -> None:
    # seconds, not calibration: other work on the machine slows the calibration, not the sleeps
    run.options = ("--sdperf-gate", "absolute")
    args = [a for a in run.args("--sdperf-variants", "fake") if a != "5"]
    args[args.index("--sdperf-rounds") + 1:args.index("--sdperf-rounds") + 1] = ["auto"]
    run.pytester.runpytest_subprocess(*args, "--sdperf-time-budget", "20")  # records
    _scale_samples(run.baseline_file(), 1 / 3)  # the baseline now claims a 3x faster pipeline
    result = run.pytester.runpytest_subprocess(*args, "--sdperf-time-budget", "20")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*sdperf regression in*", f"*latency ratio*n={DECIDE_MIN_ROUNDS}/*"])
    obtained = json.loads(run.baseline_file().with_suffix(".obtained.json").read_text())
    samples = next(iter(obtained["entries"].values()))["latency"]["samples"]
    assert len(samples) == DECIDE_MIN_ROUNDS  # decided once it may be: no sampling on


def test_entries_are_kept_per_model_and_older_files_still_match(pytester):
    """One file holds a test's entry for each model; a bare test-id key (older files) still
    serves the model and workload it records."""
    from pytest_sdperf.testing import make_fake_model

    run = SdperfRun(pytester, options=("--sdperf-gate", "absolute"))  # the fake's sleeps: steady
    run.write_suite()
    other = make_fake_model(run.root / "other-model")
    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)  # records for fake-model
    result = run.run("--sdperf-variants", "fake", "--sdperf-model", str(other))
    result.assert_outcomes(passed=1)  # its own entry, recorded: not compared with fake-model's
    result.stdout.fnmatch_lines(["*no baseline entry for test_suite.py::test_gen[[]fake[]]@other-model/*"])
    doc = json.loads(run.baseline_file().read_text())
    assert sorted(k.split("@")[1].split("/")[0] for k in doc["entries"]) == ["fake-model", "other-model"]
    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)
    # An older file: the same entry under the bare test id.
    doc["entries"] = {k.split("@")[0]: e for k, e in doc["entries"].items() if "@fake-model/" in k}
    run.baseline_file().write_text(json.dumps(doc))
    run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)


def test_paired_reference_is_one_process_for_the_workload_apart_from_each_variant(run: SdperfRun) -> None:
    """Two processes per comparison: each variant's worker, and one reference worker (kept
    alive, plain environment) that serves every test of the workload."""
    out = run.root / "r.json"
    result = run.run("--sdperf-variants", "fake,fake-slow,fake-hungry", "--sdperf-gate", "paired",
                     "--sdperf-set", "fake_slowdown=1", "--sdperf-set", "fake_hold_mb=0",
                     "--sdperf-json", str(out))
    result.assert_outcomes(passed=3)
    records = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    assert "paired_with" not in records["fake"]["info"]  # the reference is gated by calibration
    partners = {records[v]["info"]["paired_with"]["pid"] for v in ("fake-slow", "fake-hungry")}
    assert len(partners) == 1  # one reference worker served both tests
    entries = json.loads(run.baseline_file().read_text())["entries"]
    for entry in entries.values():
        if entry["variant"] != "fake":
            assert len(entry["latency"]["reference"]) == len(entry["latency"]["samples"]) == 5
            assert entry["latency"]["calibration"] == []  # paired rounds are not calibrated
        else:
            assert len(entry["latency"]["calibration"]) == 5  # the reference's own test is


def test_paired_variant_that_hangs_is_killed_and_the_session_goes_on(run: SdperfRun) -> None:
    result = run.run("--sdperf-variants", "fake,fake-hang-later,fake-slow", "--sdperf-gate", "paired",
                     "--sdperf-set", "fake_slowdown=1", "--sdperf-hang-floor", "3",
                     "--sdperf-timeout", "300")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*sdperf worker for fake-hang-later hung*"])


def test_a_transient_slowdown_is_not_confirmed_by_fresh_workers(run: SdperfRun) -> None:
    """The first worker is 3x slower (as when another job shares the machine), the fresh ones
    that confirm a regression are not: the test passes, and says what the first one read."""
    once = run.root / "slow-once"
    once.touch()  # recorded at normal speed
    args = ("--sdperf-variants", "fake-slow-once", "--sdperf-set", f"fake_once_file={once}",
            "--sdperf-json", str(run.root / "r.json"))
    run.run(*args).assert_outcomes(passed=1)
    once.unlink()
    result = run.run(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*fake-slow-once: a first measurement read a possible latency regression, "
                                 "fresh workers pooled with it did not confirm it: latency ratio*"])
    (record,) = json.loads((run.root / "r.json").read_text())["results"]
    assert record["verdict"] == "pass" and "latency ratio" in record["info"]["first_measurement"]
    assert "pooled_readings" not in record["info"]  # the readings disagreed: the second judged alone
    assert record["ratio"] < 1.5 and record["ratio_interval"][0] <= record["ratio"]
    assert record["ratio_z"] == pytest.approx(1.96, abs=0.01)  # one latency check: no correction


def test_a_suspect_is_confirmed_after_the_sessions_other_tests(run: SdperfRun) -> None:
    """A reading that looks like a regression is measured again after the rest of the suite
    (later.py), not right after itself: its outcome comes last, once, and a real slowdown
    still fails there. With -x it is confirmed at once (a failure may stop the session)."""
    run.options = ("--sdperf-gate", "absolute")
    names = ("--sdperf-variants", "fake-slow,fake")
    run.run(*names, "--sdperf-set", "fake_slowdown=1").assert_outcomes(passed=2)
    out = run.root / "r.json"
    slow = run.run(*names, "--sdperf-set", "fake_slowdown=3", "--sdperf-json", str(out), "-v")
    slow.assert_outcomes(passed=1, failed=1)
    assert slow.ret == 1
    slow.stdout.fnmatch_lines([
        "*fake-slow: a possible latency regression (*x): measured again in fresh workers after "
        "the session's other tests",
        "*test_gen[[]fake] PASSED*",
        "*test_gen[[]fake-slow] FAILED*",
    ])
    outcomes = re.findall(r"test_gen\[fake-slow\] (PASSED|FAILED|SKIPPED)", slow.stdout.str())
    assert outcomes == ["FAILED"]  # one outcome per test: the held first pass is not logged
    records = json.loads(out.read_text())["results"]
    assert [r["variant"] for r in records] == ["fake", "fake-slow"]
    (held,) = [r for r in records if r["variant"] == "fake-slow"]
    assert held["verdict"] == "regression" and held["info"]["pooled_readings"] == 2
    assert "latency ratio" in held["info"]["first_measurement"]

    at_once = run.run(*names, "--sdperf-set", "fake_slowdown=3", "-v", "-x")
    at_once.assert_outcomes(failed=1)  # -x: stopped at the first test, confirmed at once
    assert "after the session's other tests" not in at_once.stdout.str()
    at_once.stdout.fnmatch_lines(["*test_gen[[]fake-slow] FAILED*"])


def test_the_suite_correction_counts_the_tests_left_after_k(run: SdperfRun) -> None:
    """-k deselects before the latency checks are counted: one test selected of two is one
    check, not two (the count is in the check's detail)."""
    run.options = ("--sdperf-gate", "absolute")
    # recorded at the fake's own speed, then 3x slower (its steps are sleeps: 3x costs little)
    run.run("--sdperf-variants", "fake,fake-slow", "--sdperf-set", "fake_slowdown=1").assert_outcomes(passed=2)
    both = run.run("--sdperf-variants", "fake,fake-slow", "--sdperf-set", "fake_slowdown=3")
    both.stdout.fnmatch_lines(["*(z=1.96 for 2 latency checks;*"])
    one = run.run("--sdperf-variants", "fake,fake-slow", "--sdperf-set", "fake_slowdown=3", "-k", "fake-slow")
    one.assert_outcomes(failed=1)
    one.stdout.fnmatch_lines(["*(z=1.96 for 1 latency check;*"])


YARDSTICK_CONFTEST = """
from pytest_sdperf.testing import register_fake_variants
from pytest_sdperf.variants.registry import VariantSpec

def pytest_sdperf_add_variants(registry):
    register_fake_variants(registry)
    registry.add(VariantSpec(name="fake-base", family="fake", description="its runtime",
                             loader="pytest_sdperf.testing:load_fake"))
    registry.add(VariantSpec(name="fake-built", family="fake", description="built on fake-base",
                             loader="pytest_sdperf.testing:load_fake",
                             transforms=("pytest_sdperf.testing:slower",), yardstick="fake-base"))
"""


def test_a_variant_with_a_yardstick_is_judged_over_it_and_an_old_entry_adopts_it(run: SdperfRun) -> None:
    """A variant naming a yardstick (``VariantSpec.yardstick``) has it timed beside it in every
    paired round; the entry keeps those rounds and later runs compare over them. An entry
    recorded before is compared over the reference, saying so, and a passing run re-records it."""
    run.pytester.makeconftest(YARDSTICK_CONFTEST)
    paired = ("--sdperf-variants", "fake-built", "--sdperf-gate", "paired")
    out = run.root / "r.json"
    run.run(*paired, "--sdperf-set", "fake_slowdown=1").assert_outcomes(passed=1)
    path = run.baseline_file()
    doc = json.loads(path.read_text())
    (entry,) = doc["entries"].values()
    latency = entry["latency"]
    assert latency["yardstick_variant"] == "fake-base"
    assert len(latency["yardstick"]) == len(latency["reference"]) == len(latency["samples"]) == 5

    # As recorded before the variant had a yardstick: compared over the reference, said so.
    for key in ("yardstick", "yardstick_variant"):
        latency.pop(key)
    latency["sessions"] = [{k: v for k, v in s.items() if k != "yardstick"} for s in latency["sessions"]]
    path.write_text(json.dumps(doc))
    result = run.run(*paired, "--sdperf-set", "fake_slowdown=1", "--sdperf-json", str(out),
                     "--sdperf-rounds", "auto")
    result.assert_outcomes(passed=1)
    record = json.loads(out.read_text())["results"][0]
    assert record["info"]["yardstick"] == "fake-base"
    assert len(record["samples"]) >= RECORD_MIN_ROUNDS  # sampled as the recording it becomes
    result.stdout.fnmatch_lines(["*test_gen[[]fake-built[]]: compared over the paired reference, as its "
                                 "baseline entry holds no rounds of its yardstick fake-base; this passing run's rounds*"])
    latency = json.loads(path.read_text())["entries"][next(iter(doc["entries"]))]["latency"]
    assert latency["yardstick_variant"] == "fake-base" and len(latency["yardstick"]) == len(latency["samples"])
    assert len(latency["sessions"]) == 1 and "yardstick" in latency["sessions"][0]  # a new recording

    # Now over the yardstick: three times slower than both it and the reference fails there.
    slow = run.run(*paired, "--sdperf-set", "fake_slowdown=3", "--sdperf-json", str(out))
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(["*latency ratio (paired with fake-base, its yardstick): measured*"])


def test_an_entry_measured_under_another_glibc_malloc_setting_is_recorded_again(
        run: SdperfRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """Latency and memory measured with glibc's malloc thresholds fixed (the default) and with
    them dynamic are different measurements: an entry of the other setting (every entry written
    before the option existed) is not compared with, it is recorded again and said so (a
    failure under --sdperf-strict), and the next run compares with the new recording."""
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(key, raising=False)  # left by another test's unclosed in-process session
    run.options = ("--sdperf-gate", "absolute")
    fake = ("--sdperf-variants", "fake")
    run.run(*fake).assert_outcomes(passed=1)
    path = run.baseline_file()
    (key, entry), = json.loads(path.read_text())["entries"].items()
    assert entry["info"]["glibc_malloc"] == "fixed"

    doc = json.loads(path.read_text())
    doc["entries"][key]["info"].pop("glibc_malloc")  # as written before the setting existed
    path.write_text(json.dumps(doc))
    _scale_samples(path, 1 / 3)  # compared, it would read as 3x slower
    strict = run.run(*fake, "--sdperf-strict")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*measured with glibc's malloc thresholds dynamic, this run with "
                                 "them fixed (--sdperf-glibc-malloc)*recorded again now*"])
    # written all the same, as a missing entry is under --sdperf-strict
    assert json.loads(path.read_text())["entries"][key]["info"]["glibc_malloc"] == "fixed"

    doc = json.loads(path.read_text())
    doc["entries"][key]["info"].pop("glibc_malloc")
    path.write_text(json.dumps(doc))
    _scale_samples(path, 1 / 3)
    out = run.root / "r.json"
    again = run.run(*fake, "--sdperf-json", str(out))
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*SdperfRecorded*recorded again now*"])
    record = json.loads(out.read_text())["results"][0]
    assert record["verdict"] == "recorded" and record["ratio"] is None
    assert json.loads(path.read_text())["entries"][key]["info"]["glibc_malloc"] == "fixed"

    _scale_samples(path, 1 / 3)  # the new recording is compared with: 3x slower fails
    run.run(*fake).assert_outcomes(failed=1)
    _scale_samples(path, 3)
    dynamic = run.run(*fake, "--sdperf-glibc-malloc", "dynamic", "--sdperf-json", str(out))
    dynamic.assert_outcomes(passed=1)
    assert json.loads(out.read_text())["results"][0]["verdict"] == "recorded"
    assert json.loads(path.read_text())["entries"][key]["info"]["glibc_malloc"] == "dynamic"
