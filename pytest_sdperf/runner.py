"""Parent side of the worker protocol: spawn, wait with a timeout, read the result.

``run_worker`` runs a worker that times itself to the end. ``DrivenWorker`` keeps one alive and
sends it commands (``worker --serve``), one round at a time, so that the rounds of two
processes can interleave; a worker the parent no longer needs is closed.

Either forks the worker from the session's fork server (``launcher``, a ``zygote.Zygote``), where
``Zygote.why_spawned`` allows, or spawns a fresh interpreter; the rest does not tell them apart.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Mapping, Protocol, Sequence

from .progress import DEFAULT_HANG_FLOOR_S, Stall, Watchdog, dump_stacks
from .protocol import OK, SKIP, WorkerRequest, WorkerResult
from .variants.registry import merge_env
from .zygote import Zygote

STDERR_TAIL = 6000
POLL_S = 0.5
# A process whose work just ended leaves its OpenMP threads spinning for a few milliseconds
# (libgomp spins GOMP_SPINCOUNT times before it sleeps), on the cores the next process's timed
# round needs: measured here, a 54 ms torch round started right after another process's torch
# work took 60 ms, the same round started 10 ms later 53 ms. In paired rounds (ABBA) each side
# then runs half its rounds beside the other's spinning threads (the committed baseline's
# ratios differed by a median 1.8% between the rounds where the variant ran first and those
# where the reference did), and work a slower variant adds leaks into its yardstick's time. So
# a timed command to one worker waits until SETTLE_S has passed since another worker replied.
SETTLE_S = 0.015
TIMED = ("round", "restart")  # the commands whose reply carries a timing


@dataclass
class _LastReply:
    """The worker that replied last and when (time.monotonic): the machine-wide state the
    settle wait reads; every DrivenWorker of the session shares it."""

    pid: int = 0
    at: float = 0.0


_LAST = _LastReply()


def settle(pid: int) -> float:
    """Wait, before a timed command to worker ``pid``, until SETTLE_S has passed since another
    worker's reply; the seconds waited."""
    wait = SETTLE_S - (time.monotonic() - _LAST.at) if _LAST.pid not in (0, pid) else 0.0
    if wait > 0:
        time.sleep(wait)
    return max(0.0, wait)


@dataclass(frozen=True)
class WorkerOutcome:
    """What came back: status is ok, skip, error, timeout, hung or crash.

    result: the worker's own message (None when it wrote none: timeout, hung, crash).
    hang: for ``hung``, what the watchdog saw (``progress.Stall.describe``); stacks: every
    thread's Python and native stacks, taken before the worker was killed.
    """

    status: str
    result: WorkerResult | None = None
    stderr_tail: str = ""
    returncode: int | None = None
    hang: str = ""
    stacks: str = ""

    def failure_text(self, variant: str, timeout_s: float) -> str:
        """The message a failed test shows."""
        if self.status == "hung":
            return (f"sdperf worker for {variant} hung: {self.hang}; its stacks were taken and it "
                    "was killed. This is a hang, not a slowdown (a slow worker still reports "
                    "progress).\n--- worker stacks ---\n" + self.stacks
                    + "\n--- worker stderr ---\n" + self.stderr_tail)
        if self.status == "timeout":
            head = f"sdperf worker for {variant} did not finish within {timeout_s:g} s (killed)"
        elif self.status == "crash":
            head = f"sdperf worker for {variant} died (exit status {self.returncode})"
        else:
            head = f"sdperf worker for {variant} raised an error"
        return f"{head}; raise --sdperf-timeout if it is just slow.\n--- worker stderr ---\n{self.stderr_tail}"

    @property
    def measured(self) -> WorkerResult | None:
        """The worker's figures when it measured (status ok), else None."""
        return self.result if self.status == OK else None

    @property
    def skip_reason(self) -> str | None:
        """Why the variant skipped itself (status skip), else None."""
        if self.status != SKIP:
            return None
        return (self.result.reason if self.result else "") or "the variant skipped itself"


class WorkerProcess(Protocol):
    """What the runner uses of a worker process: a ``subprocess.Popen`` or a
    ``zygote.ForkedWorker`` (whose ``wait`` gives None where its exit status was lost)."""

    @property
    def pid(self) -> int: ...

    @property
    def stdin(self) -> IO[bytes] | None: ...

    def wait(self, timeout: float | None = None) -> int | None: ...


