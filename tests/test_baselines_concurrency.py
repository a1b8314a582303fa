"""Concurrent writers lose no entry; a writer killed mid-update leaves the file whole."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pytest_sdperf.baselines import BaselineStore, parse_baseline


def entry(i: int) -> dict:
    return {"variant": "v", "model": "m", "workload": {}, "latency": {"samples": [1.0 + i]},
            "memory": {}, "similarity": None, "thresholds": {}}


def _writer(directory: str, prefix: str, count: int) -> None:
    for i in range(count):
        store = BaselineStore(Path(directory), "key")
        store.queue(f"{prefix}-{i}", entry(i))
        store.flush({})


def test_two_sessions_updating_one_file_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), p, 15)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    entries = json.loads((tmp_path / "key.json").read_text())["entries"]
    assert len(entries) == 30


WRITER = """
import sys
from pathlib import Path
from pytest_sdperf.baselines import BaselineStore
i = 0
while True:
    store = BaselineStore(Path(sys.argv[1]), "key")
    for j in range(200):
        store.queue(f"t{j}", {"variant": "v", "model": "m", "workload": {"pad": "x" * 2000},
                              "latency": {"samples": [1.0 + i]}, "memory": {},
                              "similarity": None, "thresholds": {}})
    store.flush({})
    i += 1
"""


def test_sigkill_during_update_leaves_a_valid_baseline(tmp_path: Path) -> None:
    _writer(str(tmp_path), "first", 1)
    path = tmp_path / "key.json"
    for delay in (0.3, 0.45, 0.6, 0.8, 1.0):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        data = parse_baseline(path.read_text(), path)  # raises if half-written
        assert "first-0" in data["entries"]
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) <= 5  # a killed writer may leave its temp file, never a broken baseline
