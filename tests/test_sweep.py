"""The latency-capped sweep: marker keywords, the stopping rule and the knee (pure), and the
sweep on the fake pipeline whose latency grows with requests in flight by a known law
(testing.in_flight), through workers and the gate."""

from __future__ import annotations

import json
import os

import pytest

from pytest_sdperf.sweep import Sweep, SweepPoint, SweepResult, point_of, stop_reason
from pytest_sdperf.testing import SdperfRun
from pytest_sdperf.workload import parse_marker_kwargs

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"sweep": "ov requests", "sweep_values": (1, 2), "sweep_cap_ms": 100}, ["sweep='ov requests'"]),
    ({"sweep": "ov_requests", "sweep_values": (2, 1), "sweep_cap_ms": 100}, ["sweep_values=(2, 1)", "increasing"]),
    ({"sweep": "ov_requests", "sweep_values": (0, 1), "sweep_cap_ms": 100}, ["sweep_values", ">= 1"]),
    ({"sweep": "ov_requests", "sweep_values": (1, 2)}, ["sweep_cap_ms=None", "positive"]),
    ({"sweep": "ov_requests", "sweep_values": (1, 2), "sweep_cap_ms": -5}, ["sweep_cap_ms=-5"]),
    ({"sweep": "ov_requests", "sweep_values": (1, 2), "sweep_cap_ms": "0.5x"}, ["sweep_cap_ms='0.5x'", "N >= 1"]),
    ({"sweep_values": (1, 2)}, ["sweep_values", "sweep="]),
    ({"sweep": "ov_requests", "sweep_values": (1,), "sweep_cap_ms": 9, "scenario": "offline"},
     ["sweep=", "scenario=", "do not combine"]),
])
def test_bad_sweep_keywords_are_usage_errors_naming_them(kwargs: dict[str, object], names: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse_marker_kwargs(kwargs, "t")
    for name in names:
        assert name in str(info.value)


def test_the_sweep_stops_at_the_cap_or_when_throughput_stops_growing() -> None:
    sweep = parse_marker_kwargs({"sweep": "ov_requests", "sweep_values": [1, 2, 3, 4, 8],
                                 "sweep_cap_ms": 250}, "t").run.sweep
    assert sweep == Sweep("ov_requests", (1, 2, 3, 4, 8), 250.0)
    one, two = point_of(1, [0.1, 0.1, 0.12], 1), point_of(2, [0.15] * 3, 2)
    assert one.images_per_s == pytest.approx(10.0) and one.latency_s == pytest.approx(0.116)
    assert stop_reason([one], sweep) is None and stop_reason([one, two], sweep) is None
    over = SweepPoint(3, 30.0, 0.3, 3)
    assert "ov_requests=3: p90 300 ms passes sweep_cap_ms=250" in (stop_reason([one, two, over], sweep) or "")
    relative = parse_marker_kwargs({"sweep": "ov_requests", "sweep_values": [1, 2, 3],
                                    "sweep_cap_ms": "2.5x"}, "t").run.sweep
    assert relative is not None and relative.cap_of(one) == pytest.approx(290.0)  # 2.5 x 116 ms
    assert "passes sweep_cap_ms='2.5x' (290 ms)" in (stop_reason([one, two, over], relative) or "")
    result = SweepResult(sweep, (one, two, over), "cap")
    assert result.knee == two  # the best within the cap
    flat = SweepPoint(3, 13.6, 0.22, 3)  # 2% above 13.3: not growing
    assert "throughput stopped growing" in (stop_reason([one, two, flat], sweep) or "")
    # on a flat top the knee is the first point near the best: the least latency for it
    assert SweepResult(sweep, (one, two, flat), "").knee == two
    assert SweepResult(sweep, (over,), "").knee is None
    assert "no knee: no ov_requests in [1, 2, 3, 4, 8] met sweep_cap_ms=250" in SweepResult(sweep, (over,), "").summary()
    assert SweepResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


KNEE = """
import pytest

@pytest.mark.sdperf(steps=5, height=32, width=32, sweep="fake_requests", sweep_values=(1, 2, 3, 4, 5, 6),
                    sweep_cap_ms={cap}, rounds=5)
def test_knee(sdperf_knee, sdperf_gate):
    sdperf_gate.check(sdperf_knee)
"""


def _knee_run(pytester: pytest.Pytester, cap: int) -> SdperfRun:
    run = SdperfRun(pytester)
    pytester.makeconftest("from pytest_sdperf.testing import register_fake_variants\n\n"
                          "def pytest_sdperf_add_variants(registry):\n    register_fake_variants(registry)\n")
    pytester.makepyfile(test_knee=KNEE.format(cap=cap))
    return run


def _sweep_of(run: SdperfRun, name: str = "r.json") -> dict[str, object]:
    record = json.loads((run.root / name).read_text())["results"][0]
    return dict(record["info"]["sweep"])


def test_the_sweep_finds_the_known_knee_under_a_cap(pytester: pytest.Pytester) -> None:
    """Each request in flight adds half a request's time (a = 0.5, 100 ms a request): 100,
    150, 200, 250 ms for 1-4 requests; under a 225 ms cap the knee is 3 requests (15 images/s)
    and the sweep stops at 4, whose p90 passes the cap."""
    run = _knee_run(pytester, cap=225)
    out = run.run("--sdperf-variants", "fake-inflight", "--sdperf-json", "r.json", "--sdperf-gate", "absolute",
                  "--sdperf-set", "fake_delay=0.02", "--sdperf-set", "fake_inflight_cost=0.5",
                  "--sdperf-html", "r.html")
    out.assert_outcomes(passed=1)
    sweep = _sweep_of(run)
    assert sweep["knee"] == 3
    assert [p["value"] for p in sweep["points"]] == [1, 2, 3, 4]
    assert "fake_requests=4: p90" in str(sweep["stopped"]) and "passes sweep_cap_ms=225" in str(sweep["stopped"])
    rates = [p["images_per_s"] for p in sweep["points"]]
    assert rates[2] == pytest.approx(15.0, rel=0.15)
    out.stdout.fnmatch_lines(["*sweep fake-inflight fake_requests=1: * images/s, p90 * ms*",
                              "*knee fake_requests=3*"])
    entry = next(iter(json.loads(run.baseline_file().read_text())["entries"].values()))
    assert entry["info"]["sweep"]["knee"] == 3 and len(entry["throughput"]["samples"]) == 5
    page = (run.root / "r.html").read_text()
    assert "Latency-capped sweeps" in page and "knee fake_requests=3" in page
    assert "alt=\"throughput against p90 latency per sweep\"" in page


@pytest.mark.slow
def test_a_flat_top_stops_the_sweep_and_a_slower_knee_fails(pytester: pytest.Pytester) -> None:
    """Two requests run at full speed at once (c = 2): 10, 20, 20 images/s for 1-3 requests; the
    sweep stops at 3 (not growing) with the knee at 2. The same sweep 2x slower per step keeps
    its knee at 2 and fails the test on the knee's throughput."""
    run = _knee_run(pytester, cap=10000)
    args = ("--sdperf-variants", "fake-inflight", "--sdperf-gate", "absolute", "--sdperf-set", "fake_cores=2")
    out = run.run(*args, "--sdperf-json", "r.json", "--sdperf-set", "fake_delay=0.02")
    out.assert_outcomes(passed=1)
    sweep = _sweep_of(run)
    assert sweep["knee"] == 2 and [p["value"] for p in sweep["points"]] == [1, 2, 3]
    assert "throughput stopped growing" in str(sweep["stopped"])
    slow = run.run(*args, "--sdperf-json", "s.json", "--sdperf-set", "fake_delay=0.04")
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(["*throughput: seconds-per-image ratio: measured *",
                               "*confirmed in fresh workers*"])
    assert _sweep_of(run, "s.json")["knee"] == 2


def test_sdperf_sweep_runs_the_knee_test_in_this_folder(pytester: pytest.Pytester) -> None:
    """`sdperf sweep` writes its one-test suite under the current folder (so its conftest's
    variants apply), passes the arguments after -- to pytest and exits with pytest's status;
    a bad value list is an error naming it, before anything runs."""
    import subprocess
    import sys

    run = SdperfRun(pytester)
    pytester.makeconftest("from pytest_sdperf.testing import register_fake_variants\n\n"
                          "def pytest_sdperf_add_variants(registry):\n    register_fake_variants(registry)\n")
    base = [sys.executable, "-m", "pytest_sdperf.cli", "sweep", "fake-inflight", "--setting", "fake_requests"]
    args = ["--", "--sdperf-model", str(run.model), "--sdperf-reference", "fake", "--sdperf-cache-dir",
            str(run.root / "cache"), "--sdperf-warmup", "0", "--sdperf-rounds", "5", "--sdperf-steps", "5",
            "--sdperf-size", "32", "--sdperf-set", "fake_delay=0.02", "--sdperf-set", "fake_cores=2",
            "--sdperf-json", "r.json", "-p", "no:randomly"]
    done = subprocess.run([*base, "--values", "1,2,3,4", "--cap-ms", "5000", *args], cwd=run.root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sweep fake-inflight: knee fake_requests=2" in done.stdout
    assert (run.root / ".sdperf-sweep" / "test_sweep.py").is_file()
    assert _sweep_of(run)["knee"] == 2
    bad = subprocess.run([*base, "--values", "3,1", "--cap-ms", "100"], cwd=run.root,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "sweep_values=(3, 1) must be a list of increasing ints" in bad.stderr


BATCH = """
import pytest

@pytest.mark.sdperf(steps=5, height=32, width=32, sweep="images_per_prompt", sweep_values=(1, 2, 3, 4, 5, 6),
                    sweep_cap_ms=225, rounds=5)
def test_knee(sdperf_knee, sdperf_gate):
    sdperf_gate.check(sdperf_knee)
"""


def test_the_batch_sweep_finds_the_known_knee_paired_with_the_tests_own_workload(pytester: pytest.Pytester) -> None:
    """sweep="images_per_prompt" raises the batch: each image of a call adds half an image's
    time (100 ms an image), so under a 225 ms cap the knee is a batch of 3. Each point is paired
    with the reference at the test's own workload (one image), and the knee is judged as that
    workload's entry: its first image against the one reference image; a second run compares."""
    run = SdperfRun(pytester)
    pytester.makeconftest("from pytest_sdperf.testing import register_fake_variants\n\n"
                          "def pytest_sdperf_add_variants(registry):\n    register_fake_variants(registry)\n")
    pytester.makepyfile(test_knee=BATCH)
    args = ("--sdperf-variants", "fake-inflight", "--sdperf-set", "fake_delay=0.02",
            "--sdperf-set", "fake_inflight_cost=0.5")
    run.run(*args, "--sdperf-json", "r.json").assert_outcomes(passed=1)
    sweep = _sweep_of(run)
    assert sweep["knee"] == 3 and [p["value"] for p in sweep["points"]] == [1, 2, 3, 4]
    assert [p["images_per_call"] for p in sweep["points"]] == [1, 2, 3, 4]
    record = json.loads((run.root / "r.json").read_text())["results"][0]
    assert record["info"]["batch"] == 3 and record["info"]["images_per_call"] == 3
    assert record["info"]["paired_with"]["variant"] == "fake"
    entry = next(iter(json.loads(run.baseline_file().read_text())["entries"].values()))
    assert entry["workload"]["images_per_prompt"] == 1 and entry["info"]["sweep"]["knee"] == 3
    assert len(entry["throughput"]["reference"]) == 5
    again = run.run(*args, "--sdperf-json", "s.json")
    again.assert_outcomes(passed=1)
    assert _sweep_of(run, "s.json")["knee"] == 3


INSTANCES = """
import pytest

@pytest.mark.sdperf(steps=5, height=32, width=32, sweep="instances", sweep_values={values},
                    sweep_cap_ms=10000, rounds=5)
def test_knee(sdperf_knee, sdperf_gate):
    sdperf_gate.check(sdperf_knee)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="instances need 2 CPUs")
def test_the_instances_sweep_drives_pinned_workers_as_one(pytester: pytest.Pytester) -> None:
    """sweep="instances" runs N workers of the variant, each pinned to its own CPUs, a round
    being every instance's call at once: the fake pipeline's calls (sleeps) overlap, so two
    instances make twice the images per second; a value above this machine's CPUs stops the
    sweep, naming it."""
    cpus = len(os.sched_getaffinity(0))
    run = SdperfRun(pytester)
    pytester.makeconftest("from pytest_sdperf.testing import register_fake_variants\n\n"
                          "def pytest_sdperf_add_variants(registry):\n    register_fake_variants(registry)\n")
    pytester.makepyfile(test_knee=INSTANCES.format(values=(1, 2, cpus + 1)))
    out = run.run("--sdperf-variants", "fake-inflight", "--sdperf-set", "fake_delay=0.02",
                  "--sdperf-json", "r.json")
    out.assert_outcomes(passed=1)
    sweep = _sweep_of(run)
    assert sweep["knee"] == 2 and [p["value"] for p in sweep["points"]] == [1, 2]
    assert f"instances={cpus + 1}: this machine offers {cpus} CPU(s)" in str(sweep["stopped"])
    rates = [p["images_per_s"] for p in sweep["points"]]
    assert rates[1] == pytest.approx(2 * rates[0], rel=0.25)
    record = json.loads((run.root / "r.json").read_text())["results"][0]
    assert record["info"]["instances"] == 2 and len(record["info"]["instance_cpus"]) == 2
    assert record["info"]["paired_with"]["variant"] == "fake"