@dataclass(frozen=True)
class _Exited:
    """A worker that ended; ``code`` None where its status is unknown."""

    code: int | None


def worker_env(extra: Mapping[str, str], import_path: Sequence[str] | None = None) -> dict[str, str]:
    """The parent's environment, the parent's import path, and the variant's variables.

    ``import_path``: the folders another interpreter (``--sdperf-against``) is given instead of
    the parent's import path, so that it imports its own packages."""
    env = dict(os.environ)
    own = [p for p in sys.path if p] if import_path is None else list(import_path)
    paths = own + env.get("PYTHONPATH", "").split(os.pathsep)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return merge_env(env, extra)  # a user's own LD_PRELOAD is kept after the variant's


def run_worker(
    request: WorkerRequest, workdir: Path, timeout_s: float, env: Mapping[str, str],
    hang_floor_s: float = DEFAULT_HANG_FLOOR_S, launcher: Zygote | None = None,
) -> WorkerOutcome:
    """Run one measurement in a worker of its own; never raises for the worker's faults.

    The worker is killed at ``timeout_s`` (the hard cap), or earlier when the watchdog finds
    it hung (silent past ``max(hang_floor_s, 20 x its first call)``; 0 turns that off).
    ``launcher``: the fork server to fork it from where it may (None: a fresh interpreter)."""
    req_path, res_path, err_path, progress_path = _worker_files(request, workdir)
    with err_path.open("wb") as err:
        proc = _launch(request, [str(req_path), str(res_path)], env, err, launcher)
    ended = _wait(proc, timeout_s, Watchdog(progress_path, hang_floor_s, label=request.variant.name))
    if not isinstance(ended, _Exited):
        return _killed(proc, err_path, ended)
    return _ended(res_path, err_path, ended.code)


def source_root() -> str:
    """The folder this pytest_sdperf package is imported from (another interpreter runs the same
    plugin code from it, with its own packages)."""
    return str(Path(__file__).resolve().parent.parent)


def _launch(request: WorkerRequest, args: list[str], env: Mapping[str, str], out: IO[bytes],
            launcher: Zygote | None, stdin: bool = False, reply: int | None = None,
            python: str | None = None) -> WorkerProcess:
    """``python -m pytest_sdperf.worker [--serve REPLY] ARGS``, its output to ``out`` (and a
    pipe as its stdin, when ``stdin``): forked by ``launcher`` where it may, else spawned.
    ``python``: another interpreter to spawn it with (never forked), importing its own packages."""
    full_env = worker_env(env, [source_root()] if python else None)
    if launcher is not None and python is None:
        forked = launcher.launch(request, args, full_env, out.fileno(), stdin, reply)
        if forked is not None:
            return forked
    serve = ["--serve", str(reply)] if reply is not None else []
    return subprocess.Popen(
        [python or sys.executable, "-m", "pytest_sdperf.worker", *serve, *args],
        stdin=subprocess.PIPE if stdin else None, stdout=out, stderr=subprocess.STDOUT,
        env=full_env, start_new_session=True, pass_fds=() if reply is None else (reply,))


def _worker_files(request: WorkerRequest, workdir: Path) -> tuple[Path, Path, Path, Path]:
    """A worker's request (written now), result, output and progress files, in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    req_path, res_path, err_path, progress_path = (
        workdir / n for n in ("request.json", "result.json", "stderr.txt", "progress.jsonl"))
    req_path.write_text(json.dumps(request.with_progress(progress_path).to_dict(), indent=1))
    res_path.unlink(missing_ok=True)
    progress_path.unlink(missing_ok=True)
    return req_path, res_path, err_path, progress_path


def _ended(res_path: Path, err_path: Path, code: int | None) -> WorkerOutcome:
    """The outcome of a worker that exited: its result file's, or a crash where it wrote none."""
    if not res_path.exists():
        return WorkerOutcome("crash", stderr_tail=_tail(err_path), returncode=code)
    result = WorkerResult.from_dict(json.loads(res_path.read_text()))
    return WorkerOutcome(result.status, result, _tail(err_path), code)


def _killed(proc: WorkerProcess, err_path: Path, stall: Stall | None) -> WorkerOutcome:
    """Kill a worker that hung (``stall``: its stacks taken first) or ran past the hard cap."""
    stacks = dump_stacks(proc.pid, err_path) if stall else ""
    _kill_group(proc)
    proc.wait()
    if stall:
        return WorkerOutcome("hung", stderr_tail=_tail(err_path), hang=stall.describe(), stacks=stacks)
    return WorkerOutcome("timeout", stderr_tail=_tail(err_path), returncode=None)


