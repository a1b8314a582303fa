"""Peak memory of one call: memray's peak heap, the peak RSS, and CUDA's peak allocation.

Never used while timing: tracers slow the call they watch.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class MemoryStats:
    """Bytes. ``peak_rss`` sees native allocations (OpenVINO, oneDNN) that a heap tracer of
    Python's allocators might miss; ``peak_heap`` is memray's peak of tracked allocations
    during the call (it sees malloc from native code too); ``cuda_peak`` is set on CUDA."""

    peak_rss: int | None
    peak_heap: int | None
    baseline_rss: int | None
    cuda_peak: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryStats:
        """The inverse of ``to_dict``."""
        return cls(**{k: data.get(k) for k in ("peak_rss", "peak_heap", "baseline_rss", "cuda_peak")})

    def gated_value(self) -> tuple[str, int] | None:
        """The figure the memory gate compares: CUDA peak on GPU, else peak RSS."""
        if self.cuda_peak is not None:
            return "cuda_peak", self.cuda_peak
        if self.peak_rss is not None:
            return "peak_rss", self.peak_rss
        return None


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_of(call: Callable[[], Any]) -> tuple[int | None, int | None]:
    """(RSS before, peak RSS during) ``call``; (None, None) where the OS cannot tell."""
    if not _reset_peak_rss():
        call()
        return None, None
    before = _status_kib("VmRSS")
    call()
    return before, _status_kib("VmHWM")


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
