"""pytest-benchmark's format and compare command; the pytest-xdist warning."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_sdperf.testing import SdperfRun


@pytest.fixture
def run(pytester: pytest.Pytester) -> SdperfRun:
    r = SdperfRun(pytester, rounds=4)
    r.write_suite()
    return r


def test_pytest_benchmark_compare_reads_our_json(run: SdperfRun, tmp_path: Path) -> None:
    first, second = tmp_path / "0001_a.json", tmp_path / "0002_b.json"
    run.run("--sdperf-variants", "fake,fake-slow", "--sdperf-benchmark-json", str(first))
    run.run("--sdperf-variants", "fake,fake-slow", "--sdperf-benchmark-json", str(second))
    doc = json.loads(first.read_text())
    names = {b["name"] for b in doc["benchmarks"]}
    assert names == {"test_gen[fake]", "test_gen[fake-slow]"}
    assert all(b["stats"]["rounds"] == 4 and len(b["stats"]["data"]) == 4 for b in doc["benchmarks"])
    local = Path(sys.executable).with_name("pytest-benchmark")
    exe = str(local) if local.exists() else shutil.which("pytest-benchmark") or "pytest-benchmark"
    out = subprocess.run([exe, "compare", str(first), str(second), "--group-by", "name"],
                         capture_output=True, text=True, check=True)
    assert "test_gen[fake-slow]" in out.stdout and "Mean" in out.stdout


def test_xdist_run_warns_that_timings_are_untrustworthy(pytester: pytest.Pytester, run: SdperfRun) -> None:
    result = pytester.runpytest_subprocess(*run.args("--sdperf-variants", "fake,fake-slow", "-n", "2"))
    result.stdout.fnmatch_lines(["*timings taken while pytest-xdist runs tests in parallel*"])
    entries = json.loads(run.baseline_file().read_text())["entries"]
    assert {k.split("@")[0] for k in entries} == {"test_suite.py::test_gen[fake]",
                                                  "test_suite.py::test_gen[fake-slow]"}
    assert len(entries) == 2
