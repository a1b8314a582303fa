"""The fork server ("zygote"), parent side: one interpreter that has imported what every
PyTorch worker imports forks the workers, so that a worker starts in a fraction of a second
instead of paying ~6 s of ``import torch, diffusers`` each.

``Zygote`` (one per session, its process started in the background on first use) forks a
worker on request, or says it cannot (then the worker is spawned as before); ``why_spawned`` is
the rule for which workers may be forked. ``ForkedWorker`` is a forked worker's handle, with
what the runner uses of ``subprocess.Popen`` (``pid``, ``stdin``, ``wait``, ``poll``,
``returncode``). The server's process and its records: ``zygote_server``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Mapping, Sequence

from .variants.build import DEFAULT_LOADER
from .zygote_server import MAX_RECORD, REAP_S, VOLATILE

if TYPE_CHECKING:
    from .protocol import WorkerRequest
    from .variants.registry import VariantSpec

# What a PyTorch worker has imported before it builds (a torch-fp32 worker's sys.modules at its
# peak-memory call holds all of these): nothing more, since each worker's anonymous RSS is gated.
PRELOAD = (
    "numpy", "scipy.stats", "PIL.Image", "torch", "diffusers:StableDiffusionPipeline",
    "transformers:CLIPTextModel", "transformers:CLIPTokenizer",
    "pytest_sdperf.worker", "pytest_sdperf.bench", "pytest_sdperf.protocol",
)
# Loaders whose workers import all of PRELOAD anyway (OpenVINO's too, through optimum).
LOADERS = ("pytest_sdperf.variants.",)
READY_S = 20.0  # longer than spawning a worker takes: past it, workers are spawned
REPLY_S = 30.0
GONE_POLL_S = 0.1


class Zygote:
    """The parent's fork server: ``launch`` forks a worker, or returns None (then spawn it).

    ``env`` is the server's environment (``runner.worker_env({})``); ``preload`` what it
    imports; ``loaders`` the loader prefixes whose variants it serves. ``problem`` says why it is
    no longer used (it failed, died, or was not ready in ``ready_s``); ``refusals`` what it
    refused; ``forked`` and ``spawned`` count the launches.
    """

    def __init__(self, env: Mapping[str, str], preload: Sequence[str] = PRELOAD,
                 loaders: Sequence[str] = LOADERS, ready_s: float = READY_S) -> None:
        self.env = dict(env)
        self.preload = tuple(preload)
        self.loaders = tuple(loaders)
        self.ready_s = ready_s
        self.problem = ""
        self.refusals: list[str] = []
        self.forked = self.spawned = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._dir: Path | None = None
        self._ready = False
        self._started = 0.0
        self._ids = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, int] = {}

    def why_spawned(self, variant: VariantSpec, env: Mapping[str, str]) -> str:
        """Why a worker of ``variant`` in environment ``env`` (the worker's whole one) must be a
        fresh interpreter; "" when it may be forked. Environment variables and pinning act
        when libraries load, and a custom loader's worker may import less than the server."""
        if _stable(env) != _stable(self.env):
            return "its environment differs from the fork server's"
        if variant.cpus:
            return "it is pinned to CPUs"
        loader = variant.loader or DEFAULT_LOADER
        if not loader.startswith(self.loaders):
            return f"its loader {loader} is not one the fork server imported for"
        return ""

    def start(self) -> None:
        """Start the server process, in the background (its imports take seconds)."""
        if self.proc is not None or self.problem:
            return
        if not (sys.platform.startswith("linux") and hasattr(socket, "send_fds")):
            self.problem = "forking workers needs Linux and Python 3.9+"
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._dir = Path(tempfile.mkdtemp(prefix="sdperf-zygote-"))
        try:
            with (self._dir / "zygote.log").open("wb") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "pytest_sdperf.zygote_server", str(theirs.fileno()),
                     *self.preload], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, env=self.env, pass_fds=(theirs.fileno(),),
                    start_new_session=True)
        except OSError as exc:
            ours.close()
            self.problem = f"the fork server could not start: {exc}"
            return
        finally:
            theirs.close()
        self._sock, self._started = ours, time.monotonic()

    def launch(self, request: WorkerRequest, args: Sequence[str], env: Mapping[str, str], out: int,
               stdin: bool = False, reply: int | None = None) -> ForkedWorker | None:
        """Fork ``python -m pytest_sdperf.worker [--serve REPLY] ARGS`` with stdout and stderr
        to ``out`` (and a pipe as its stdin, when ``stdin``); None when it must be spawned."""
        if self.why_spawned(request.variant, env):
            self.spawned += 1
            return None
        self.start()
        if not self._await_ready():
            self.spawned += 1
            return None
        read_end, write_end = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), -1)
        fds = [read_end, out] + ([reply] if reply is not None else [])
        cuda = request.device.startswith("cuda")
        volatile = {k: env[k] for k in VOLATILE if k in env}
        answer = self._ask({"argv": list(args), "cwd": os.getcwd(), "cuda": cuda,
                            "volatile": volatile}, fds)
        os.close(read_end)
        if answer is None or "pid" not in answer:
            if answer is not None:
                self.refusals.append(str(answer.get("refused")))
            if write_end >= 0:
                os.close(write_end)
            self.spawned += 1
            return None
        self.forked += 1
        pipe = os.fdopen(write_end, "wb") if write_end >= 0 else None
        return ForkedWorker(self, int(answer["pid"]), list(args), pipe)

    def exit_status(self, pid: int, wait_s: float) -> int | None:
        """``pid``'s exit status once the server reaped it (waiting up to ``wait_s``)."""
        if pid not in self._exits:
            self._pump(wait_s)
        return self._exits.pop(pid, None)

    @property
    def alive(self) -> bool:
        """Whether the server can still answer (not failed, not exited, not closed)."""
        return self._sock is not None

    def note(self) -> str:
        """One line for the session's notes, or "" when the server was never needed."""
        if self.proc is None and not self.problem:
            return ""
        line = f"fork server: {self.forked} workers forked, {self.spawned} spawned"
        if self.problem:
            line += f"; {self.problem}"
        if self.refusals:
            line += f"; refused {len(self.refusals)}: {self.refusals[-1]}"
        return line

    def close(self) -> None:
        """End the server (forked workers still running are not its to end) and its folder."""
        self._lost("")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _await_ready(self) -> bool:
        """Wait for the imports, up to ``ready_s`` after the start; past it, give up on it."""
        self._pump(0.0)  # it may have said so long ago
        while self.alive and not self._ready:
            left = self._started + self.ready_s - time.monotonic()
            if left <= 0:
                self._lost(f"the fork server was not ready within {self.ready_s:g} s")
                break
            self._pump(left)
        return self._ready and self.alive

    def _ask(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any] | None:
        """Send a launch request; its answer, or None where the server is gone or silent."""
        assert self._sock is not None
        self._ids += 1
        ident = self._ids
        try:
            socket.send_fds(self._sock, [json.dumps({**message, "id": ident}).encode()], fds)
        except OSError as exc:
            self._lost(f"the fork server is gone ({exc})")
            return None
        deadline = time.monotonic() + REPLY_S
        while ident not in self._replies and self.alive:
            if time.monotonic() >= deadline:
                self._lost(f"the fork server did not answer within {REPLY_S:g} s")
                break
            self._pump(deadline - time.monotonic())
        return self._replies.pop(ident, None)

    def _pump(self, wait_s: float) -> None:
        """Take the server's records, waiting up to ``wait_s`` for the first."""
        while self._sock is not None:
            if not select.select([self._sock], [], [], max(0.0, wait_s))[0]:
                return
            wait_s = 0.0
            try:
                data = self._sock.recv(MAX_RECORD)
            except OSError:
                data = b""
            if not data:
                self._lost(self.problem or "the fork server exited" + self._log_tail())
                return
            self._take(json.loads(data))

    def _take(self, record: dict[str, Any]) -> None:
        if "exit" in record:
            self._exits[int(record["exit"])] = int(record["status"])
        elif "id" in record:
            self._replies[int(record["id"])] = record
        elif record.get("ready"):
            self._ready = True
        elif "failed" in record:
            self.problem = f"the fork server failed: {record['failed']}"

    def _lost(self, why: str) -> None:
        """Stop using the server, saying why ("" for a plain close)."""
        if why and not self.problem:
            self.problem = why
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if why and self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _log_tail(self) -> str:
        log = self._dir / "zygote.log" if self._dir else None
        tail = log.read_text(errors="replace").strip()[-300:] if log and log.exists() else ""
        return f" ({tail})" if tail else ""