def _kill_group(proc: WorkerProcess) -> None:
    """SIGKILL the worker's process group (a forked worker's may be gone already)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait(proc: WorkerProcess, timeout_s: float, watchdog: Watchdog) -> _Exited | Stall | None:
    """How it ended; or the stall, when the watchdog fires; or None at the cap."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _Exited(proc.wait(timeout=min(POLL_S, max(0.0, deadline - time.monotonic()))))
        except subprocess.TimeoutExpired:
            pass
        stall = watchdog.poll()
        if stall is not None:
            return stall
        if time.monotonic() >= deadline:
            return None


def _tail(path: Path) -> str:
    data = path.read_bytes()[-STDERR_TAIL:]
    return data.decode("utf-8", errors="replace")


class WorkerGone(Exception):
    """A driven worker that skipped, failed, hung or died; ``outcome`` says which and why."""

    def __init__(self, outcome: WorkerOutcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


class DrivenWorker:
    """A worker kept alive and driven one command at a time (``worker --serve``).

    Every wait is watched as ``run_worker``'s is: the hard cap ``timeout_s`` per command (the
    build and warm-up included in the first), and the hang watchdog, whose silence counts from
    each command, so a worker idle between commands is never judged hung. ``start`` returns once
    the worker is built and warm; its faults raise WorkerGone. ``launcher``: as ``run_worker``'s.
    """

    def __init__(self, request: WorkerRequest, workdir: Path, timeout_s: float, env: Mapping[str, str],
                 hang_floor_s: float = DEFAULT_HANG_FLOOR_S, launcher: Zygote | None = None,
                 python: str | None = None) -> None:
        self.req_path, self.res_path, self.err_path, progress_path = _worker_files(request, workdir)
        self.timeout_s = timeout_s
        self.name = request.variant.name  # the variant this worker runs
        self.watchdog = Watchdog(progress_path, hang_floor_s, label=request.variant.name)
        self._buffer = b""
        self.last_reply: dict[str, Any] = {}
        read_fd, write_fd = os.pipe()
        with self.err_path.open("wb") as err:
            self.proc = _launch(request, [str(self.req_path), str(self.res_path)], env, err,
                                launcher, stdin=True, reply=write_fd, python=python)
        os.close(write_fd)
        self._replies = read_fd

    def start(self) -> None:
        """Wait until the worker is built and warm (WorkerGone if it skipped or failed)."""
        self._await()

    def ask(self, **cmd: Any) -> dict[str, Any]:
        """Send one command and wait for its reply."""
        self.send(**cmd)
        return self._await()

    def send(self, **cmd: Any) -> None:
        """Send one command without waiting (``reply`` waits): several workers driven at once."""
        assert self.proc.stdin is not None
        if cmd.get("cmd") in TIMED:
            settle(self.proc.pid)
        self.watchdog.resume()
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: _await says how

    def reply(self) -> dict[str, Any]:
        """The reply to the command ``send`` sent (WorkerGone if the worker ended instead)."""
        return self._await()

    def finish(self, reference: list[float] | None = None) -> WorkerOutcome:
        """The worker's result, after it wrote it and exited (WorkerGone if it could not)."""
        self.ask(cmd="finish", reference=reference or [])
        code = self.proc.wait(timeout=self.timeout_s)
        self.close()
        return _ended(self.res_path, self.err_path, code)

    def close(self) -> None:
        """End the worker (its input closed; killed if it does not exit at once)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            self.proc.wait()
        if self._replies >= 0:
            os.close(self._replies)
            self._replies = -1

    def _await(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], POLL_S)
            if ready:
                chunk = os.read(self._replies, 65536)
                if not chunk:  # the worker closed its end: it exited
                    code = self.proc.wait()
                    self.close()
                    raise WorkerGone(_ended(self.res_path, self.err_path, code))
                self._buffer += chunk
                continue
            stall = self.watchdog.poll()
            if stall is not None or time.monotonic() >= deadline:
                outcome = _killed(self.proc, self.err_path, stall)
                self.close()
                raise WorkerGone(outcome)
        line, _, self._buffer = self._buffer.partition(b"\n")
        _LAST.pid, _LAST.at = self.proc.pid, time.monotonic()
        self.last_reply = json.loads(line)
        return self.last_reply
