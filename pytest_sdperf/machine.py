"""The machine key that names a baseline file: CPU model, ISA level, core count, GPU.

Where the CPU's model name names no part (a virtual machine's "AMD EPYC"), the key adds the
microarchitecture (archspec's name for the host: ``zen``, ``zen2``, ``zen3``, ``icelake``...):
under one such name these machines were Zen 1 (2.0 GHz, two 128-bit FMA units) on one day and
Zen 2 or later (2.45 GHz, 256-bit) on another, and paired ratios between unlike variants moved
by up to 22% between them (OpenVINO's int8 UNet against torch's float32), which no gate can tell
from a regression.
"""

from __future__ import annotations

import platform
import re
from dataclasses import asdict, dataclass
from typing import AbstractSet, Any, Iterable

from .host import cpu_info, cpu_model, gpu_model, usable_cpus


@dataclass(frozen=True)
class Machine:
    """Facts about this machine that change performance figures."""

    arch: str
    cpu: str
    isa: str
    cores: int
    gpu: str | None
    uarch: str | None = None  # archspec's microarchitecture name; None where unknown

    @property
    def key(self) -> str:
        """A file-name-safe id, e.g. ``x86_64-amd-epyc-7b13-avx2-2c``, or with the
        microarchitecture where the model name names no part: ``x86_64-amd-epyc-zen2-avx2-2c``."""
        return self._key(with_uarch=True)

    @property
    def legacy_key(self) -> str | None:
        """The key as it was before it named the microarchitecture, where that differs."""
        old = self._key(with_uarch=False)
        return old if old != self.key else None

    def legacy_note(self, keys: Iterable[str]) -> str:
        """What to say where ``keys`` (baseline files found) hold this machine's legacy key."""
        if self.legacy_key is None or self.legacy_key not in keys:
            return ""
        return (f"; {self.legacy_key}.json has this machine's key as it was before keys named the "
                f"microarchitecture of a CPU whose model name ({self.cpu!r}) names no part, and "
                f"it is not compared: if it was recorded on a {self.uarch} CPU, rename it to "
                f"{self.key}.json")

    def _key(self, with_uarch: bool) -> str:
        cpu = _slug(self.cpu)
        uarch = _slug(self.uarch or "") if with_uarch and not _names_a_part(self.cpu) else ""
        parts = [self.arch, cpu, uarch if uarch not in cpu.split("-") else "", self.isa,
                 f"{self.cores}c"]
        if self.gpu:
            parts.append(_slug(self.gpu))
        return "-".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {**asdict(self), "key": self.key}


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|processor|cpu|\d+-core", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40]


def _names_a_part(cpu: str) -> bool:
    """Whether a CPU model name carries a model number ("AMD EPYC 7B13", "Xeon Platinum 8480+"),
    not a clock alone ("Intel(R) Xeon(R) CPU @ 2.20GHz") or nothing ("AMD EPYC")."""
    return bool(re.search(r"\d", re.sub(r"@?\s*[\d.]+\s*[gm]hz", "", cpu, flags=re.I)))


def isa_level(flags: AbstractSet[str]) -> str:
    """The widest vector/matrix extension: amx, avx512, avx2, or the architecture's base."""
    if "amx_tile" in flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512-bf16" if "avx512_bf16" in flags else "avx512"
    if "avx2" in flags:
        return "avx2"
    return "base"


def microarchitecture() -> str | None:
    """The host CPU's microarchitecture as archspec names it (``zen``, ``zen2``,
    ``skylake_avx512``, ``neoverse_n1``...), or None where archspec is missing or knows only the
    generic architecture."""
    try:
        import archspec.cpu
    except ImportError:
        return None
    try:
        host = archspec.cpu.host()
    except Exception:  # archspec reads /proc/cpuinfo or sysctl; an odd host must not stop a run
        return None
    return None if host.vendor == "generic" else str(host.name)


def this_machine() -> Machine:
    """Read the machine facts now."""
    info = cpu_info()
    flags = info.flags if info else frozenset()
    return Machine(platform.machine(), cpu_model(), isa_level(flags), len(usable_cpus()),
                   gpu_model(), microarchitecture())
