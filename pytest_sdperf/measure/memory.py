"""Peak memory of one call: the peak anonymous memory, the peak RSS, memray's peak heap, and
CUDA's peak allocation.

The CPU gate compares ``peak_anon``: the peak RSS less the pages mapped from files. Those
file-backed pages (shared libraries, memory-mapped files) are not memory the pipeline allocated,
the kernel can drop and re-read them, and how many of them a process holds depends on how the
files came to be on the disk: ``import torch`` held 433 MiB of file-backed RSS in a venv
installed minutes before, against 225-236 MiB in venvs installed a day or more before
(anonymous: 280 MiB in all), which moved a whole suite's peak RSS by about 275 MiB with no
change to the code.

Never used while timing: tracers slow the call they watch.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, TypeGuard

from ..host import proc_status_bytes

#: The figures the memory gate can compare, in order of preference: the first one both the run
#: and the baseline have is compared (baselines recorded before ``peak_anon`` have ``peak_rss``).
GATED_FIGURES = ("cuda_peak", "peak_anon", "peak_rss")
_JEMALLOC_ALL_ARENAS = 4096  # MALLCTL_ARENAS_ALL: "arena.4096.purge" purges every arena


@dataclass(frozen=True)
class MemoryStats:
    """Bytes. ``peak_rss`` sees native allocations (OpenVINO, oneDNN) that a heap tracer of
    Python's allocators might miss; ``peak_anon`` is ``peak_rss`` less the file-backed RSS
    (``file_rss``, read after the call); ``peak_heap`` is memray's peak of tracked allocations
    during the call (it sees malloc from native code too); ``cuda_peak`` is set on CUDA."""

    peak_rss: int | None
    peak_heap: int | None
    baseline_rss: int | None
    cuda_peak: int | None = None
    peak_anon: int | None = None
    file_rss: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryStats:
        """The inverse of ``to_dict``."""
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


def gated_figure(memory: Mapping[str, Any]) -> tuple[str, int] | None:
    """The figure a memory gate compares and a report shows: CUDA peak on GPU, else the peak
    anonymous memory, else (older records) the peak RSS."""
    for name in GATED_FIGURES:
        value = memory.get(name)
        if _positive(value):
            return name, int(value)
    return None


def common_figure(
    current: Mapping[str, Any], baseline: Mapping[str, Any]
) -> tuple[str, int, int] | None:
    """(name, current, baseline) of the first gated figure both sides have, or None."""
    for name in GATED_FIGURES:
        a, b = current.get(name), baseline.get(name)
        if _positive(a) and _positive(b):
            return name, int(a), int(b)
    return None


def _positive(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class RssPeak:
    """Bytes: RSS before the call, its peak during it, and the file-backed RSS after it."""

    before: int | None
    peak: int | None
    file_after: int | None

    @property
    def peak_anon(self) -> int | None:
        """The peak less the file-backed pages: exact when those did not change during the
        call (the call was warmed up, so its code is mapped); an underestimate by as much as
        they grew during it, an overestimate by as much as a mapping closed in it held."""
        if self.peak is None or self.file_after is None:
            return None
        return max(self.peak - self.file_after, 0)


def release_free_memory() -> list[str]:
    """Ask the process's allocators to hand freed pages back to the OS, so a call's peak starts
    from its live memory rather than from whatever an allocator kept from earlier calls (a
    preloaded jemalloc with reference B's ``dirty_decay_ms:-1`` keeps every freed page: its
    peak RSS over one call varied from 530 to 752 MiB between identical workers). Returns the
    allocators asked."""
    try:
        process = ctypes.CDLL(None)
    except OSError:
        return []
    asked = []
    mallctl = getattr(process, "mallctl", None)  # jemalloc, preloaded
    if mallctl is not None:
        mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_size_t]
        if mallctl(f"arena.{_JEMALLOC_ALL_ARENAS}.purge".encode(), None, None, None, 0) == 0:
            asked.append("jemalloc")
    release = getattr(process, "MallocExtension_ReleaseFreeMemory", None)  # tcmalloc, preloaded
    if release is not None:
        release()
        asked.append("tcmalloc")
    trim = getattr(process, "malloc_trim", None)  # glibc
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim(0)
        asked.append("glibc")
    return asked


def peak_rss_of(call: Callable[[], Any]) -> RssPeak:
    """RSS figures around ``call`` (freed memory released first); None where the OS cannot
    tell (not Linux)."""
    release_free_memory()
    if not _reset_peak_rss():
        call()
        return RssPeak(None, None, None)
    before = proc_status_bytes("VmRSS")
    call()
    return RssPeak(before, proc_status_bytes("VmHWM"), proc_status_bytes("RssFile"))


def memray_peak_of(call: Callable[[], Any], keep_to: Path | None = None) -> int | None:
    """memray's peak heap during ``call``; None when memray is not installed."""
    try:
        import memray
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "capture.bin"
        with memray.Tracker(str(path), native_traces=False, follow_fork=False):
            call()
        peak = int(memray.FileReader(str(path)).metadata.peak_memory)
        if keep_to is not None:
            keep_to.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, keep_to)
    return peak


def cuda_peak_of(call: Callable[[], Any]) -> int:
    """torch.cuda's peak allocated bytes during ``call``."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())
