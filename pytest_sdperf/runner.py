"""Parent side of the worker protocol: spawn, wait with a timeout, read the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

STDERR_TAIL = 6000


@dataclass(frozen=True)
class WorkerOutcome:
    """What came back: status is ok, skip, error, timeout or crash."""

    status: str
    result: Mapping[str, Any] = field(default_factory=dict)
    stderr_tail: str = ""
    returncode: int | None = None

    def failure_text(self, variant: str, timeout_s: float) -> str:
        """The message a failed test shows."""
        if self.status == "timeout":
            head = f"sdperf worker for {variant} did not finish within {timeout_s:g} s (killed)"
        elif self.status == "crash":
            head = f"sdperf worker for {variant} died (exit status {self.returncode})"
        else:
            head = f"sdperf worker for {variant} raised an error"
        return f"{head}; raise --sdperf-timeout if it is just slow.\n--- worker stderr ---\n{self.stderr_tail}"


def worker_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment, the parent's import path, and the variant's variables."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p] + env.get("PYTHONPATH", "").split(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    env.update(extra)
    return env


def run_worker(
    request: Mapping[str, Any], workdir: Path, timeout_s: float, env: Mapping[str, str]
) -> WorkerOutcome:
    """Run one measurement in a fresh interpreter; never raises for the worker's faults."""
    workdir.mkdir(parents=True, exist_ok=True)
    req_path, res_path, err_path = (workdir / n for n in ("request.json", "result.json", "stderr.txt"))
    req_path.write_text(json.dumps(request, indent=1))
    res_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest_sdperf.worker", str(req_path), str(res_path)]
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            cmd, stdout=err, stderr=subprocess.STDOUT, env=worker_env(env), start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return WorkerOutcome("timeout", stderr_tail=_tail(err_path), returncode=None)
    if not res_path.exists():
        return WorkerOutcome("crash", stderr_tail=_tail(err_path), returncode=code)
    result = json.loads(res_path.read_text())
    return WorkerOutcome(result["status"], result, _tail(err_path), code)


def _tail(path: Path) -> str:
    data = path.read_bytes()[-STDERR_TAIL:]
    return data.decode("utf-8", errors="replace")
