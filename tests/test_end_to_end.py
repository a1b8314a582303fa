"""The real path: the embedded tiny model, the torch-fp32 variant, a worker process each run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
SUITE = Path(__file__).parents[1] / "suites" / "test_text_to_image.py"


pytestmark = pytest.mark.slow  # real models end to end: pytest tests/ -m slow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sdperf-cache")


def run(pytester: pytest.Pytester, cache_dir: Path, *extra: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--sdperf", "--sdperf-variants", "torch-fp32", "--sdperf-cache-dir", str(cache_dir),
        "--sdperf-baselines", str(pytester.path / "baselines"),
        "--sdperf-warmup", "1", "-p", "no:cacheprovider", *extra,  # auto rounds: the default
        # The reference variant's own test is gated over calibration; a fresh process read it
        # 0.76-1.30x of its recording across runs here (docs/measurements.md, "Earlier defaults"): a limit of
        # 50% keeps this test about the path, and the 10x regression below still fails.
        "--sdperf-latency-pct", "50",
        "-k", "not batch",  # the suite's batch test is a second workload: one test is enough here
    )


def test_tiny_model_records_passes_and_catches_a_10x_regression(
    pytester: pytest.Pytester, cache_dir: Path
) -> None:
    shutil.copy(SUITE, pytester.path / SUITE.name)
    first = run(pytester, cache_dir)
    first.assert_outcomes(passed=1)  # a first recording passes, with a warning
    first.stdout.fnmatch_lines(["*no baseline entry*recorded now*", "torch-fp32 *1.00x*recorded"])

    second = run(pytester, cache_dir, "--sdperf-json", "results.json")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines(["torch-fp32 *s *1.00x*%*MiB*1.0000*pass", "%peak: achieved UNet FLOP/s*"])
    results = json.loads((pytester.path / "results.json").read_text())
    efficiency = results["results"][0]["efficiency"]
    assert efficiency["unet_step_gflops"] > 1 and efficiency["achieved_gflops_per_s"] > 0
    assert 0 < efficiency["pct_of_peak"] and results["peak"]["measured"]["float32"]["gflops_per_s"] > 0

    baseline = next(p for p in (pytester.path / "baselines").glob("*.json"))
    doc = json.loads(baseline.read_text())
    (entry,) = doc["entries"].values()
    assert entry["similarity"]["ssim"] == 1.0  # same latents, same model: identical image
    assert entry["memory"]["peak_rss"] > entry["memory"]["peak_heap"] > 0
    assert entry["latency"]["stages"]["steps_per_call"] >= 10
    # Claim the baseline ran 10x faster: far past the 1.1x limit, so the verdict is a failure
    # even when other work on a 2-core machine widens the interval (at 2x, and once at 4x, with
    # a tox job beside it, the 95% interval reached below the limit and the verdict was inconclusive).
    entry["latency"]["samples"] = [s / 10 for s in entry["latency"]["samples"]]
    for session in entry["latency"].get("sessions", []):  # and the medians of its sessions
        session.update({k: v / 10 for k, v in session.items()})
    baseline.write_text(json.dumps(doc))

    third = run(pytester, cache_dir)
    third.assert_outcomes(failed=1)
    third.stdout.fnmatch_lines(["*sdperf regression in*torch-fp32*", "*latency ratio*: measured*limit 1.500x*",
                                "*confirmed in fresh workers*"])


def test_tiny_model_build_is_deterministic(tmp_path: Path) -> None:
    from pytest_sdperf.models.source import MANIFEST, ensure_tiny

    first = ensure_tiny(tmp_path / "a")
    second = ensure_tiny(tmp_path / "b")
    assert (first / MANIFEST).read_text() == (second / MANIFEST).read_text()
    assert not list(first.rglob("*.bin")) and list(first.rglob("*.safetensors"))

    weights = next(first.rglob("*.safetensors"))
    weights.write_bytes(b"damaged")
    rebuilt = ensure_tiny(tmp_path / "a")
    assert (rebuilt / MANIFEST).read_text() == (second / MANIFEST).read_text()


SCENARIO_SUITE = """
import pytest

@pytest.mark.sdperf(scenario="single-stream", duration_s=2, min_queries=3)
def test_single_stream(sdperf_measurement, sdperf_gate):
    sdperf_gate.check(sdperf_measurement)
"""


def test_tiny_model_under_loadgen_single_stream(pytester: pytest.Pytester, cache_dir: Path) -> None:
    """LoadGen drives the real pipeline in its worker: its queries are the tiny model's calls,
    so its p90 is about the rounds' median, and its figures and logs come back."""
    pytest.importorskip("mlperf_loadgen")
    pytester.makepyfile(test_serving=SCENARIO_SUITE)
    result = run(pytester, cache_dir, "--sdperf-rounds", "3", "--sdperf-json", "results.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["LoadGen torch-fp32: single-stream: *images/s, p90 * ms, * queries in *"
                                 "not a compliant run*"])
    record = json.loads((pytester.path / "results.json").read_text())["results"][0]
    scenario = record["info"]["scenario"]
    assert scenario["query_count"] >= 3 and scenario["images_per_sample"] == 1
    p90 = scenario["latency_s"]["90.00"]
    assert 0.3 * record["p50_s"] < p90 < 5 * record["p90_s"]  # the same calls LoadGen timed
    assert scenario["samples_per_s"] == pytest.approx(1 / scenario["latency_s"]["50.00"], rel=0.5)
    assert (Path(scenario["log_dir"]) / "mlperf_log_detail.txt").is_file()
