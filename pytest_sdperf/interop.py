"""pytest-benchmark's JSON format, so ``pytest-benchmark compare`` and its histograms work.

``--sdperf-benchmark-json PATH`` writes each test's timed rounds as a pytest-benchmark
benchmark (group ``sdperf``, name = test id, extra_info = variant and memory/similarity).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Sequence

from .atomic import atomic_write_text
from .host import package_version
from .results import Record


def benchmark_entry(record: Record) -> dict[str, Any]:
    """One pytest-benchmark ``benchmarks[]`` item, its statistics from pytest-benchmark itself."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for sample in record.samples:
        stats.update(sample)
    name = record.test_id.rsplit("::", 1)[-1]
    return {
        "group": "sdperf",
        "name": name,
        "fullname": record.test_id,
        "params": {"sdperf_variant": record.variant},
        "param": record.variant,
        "extra_info": {
            "variant": record.variant, "model": record.model_key, "verdict": record.verdict,
            "peak_rss": record.memory.get("peak_rss"), "peak_anon": record.memory.get("peak_anon"),
            "ssim": record.ssim, "psnr": record.psnr,
        },
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(record.samples),
                    "max_time": 0, "min_time": 0, "warmup": True},
        "stats": {**stats.as_dict(), "iterations": 1, "data": list(record.samples)},
    }


def write_benchmark_json(path: Path, records: Sequence[Record]) -> None:
    """The session's timed records in pytest-benchmark's saved-run format."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    doc = {
        "machine_info": pytest_benchmark_generate_machine_info(),
        "commit_info": {},
        "benchmarks": [benchmark_entry(r) for r in records if r.samples],
        "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "version": package_version("pytest-benchmark"),
    }
    atomic_write_text(path, json.dumps(doc, indent=1, default=str))
