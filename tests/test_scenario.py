"""MLPerf LoadGen scenarios: marker keywords, LoadGen really driving a call, the Server cap
failing a test, and the results carrying LoadGen's own figures and logs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pytest_sdperf.measure.scenario import Scenario, ScenarioResult, read_detail_log
from pytest_sdperf.testing import SdperfRun
from pytest_sdperf.workload import parse_marker_kwargs

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"scenario": "batch"}, ["scenario='batch'", "single-stream, offline, server"]),
    ({"scenario": "server", "target_qps": 0, "latency_cap_ms": 100}, ["target_qps=0", "positive"]),
    ({"scenario": "server", "target_qps": 2.0, "latency_cap_ms": -5}, ["latency_cap_ms=-5", "positive"]),
    ({"scenario": "server", "target_qps": 2.0}, ["latency_cap_ms", "p99"]),
    ({"scenario": "offline", "latency_cap_ms": 500}, ["latency_cap_ms", "offline"]),
    ({"scenario": "single-stream", "target_qps": 3}, ["target_qps", "server"]),
    ({"scenario": "offline", "min_queries": 0}, ["min_queries=0", ">= 1"]),
    ({"target_qps": 3}, ["target_qps", "scenario="]),
])
def test_bad_scenario_keywords_are_usage_errors_naming_them(kwargs: dict[str, object],
                                                             names: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse_marker_kwargs(kwargs, "suite.py::test_x")
    text = str(info.value)
    assert "suite.py::test_x" in text
    for name in names:
        assert name in text


def test_scenario_keywords_make_the_protocols_scenario() -> None:
    run = parse_marker_kwargs({"scenario": "server", "target_qps": 0.5, "latency_cap_ms": 3000,
                               "duration_s": 20, "min_queries": 4}, "t").run
    assert run.scenario == Scenario("server", 0.5, 3000.0, 20.0, 4)
    assert run.scenario.percentile == 99.0
    assert parse_marker_kwargs({}, "t").run.scenario is None
    assert Scenario.from_dict(run.scenario.to_dict()) == run.scenario


def _calls(seconds: float, n: int = 4, done: list[float] | None = None) -> list[object]:
    def call() -> None:
        time.sleep(seconds)
        if done is not None:
            done.append(seconds)

    return [call] * n


@pytest.mark.parametrize("name", ["single-stream", "offline"])
def test_loadgen_drives_the_call_and_its_figures_are_read_back(name: str, tmp_path: Path) -> None:
    pytest.importorskip("mlperf_loadgen")
    from pytest_sdperf.measure.loadgen import run_scenario

    done: list[float] = []
    result = run_scenario(Scenario(name, duration_s=1.0, min_queries=5), _calls(0.02, done=done),
                          0.02, tmp_path / "lg", images_per_sample=2)
    assert (tmp_path / "lg" / "mlperf_log_summary.txt").is_file()
    assert len(done) >= 5  # every sample went through the call
    assert len(result.service_s) == len(done) and min(result.service_s) >= 0.02  # each call timed
    # one stream of 20 ms calls: about 50 samples/s (sleep overshoots; LoadGen adds its own)
    assert 25 < result.samples_per_s < 55
    assert result.images_per_s == pytest.approx(2 * result.samples_per_s)
    assert 0.019 < result.latency_s["50.00"]
    assert result.duration_s >= 1.0
    assert "not a compliant run" in result.verdict_text()
    assert ScenarioResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    if name == "single-stream":
        assert result.percentile_s() == result.latency_s["90.00"] < 0.05


def test_server_within_and_over_its_cap(tmp_path: Path) -> None:
    """A 20 ms call at 10 queries/s meets a 200 ms p99 cap; at 100 q/s (twice what one stream
    serves) the queue grows and the p99 passes the cap, which names the figure."""
    pytest.importorskip("mlperf_loadgen")
    from pytest_sdperf.measure.loadgen import run_scenario

    calm = run_scenario(Scenario("server", 10.0, 200.0, 1.5, 5), _calls(0.02), 0.02, tmp_path / "a")
    assert calm.over_cap() is None
    assert 5 < calm.samples_per_s < 15
    busy = run_scenario(Scenario("server", 100.0, 200.0, 1.5, 5), _calls(0.02), 0.02, tmp_path / "b")
    message = busy.over_cap()
    assert message is not None and "p99 latency" in message and "latency_cap_ms=200" in message
    assert not busy.valid and "latency bound not met" in busy.why


def test_a_cap_below_one_generation_is_refused_before_running(tmp_path: Path) -> None:
    pytest.importorskip("mlperf_loadgen")
    from pytest_sdperf.measure.loadgen import run_scenario

    result = run_scenario(Scenario("server", 1.0, 10.0, 1.0), _calls(0.02), 0.05, tmp_path / "lg")
    assert "latency_cap_ms=10 is below one generation's measured time (50 ms)" in result.usage_error
    assert not (tmp_path / "lg").exists()


def test_detail_log_lines_are_read_as_key_values(tmp_path: Path) -> None:
    log = tmp_path / "mlperf_log_detail.txt"
    log.write_text(':::MLLOG {"key": "result_validity", "value": "VALID"}\n'
                   'noise\n:::MLLOG {"key": "result_query_count", "value": 7}\n:::MLLOG {broken\n')
    assert read_detail_log(log) == {"result_validity": "VALID", "result_query_count": 7}


SERVER = ", scenario='server', target_qps={qps}, latency_cap_ms={cap}, duration_s=3, min_queries=8"


@pytest.mark.slow
def test_a_server_test_on_the_fake_pipeline_passes_then_fails_its_cap(pytester: pytest.Pytester) -> None:
    """LoadGen drives the fake pipeline inside its worker; the results JSON keeps LoadGen's
    figures and the log folder; made slower, the same Server test fails on its p99 cap."""
    pytest.importorskip("mlperf_loadgen")
    run = SdperfRun(pytester)
    run.write_suite(SERVER.format(qps=4, cap=400))  # 5 steps x 10 ms: about 50 ms a call
    out = run.run("--sdperf-variants", "fake", "--sdperf-json", "r.json", "--sdperf-gate", "relative")
    out.assert_outcomes(passed=1)
    record = json.loads((run.root / "r.json").read_text())["results"][0]
    scenario = record["info"]["scenario"]
    assert scenario["scenario"]["name"] == "server" and scenario["query_count"] >= 8
    assert 2 < scenario["samples_per_s"] < 6
    assert Path(scenario["log_dir"], "mlperf_log_summary.txt").is_file()
    out.stdout.fnmatch_lines(["LoadGen fake: server at 4 q/s: *images/s, p99 * ms*"])
    # 6x slower per step (300 ms a call, under the cap) at 4 q/s: more work arrives than one
    # stream serves, so queries wait and the p99 passes the cap
    slow = run.run("--sdperf-variants", "fake", "--sdperf-set", "fake_delay=0.06",
                   "--sdperf-gate", "relative", "--sdperf-latency-pct", "1000")
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(["*server p99 latency * ms exceeds latency_cap_ms=400*"])


OFFLINE = ", scenario='offline', duration_s=2, min_queries=10"


@pytest.mark.slow
def test_throughput_is_recorded_in_the_baseline_and_a_drop_fails_the_test(pytester: pytest.Pytester) -> None:
    """An offline run's seconds per image go into the baseline entry (``throughput``); an
    unchanged run passes and adds a session; 3x slower per step, the test fails naming the
    throughput check with both images/s (and the confirmation in fresh workers agrees)."""
    pytest.importorskip("mlperf_loadgen")
    run = SdperfRun(pytester)
    run.write_suite(OFFLINE)
    # seconds: other work on the machine slows the calibration workload, not the fake's sleeps
    args = ("--sdperf-variants", "fake", "--sdperf-gate", "absolute")
    first = run.run(*args)
    first.assert_outcomes(passed=1)
    entry = next(iter(json.loads(run.baseline_file().read_text())["entries"].values()))
    # 5 steps x 10 ms a call, one image a call: about 20 images/s, one sample per call
    assert len(entry["throughput"]["samples"]) >= 10
    assert 0.045 < sorted(entry["throughput"]["samples"])[5] < 0.2
    same = run.run(*args, "--sdperf-json", "r.json")
    same.assert_outcomes(passed=1)
    entry = next(iter(json.loads(run.baseline_file().read_text())["entries"].values()))
    assert len(entry["throughput"]["sessions"]) == 2
    slow = run.run(*args, "--sdperf-set", "fake_delay=0.03")
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(["*throughput: seconds-per-image ratio: measured *x*images/s*",
                               "*confirmed in fresh workers*"])
