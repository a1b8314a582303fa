"""Run one MLPerf LoadGen scenario around a pipeline, in the variant's worker.

The system under test (SUT) is the worker's pipeline: LoadGen's issue callback puts each query
sample on a queue, one thread takes them in arrival order, makes the sample's images with the
variant's own call (its latents seeded per sample) and reports it complete. One stream: a
Server query that arrives while another is being generated waits, and its latency counts the
wait, as a deployed single-pipeline service's would. Each sample's call is timed too
(``ScenarioResult.service_s``): the samples of the throughput gate (``Bench.throughput``).
The query sample library (QSL) is ``samples`` seeded latents of the workload's prompt (sample
i: seed + i).

LoadGen (``mlcommons-loadgen``, module ``mlperf_loadgen``) writes its logs into ``log_dir``;
``scenario.result_from_log`` reads its figures and verdict back from them. Usage::

    result = run_scenario(Scenario("server", 0.5, 4000.0, 20.0), calls, expected_s=1.2,
                          log_dir=out / "loadgen")
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .scenario import Scenario, ScenarioResult, result_from_log

LOADGEN_PACKAGE = "mlcommons-loadgen"


def loadgen_missing() -> str | None:
    """Why scenarios cannot run here (LoadGen not installed), or None."""
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        return (f"scenario tests need MLPerf's LoadGen: pip install {LOADGEN_PACKAGE} "
                "(module mlperf_loadgen)")
    return None


def run_scenario(scenario: Scenario, calls: Sequence[Callable[[], Any]], expected_s: float,
                 log_dir: Path, images_per_sample: int = 1) -> ScenarioResult:
    """Run ``scenario`` with ``calls[i]`` making sample i (the QSL); ``expected_s``: one call's
    measured seconds, which sizes Offline's query and SingleStream's early estimate. A cap below
    ``expected_s`` is refused (``ScenarioResult.refused``) rather than run to a known failure."""
    import mlperf_loadgen as lg

    cap = scenario.latency_cap_ms
    if cap is not None and cap / 1000.0 < expected_s:
        return ScenarioResult.refused(
            scenario, f"latency_cap_ms={cap:g} is below one generation's measured time "
                      f"({expected_s * 1000.0:.0f} ms): no query can meet it; raise "
                      f"latency_cap_ms above {expected_s * 1000.0:.0f}")
    log_dir.mkdir(parents=True, exist_ok=True)
    work: queue.Queue[Any] = queue.Queue()
    failures: list[BaseException] = []
    service: list[float] = []  # each sample's call, seconds (the throughput gate's samples)

    def serve() -> None:
        while True:
            item = work.get()
            if item is None:
                return
            start = time.perf_counter()
            try:
                calls[item.index]()
            except BaseException as exc:  # reported after the run; LoadGen still needs the answer
                failures.append(exc)
            service.append(time.perf_counter() - start)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(item.id, 0, 0)])

    def issue(samples: Any) -> None:
        for sample in samples:
            work.put(sample)

    server = threading.Thread(target=serve, name="sdperf-loadgen-sut", daemon=True)
    server.start()
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(calls), len(calls), lambda _ids: None, lambda _ids: None)
    started = time.perf_counter()
    try:
        lg.StartTestWithLogSettings(sut, qsl, _settings(lg, scenario, expected_s), _log_settings(lg, log_dir))
    finally:
        elapsed = time.perf_counter() - started
        work.put(None)
        server.join()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if failures:
        raise RuntimeError(f"the pipeline raised during the {scenario.name} run") from failures[0]
    return result_from_log(scenario, log_dir, images_per_sample, elapsed, tuple(service))


def _settings(lg: Any, scenario: Scenario, expected_s: float) -> Any:
    settings = lg.TestSettings()
    settings.scenario = {"single-stream": lg.TestScenario.SingleStream,
                         "offline": lg.TestScenario.Offline,
                         "server": lg.TestScenario.Server}[scenario.name]
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(scenario.duration_s * 1000)
    # LoadGen stops at max_duration even short of min_queries: leave room for them.
    settings.max_duration_ms = int(max(scenario.duration_s * 4, scenario.duration_s + 60) * 1000)
    settings.min_query_count = scenario.min_queries
    expected_ns = max(int(expected_s * 1e9), 1)
    settings.single_stream_expected_latency_ns = expected_ns
    settings.offline_expected_qps = 1.0 / max(expected_s, 1e-9)
    if scenario.name == "server":
        settings.server_target_qps = float(scenario.target_qps or 1.0)
        settings.server_target_latency_ns = int((scenario.latency_cap_ms or 0.0) * 1e6)
        settings.server_target_latency_percentile = scenario.percentile / 100.0
    else:
        settings.single_stream_target_latency_percentile = scenario.percentile / 100.0
    return settings


def _log_settings(lg: Any, log_dir: Path) -> Any:
    out = lg.LogOutputSettings()
    out.outdir = str(log_dir)
    out.copy_summary_to_stdout = False
    log = lg.LogSettings()
    log.log_output = out
    log.enable_trace = False
    return log
