"""The machine key that names a baseline file: CPU model, ISA level, core count, GPU."""

from __future__ import annotations

import platform
import re
from dataclasses import asdict, dataclass
from typing import AbstractSet, Any

from .host import cpu_info, cpu_model, gpu_model, usable_cpus


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


def isa_level(flags: AbstractSet[str]) -> str:
    """The widest vector/matrix extension: amx, avx512, avx2, or the architecture's base."""
    if "amx_tile" in flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512-bf16" if "avx512_bf16" in flags else "avx512"
    if "avx2" in flags:
        return "avx2"
    return "base"


def this_machine() -> Machine:
    """Read the machine facts now."""
    info = cpu_info()
    flags = info.flags if info else frozenset()
    return Machine(platform.machine(), cpu_model(), isa_level(flags), len(usable_cpus()), gpu_model())
