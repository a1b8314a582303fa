"""The fork server's own process: ``python -m pytest_sdperf.zygote_server FD [ITEM ...]``.

It imports each ITEM (``module``, or ``module:name`` to load a lazy package's member; default:
``zygote.PRELOAD``, passed by the parent), says ready, then forks a worker for each request.
FD is one end of a Unix ``SOCK_SEQPACKET`` socket pair; one JSON object a record:

- server -> parent: ``{"ready": true}`` once imported, or ``{"failed": why}`` and it exits.
- parent -> server: ``{"id": n, "argv": [...], "cwd": ..., "cuda": bool, "volatile": {...}}``
  with the file descriptors [stdin, output] (and the ``--serve`` reply pipe's write end).
- server -> parent: ``{"id": n, "pid": pid}``, or ``{"id": n, "refused": why}``; later
  ``{"exit": pid, "status": code}`` for each child it reaped (Popen's convention: -N = signal N).

A child starts its own session (the parent's ``os.killpg(pid, SIGKILL)`` reaches it), takes the
descriptors as its stdin, stdout and stderr, and runs ``pytest_sdperf.worker.main``. The server
never runs a torch op, and refuses any fork while it has a second thread (a thread pool forked
half-way breaks the child). It imports nothing from pytest_sdperf at its top, so the parent's
side (``zygote.py``) may use its constants cheaply. When the parent closes its end, the server
exits; children still running are left to run.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import select
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

# Variables that say where pytest is, not how libraries load: they may differ between the
# server and a worker, and are set in the child.
VOLATILE = ("PYTEST_CURRENT_TEST",)
REAP_S = 0.5
MAX_RECORD = 65536


def serve(sock: socket.socket, preload: Sequence[str]) -> int:
    """Import ``preload``, say ready, then fork a worker for each request until the parent
    closes its end (the module docstring tells the records)."""
    try:
        for item in preload:
            module, _, name = item.partition(":")
            loaded = importlib.import_module(module)
            if name:
                getattr(loaded, name)  # a lazy package (diffusers, transformers) loads it now
        _quiesce()
        _send(sock, {"ready": True})
    except Exception as exc:
        traceback.print_exc()
        _send(sock, {"failed": f"{type(exc).__name__}: {exc}"})
        return 1
    children: dict[int, int] = {}  # pid -> its pidfd, or -1
    while True:
        watched = [sock.fileno(), *(fd for fd in children.values() if fd >= 0)]
        readable = select.select(watched, [], [], REAP_S)[0]
        if not _reap(sock, children):
            return 0
        if sock.fileno() in readable:
            data, fds, _, _ = socket.recv_fds(sock, MAX_RECORD, 3)
            if not data:
                return 0
            _answer(sock, json.loads(data), fds, children)


def _quiesce() -> None:
    """End the thread pools that libraries start when they load (OpenBLAS's, of numpy and
    scipy), as their own fork handlers would: a child starts them again when it needs them."""
    maps = Path("/proc/self/maps").read_text().splitlines()
    for path in {line.split()[-1] for line in maps if "openblas" in line.rpartition("/")[2]}:
        shutdown = getattr(ctypes.CDLL(path), "blas_thread_shutdown_", None)
        if shutdown is not None:
            shutdown()


def _refusal(request: Mapping[str, Any]) -> str:
    """Why this server may not fork now ("" when it may)."""
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError as exc:
        return f"cannot count the fork server's threads ({exc})"
    if threads != 1:
        return f"the fork server is not single-threaded ({threads} threads)"
    if request.get("cuda") and "libcuda.so" in Path("/proc/self/maps").read_text():
        return "the fork server has loaded CUDA's driver, which a forked child cannot use"
    return ""


def _answer(sock: socket.socket, request: dict[str, Any], fds: list[int],
            children: dict[int, int]) -> None:
    why = _refusal(request)
    pid = 0
    if not why:
        try:
            pid = _fork(request, fds, sock, children)
        except OSError as exc:
            why = f"fork failed: {exc}"
    for fd in fds:  # the child's now; a copy kept here would hold the reply pipe open
        os.close(fd)
    _send(sock, {"id": request["id"], "refused": why} if why else {"id": request["id"], "pid": pid})


def _fork(request: dict[str, Any], fds: list[int], sock: socket.socket, children: dict[int, int]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    started_r, started_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(started_r)
        os.close(started_w)
        raise
    if pid == 0:
        os.close(started_r)
        _child(request, fds, started_w, sock, [fd for fd in children.values() if fd >= 0])
    os.close(started_w)
    os.read(started_r, 1)  # once it has its own session, killpg(pid) reaches it
    os.close(started_r)
    try:
        children[pid] = os.pidfd_open(pid)
    except (OSError, AttributeError):
        children[pid] = -1
    return pid


def _child(request: dict[str, Any], fds: list[int], started: int, sock: socket.socket,
           pidfds: list[int]) -> NoReturn:
    """The forked worker: its own session, its descriptors, then the worker's ``main``."""
    code = 1
    try:
        os.setsid()
        os.write(started, b"1")
        os.close(started)
        sock.close()
        for fd in pidfds:  # the other children's
            os.close(fd)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(fds[0], 0)
        os.dup2(fds[1], 1)
        os.dup2(fds[1], 2)
        os.close(fds[0])
        os.close(fds[1])
        for key in VOLATILE:
            os.environ.pop(key, None)
        os.environ.update(request.get("volatile") or {})
        os.chdir(request["cwd"])
        argv = [str(a) for a in request["argv"]]
        if len(fds) > 2:
            argv = ["--serve", str(fds[2]), *argv]
        from . import worker

        sys.argv = [worker.__file__, *argv]
        code = worker.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _reap(sock: socket.socket, children: dict[int, int]) -> bool:
    """Report every child that has exited; False when the parent is gone."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        pidfd = children.pop(pid, -1)
        if pidfd >= 0:
            os.close(pidfd)
        if not _send(sock, {"exit": pid, "status": os.waitstatus_to_exitcode(status)}):
            return False
    return True


def _send(sock: socket.socket, record: dict[str, Any]) -> bool:
    try:
        sock.send(json.dumps(record).encode())
        return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2:]))