class ForkedWorker:
    """A worker the fork server forked, with what the runner uses of ``subprocess.Popen``.

    ``returncode`` is None while it runs, and stays None where it ended while the server was
    gone (its status is lost; ``status_lost`` says so).
    """

    def __init__(self, zygote: Zygote, pid: int, args: list[str], stdin: IO[bytes] | None) -> None:
        self.pid = pid
        self.args = args
        self.stdin = stdin
        self.returncode: int | None = None
        self.status_lost = False
        self._zygote = zygote

    def poll(self) -> int | None:
        """The exit status if it has ended, else None."""
        self._ended(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for it to end (``subprocess.TimeoutExpired`` past ``timeout``); its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended(REAP_S if deadline is None else max(0.0, deadline - time.monotonic())):
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return self.returncode

    def _ended(self, wait_s: float) -> bool:
        if self.returncode is not None or self.status_lost:
            return True
        self.returncode = self._zygote.exit_status(self.pid, wait_s)
        if self.returncode is not None:
            return True
        if self._zygote.alive:
            return False
        if not _exists(self.pid):  # the server died: the child was reparented, and has ended
            self.status_lost = True
            return True
        time.sleep(min(wait_s, GONE_POLL_S))
        return False


def _stable(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in VOLATILE}


def _exists(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie no parent reaps has ended)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
