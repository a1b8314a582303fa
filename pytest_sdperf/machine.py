"""The machine key that names a baseline file: CPU model, ISA level, core count, GPU."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Machine:
    """Facts about this machine that change performance figures."""

    arch: str
    cpu: str
    isa: str
    cores: int
    gpu: str | None

    @property
    def key(self) -> str:
        """A file-name-safe id, e.g. ``x86_64-amd-epyc-7b13-avx2-2c``."""
        parts = [self.arch, _slug(self.cpu), self.isa, f"{self.cores}c"]
        if self.gpu:
            parts.append(_slug(self.gpu))
        return "-".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {**asdict(self), "key": self.key}


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|processor|cpu|\d+-core", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40]


def _cpuinfo() -> tuple[str, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown-cpu", set()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    return (model.group(1).strip() if model else "unknown-cpu"), set(
        flags.group(1).split() if flags else ()
    )


def isa_level(flags: set[str]) -> str:
    """The widest vector/matrix extension: amx, avx512, avx2, or the architecture's base."""
    if "amx_tile" in flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512-bf16" if "avx512_bf16" in flags else "avx512"
    if "avx2" in flags:
        return "avx2"
    return "base"


def _gpu() -> str | None:
    """NVIDIA GPU model from the driver's proc files (no torch import)."""
    root = Path("/proc/driver/nvidia/gpus")
    for info in sorted(root.glob("*/information")) if root.is_dir() else []:
        found = re.search(r"^Model:\s*(.+)$", info.read_text(), re.M)
        if found:
            return found.group(1).strip()
    return None


def this_machine() -> Machine:
    """Read the machine facts now."""
    cpu, flags = _cpuinfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Machine(platform.machine(), cpu, isa_level(flags), int(cores or 1), _gpu())
