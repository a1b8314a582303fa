"""The measuring process: ``python -m pytest_sdperf.worker [--serve FD] REQUEST.json RESULT.json``.

One variant per process, so its memory is its own, a crash costs one test, and environment
variants (LD_PRELOAD, thread counts, pinning) apply before anything heavy is imported.
The result file is plain JSON (``protocol.WorkerResult``); images are PNG files in the
request's ``out_dir``.

By itself the worker times the request's rounds (fixed, or auto: ``rounds.more_rounds``). With
``--serve FD`` the parent drives it: after building and warming up it writes ``{"ready": true}``
to file descriptor FD, then answers each command read from standard input, one JSON object a
line: ``{"cmd": "round"}`` (a timed call and the calibration after it: ``{"seconds": s,
"calibration": c}``),
``{"cmd": "round", "calibrate": false}`` (a round without calibration: a paired variant's or
the reference's), ``{"cmd": "restart"}`` (forget the rounds so far and calibrate afresh:
``{"calibration": c}``), and ``{"cmd": "finish",
"reference": [...]}`` (write the result, with the paired reference's rounds, and exit). End of
input ends the worker. A worker that skips or fails writes its result file and exits.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import progress
from .atomic import atomic_write_text
from .host import usable_cpus
from .variants.base import SkipVariant

__all__ = ["SkipVariant", "main", "measure", "parse_cpus"]  # SkipVariant: its old home

if TYPE_CHECKING:  # the protocol imports numpy: only after the worker has pinned itself
    from .protocol import WorkerRequest, WorkerResult


def parse_cpus(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5}."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def main(argv: list[str]) -> int:
    """Entry point; exit status 0 whenever a result file was written."""
    serve_fd = None
    if argv[0] == "--serve":
        serve_fd, argv = int(argv[1]), argv[2:]
    raw = json.loads(Path(argv[0]).read_text())
    result_path = Path(argv[1])
    progress.start(Path(raw["progress"]) if raw.get("progress") else None)
    try:
        if raw["variant"].get("cpus"):
            _pin(raw["variant"]["cpus"])
        from .protocol import WorkerRequest

        request = WorkerRequest.from_dict(raw)
        if serve_fd is not None:
            with os.fdopen(serve_fd, "w") as replies:
                serve(request, sys.stdin, replies, result_path)
            return 0
        result = measure(request)
    except SkipVariant as exc:
        from .protocol import WorkerResult

        result = WorkerResult.skipped(str(exc))
    except Exception:
        traceback.print_exc()
        from .protocol import WorkerResult

        result = WorkerResult.failed(traceback.format_exc())
    atomic_write_text(result_path, json.dumps(result.to_dict(), indent=1))
    return 0


def _pin(cpus: str) -> None:
    """Pin this process to ``cpus``; CPUs this machine does not offer skip the variant."""
    try:
        os.sched_setaffinity(0, parse_cpus(cpus))
    except (OSError, ValueError) as exc:
        raise SkipVariant(f"cannot pin the worker to CPUs {cpus} ({exc}); this machine "
                          f"offers CPUs {sorted(usable_cpus())}") from None


def measure(request: WorkerRequest) -> WorkerResult:
    """Build the variant, time its rounds, measure its memory, save its images."""
    from .bench import Bench
    from .rounds import more_rounds

    bench = Bench(request)
    bench.prepare()
    while more_rounds(request, bench.samples, bench.stats):
        bench.round()
    return bench.finish()


def serve(request: WorkerRequest, commands: TextIO, replies: TextIO, result_path: Path) -> None:
    """Answer the parent's commands (see the module docstring) until ``finish`` has written the
    result file, or the parent is gone. A SkipVariant or error raised on the way propagates, and
    ``main`` writes it as the result."""
    from .bench import Bench

    bench = Bench(request)
    bench.prepare()
    _reply(replies, {"ready": True, "calibration": bench.marks[-1]})
    for line in commands:
        cmd: dict[str, Any] = json.loads(line)
        if cmd["cmd"] == "round" and cmd.get("calibrate", True):
            _reply(replies, {"seconds": bench.round(), "calibration": bench.marks[-1]})
        elif cmd["cmd"] == "round":
            _reply(replies, {"seconds": bench.round_only()})
        elif cmd["cmd"] == "restart":
            _reply(replies, {"calibration": bench.restart()})
        elif cmd["cmd"] == "finish":
            result = bench.finish([float(s) for s in cmd.get("reference") or []])
            atomic_write_text(result_path, json.dumps(result.to_dict(), indent=1))
            _reply(replies, {"done": True})
            return
        else:
            raise ValueError(f"unknown worker command {cmd!r}")


def _reply(replies: TextIO, message: dict[str, Any]) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
