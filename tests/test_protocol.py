"""The typed messages: worker request and result, baseline entry, results record round-trip
through plain data (JSON) unchanged, and bad data is refused with the place named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_sdperf.baselines import BaselineEntry, BaselineError, BaselineStore
from pytest_sdperf.measure.latency import LatencyStats
from pytest_sdperf.measure.memory import MemoryStats
from pytest_sdperf.models.ref import ModelRef
from pytest_sdperf.protocol import AutoRounds, AutoTarget, WorkerRequest, WorkerResult
from pytest_sdperf.results import Record
from pytest_sdperf.variants.registry import VariantSpec
from pytest_sdperf.workload import Workload

STATS = LatencyStats.from_samples([1.0, 1.1, 0.9], calibration=[0.1, 0.1, 0.1], reference=[2.0, 2.0, 2.0])


def _json(data: object) -> object:
    return json.loads(json.dumps(data))


def test_worker_request_round_trips_through_json(tmp_path: Path) -> None:
    request = WorkerRequest(
        variant=VariantSpec(name="v", family="f", description="d", env={"A": "1"}, cpus="0"),
        model=ModelRef("tiny", str(tmp_path), "tiny-abcdef12", arch="sd"),
        workload=Workload(steps=3, height=64, width=64), cache_dir=tmp_path / "cache", device="cpu",
        out_dir=tmp_path / "images", settings={"tome_ratio": "0.5"}, rounds=0,
        auto=AutoRounds(5, 60, 0.02, 30.0, AutoTarget("paired", STATS, 10.0, "torch-fp32", noise_scale=1.4)),
        warmup=2, warmup_steps=1, memray_capture=tmp_path / "m.bin", measure_peak=True,
        machine_cpus=(0, 1),
    ).with_progress(tmp_path / "progress.jsonl")
    back = WorkerRequest.from_dict(_json(request.to_dict()))  # type: ignore[arg-type]
    assert back == request
    assert back.auto.target is not None and back.auto.target.baseline.paired() == STATS.paired()
    assert back.auto.target.noise_scale == 1.4  # the worker stops on the gate's interval


def test_worker_result_round_trips_and_says_skip_and_error() -> None:
    result = WorkerResult(status="ok", build_s=2.0, latency=STATS,
                          memory=MemoryStats(10, None, 5, None, 8, 2), images=(Path("/x/image-0.png"),),
                          info={"dtype": "float32"}, latents_sha256="ab", efficiency={"gflops": 1.0})
    assert WorkerResult.from_dict(_json(result.to_dict())) == result  # type: ignore[arg-type]
    skipped = WorkerResult.from_dict(_json(WorkerResult.skipped("no GPU").to_dict()))  # type: ignore[arg-type]
    assert (skipped.status, skipped.reason, skipped.latency) == ("skip", "no GPU", None)
    assert WorkerResult.failed("Traceback ...").error == "Traceback ..."


def test_baseline_entry_round_trips_and_a_bad_one_names_file_and_key(tmp_path: Path) -> None:
    entry = BaselineEntry(variant="v", model="tiny-abcdef12", workload=Workload().to_dict(),
                          latency=STATS, memory={"peak_anon": 8}, thresholds={"latency_pct": 10.0},
                          similarity={"ssim": 1.0, "psnr": 99.0, "max_abs": 0.0}, build_s=1.5,
                          recorded="2026-12-03T00:00:00+00:00")
    store = BaselineStore(tmp_path, "key")
    store.queue("t@tiny/w", entry)
    store.flush({})
    assert BaselineStore(tmp_path, "key").entry("t@tiny/w") == entry
    broken = BaselineStore(tmp_path, "key")
    broken.entries()["t@tiny/w"] = {**entry.to_dict(), "thresholds": {"latency_pct": "ten"}}
    with pytest.raises(BaselineError, match=r"key\.json: entry 't@tiny/w'"):
        broken.entry("t@tiny/w")


def test_record_round_trips_and_ignores_extra_keys() -> None:
    record = Record("t[v]", "v", "m", "w", "pass", p50_s=1.0, samples=(1.0, 1.1), images=("a.png",))
    data = {**record.to_dict(), "speedup_vs_fp32": 1.0}
    assert Record.from_dict(_json(data)) == record  # type: ignore[arg-type]


def test_a_pair_that_would_not_fit_in_memory_is_not_started(tmp_path: Path) -> None:
    from pytest_sdperf.pairing import ReferencePool

    pool = ReferencePool()
    request = WorkerRequest(variant=VariantSpec(name="r", family="f", description="d"),
                            model=ModelRef("tiny", str(tmp_path), "tiny-abcdef12"), workload=Workload(),
                            cache_dir=tmp_path, device="cpu", out_dir=tmp_path / "images")
    why = pool.get("k", request, 60.0, 60.0, expected_peak=2**50)  # a petabyte
    assert isinstance(why, str) and "GiB is available" in why
    pool.close()
