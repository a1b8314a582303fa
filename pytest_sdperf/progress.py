"""Worker heartbeats and the parent's hang watchdog.

The worker appends one JSON line to its progress file for every completed pipeline call and
around every build (loading, exporting, quantizing, compiling: unbounded, and not judged).
The parent reads the file while it waits (``Watchdog.poll``). Once the first call has
reported its duration, a worker that reports nothing for ``max(floor_s, 20 x first call)``
is hung: the parent asks it for every thread's Python stack (``faulthandler`` on SIGUSR1,
which needs no GIL, so it answers even when a thread holds the GIL forever), takes the native
stacks from outside (py-spy, else gdb, where installed), and kills it. The watchdog lives in
the parent because a process whose threads are deadlocked cannot be trusted to notice it.

Variant code may report a long build stage of its own with ``beat("stage", name=...)``.

A build that goes on past ``REPORT_AFTER_S`` is reported, while it lasts, to the reporter the
plugin sets (``set_reporter``: a line on the terminal), every ``REPORT_EVERY_S``, with its stage
and the time so far, then once when it is done: minutes of an export or a quantization are not
minutes of silence.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

HANG_FACTOR = 20.0
DEFAULT_HANG_FLOOR_S = 60.0
STACK_SIGNAL = signal.SIGUSR1
NATIVE_DUMP_TIMEOUT_S = 60.0
REPORT_AFTER_S = 5.0
REPORT_EVERY_S = 15.0

_sink: TextIO | None = None
_reporter: Callable[[str], None] | None = None


def set_reporter(report: Callable[[str], None] | None) -> None:
    """Parent side: where reports of long builds go (None: nowhere)."""
    global _reporter
    _reporter = report


def say(text: str) -> None:
    """Parent side: ``text`` to the reporter now (a line on the terminal), if one is set."""
    if _reporter is not None:
        _reporter(text)


def start(path: Path | None) -> None:
    """Worker side: beats go to ``path`` from now on (None: nowhere); stacks on SIGUSR1."""
    global _sink
    import faulthandler

    faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True)
    _sink = path.open("a", buffering=1) if path else None


def beat(event: str, **fields: Any) -> None:
    """Worker side: report progress (``event`` ``build`` / ``built`` / ``call`` / ``step`` /
    ``stage``)."""
    if _sink is not None:
        _sink.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")


@dataclass(frozen=True)
class Stall:
    """A worker the watchdog judged hung."""

    silent_s: float
    limit_s: float
    first_call_s: float
    last_event: str

    def describe(self) -> str:
        return (f"no progress for {self.silent_s:.0f} s (limit {self.limit_s:.0f} s: the larger "
                f"of {HANG_FACTOR:g} x its first call of {self.first_call_s:.2f} s and the floor, "
                f"--sdperf-hang-floor); last progress: {self.last_event}")


class Watchdog:
    """Parent side: follows one worker's progress file; ``poll()`` says when it has hung."""

    def __init__(self, path: Path, floor_s: float, clock: Any = time.monotonic, label: str = "") -> None:
        self.path = path
        self.label = label  # the variant, in build reports
        self._build_start: float | None = None
        self._reported_at: float | None = None
        self.floor_s = floor_s
        self._clock = clock
        self._offset = 0
        self._last = clock()
        self._building = False
        self.first_call_s: float | None = None
        self.last_event = "worker started"

    def resume(self) -> None:
        """The worker was idle, waiting for its parent, until now: silence counts from here."""
        for line in self._new_lines():
            self._take(line)
        self._last = self._clock()

    def limit_s(self) -> float | None:
        """Seconds of silence that mean hung now; None while building or before the first call."""
        if self.floor_s <= 0 or self._building or self.first_call_s is None:
            return None
        return max(self.floor_s, HANG_FACTOR * self.first_call_s)

    def poll(self) -> Stall | None:
        """Read new beats; a Stall when the worker has been silent past its limit."""
        for line in self._new_lines():
            self._take(line)
        self._report_build()
        limit = self.limit_s()
        silent = self._clock() - self._last
        if limit is None or silent <= limit:
            return None
        return Stall(silent, limit, self.first_call_s or 0.0, self.last_event)

    def _new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        return complete.decode("utf-8", errors="replace").splitlines()

    def _take(self, line: str) -> None:
        try:
            beat_ = json.loads(line)
        except ValueError:
            return
        self._last = self._clock()
        event = str(beat_.get("event", ""))
        if event == "build":
            self._building = True
            self._build_start, self._reported_at = self._clock(), None
        elif event == "built":
            self._building = False
            if self._reported_at is not None and self._build_start is not None and _reporter:
                _reporter(f"{self.label}: built in {self._clock() - self._build_start:.0f} s")
            self._build_start = None
        if event == "call" and self.first_call_s is None:
            self.first_call_s = float(beat_.get("seconds", 0.0))
        self.last_event = _describe(beat_)


    def _report_build(self) -> None:
        """A line for the reporter while a build lasts (see the module docstring)."""
        if _reporter is None or self._build_start is None:
            return
        now = self._clock()
        took = now - self._build_start
        if took < REPORT_AFTER_S or (self._reported_at is not None
                                     and now - self._reported_at < REPORT_EVERY_S):
            return
        self._reported_at = now
        _reporter(f"{self.label}: building, {took:.0f} s so far (last: {self.last_event})")


def _describe(beat_: dict[str, Any]) -> str:
    event = beat_.get("event")
    if event == "call":
        return f"call {beat_.get('n', '?')} done in {float(beat_.get('seconds', 0.0)):.2f} s"
    if event == "step":
        return f"denoising step {beat_.get('n', '?')} done"
    what = beat_.get("name") or beat_.get("phase") or ""
    return f"{event} {what}".strip()


def dump_stacks(pid: int, err_path: Path) -> str:
    """Every thread's stacks of a live worker: Python ones (written by the worker itself into
    its output, read back from ``err_path``) and native ones (py-spy, else gdb)."""
    before = err_path.stat().st_size if err_path.exists() else 0
    try:
        os.kill(pid, STACK_SIGNAL)
    except ProcessLookupError:
        return "(the worker exited before its stacks could be taken)"
    time.sleep(1.0)
    python = err_path.read_bytes()[before:].decode("utf-8", errors="replace") if err_path.exists() else ""
    return ("--- Python stacks (faulthandler) ---\n" + (python.strip() or "(none written)")
            + "\n--- native stacks ---\n" + native_stacks(pid))


def native_stacks(pid: int) -> str:
    """Native stacks of every thread of ``pid``, or why they could not be taken."""
    tools: list[list[str]] = []
    note = ""
    spy = shutil.which("py-spy") or _beside_python("py-spy")
    if spy:
        tools.append([spy, "dump", "--native", "--pid", str(pid)])
    gdb = shutil.which("gdb")
    if gdb:
        tools.append([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"])
    for cmd in tools:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=NATIVE_DUMP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            note = f"{Path(cmd[0]).name} failed: {exc}"
            continue
        if out.returncode == 0 and out.stdout.strip():
            return f"({Path(cmd[0]).name})\n{out.stdout.strip()}"
        note = f"{Path(cmd[0]).name} exited {out.returncode}: {out.stderr.strip()[-300:]}"
    if not tools:
        return "(not taken: neither py-spy nor gdb is installed; pip install py-spy)"
    return f"(not taken: {note})"


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None
