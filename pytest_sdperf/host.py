"""What this machine and interpreter are: CPU model and flags, usable CPUs and topology, the
GPU model, installed package versions.

The one place that reads ``/proc/cpuinfo``, the CPU topology under ``/sys``, the NVIDIA
driver's GPU list and package metadata. It imports nothing heavy and nothing else from pytest_sdperf, so every layer may ask
it. Usage::

    cpu_info().flags            # frozenset({'avx2', 'fma', ...})
    physical_cores(usable_cpus())
    package_version("torch")    # '2.5.1', or None where torch is not installed
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

CPUINFO = Path("/proc/cpuinfo")
CPU_SYS = Path("/sys/devices/system/cpu")
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says about the CPU (the first processor's lines; the clock: all)."""

    vendor: str = ""
    family: int | None = None
    model: int | None = None
    flags: frozenset[str] = frozenset()
    mhz: float | None = None  # the highest "cpu MHz" line: the current clock, not the maximum
    name: str = ""  # the "model name" line, e.g. "AMD EPYC 7B13"


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse /proc/cpuinfo text (x86 ``flags`` or Arm ``Features``)."""
    def first(name: str) -> str | None:
        found = re.search(rf"^{name}\s*:\s*(.*)$", text, re.M)
        return found.group(1).strip() if found else None

    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    family, model = first("cpu family"), first("model")
    return CpuInfo(
        vendor=first("vendor_id") or "",
        family=int(family) if family and family.isdigit() else None,
        model=int(model) if model and model.isdigit() else None,
        flags=frozenset((first("flags") or first("Features") or "").split()),
        mhz=max(mhz) if mhz else None,
        name=first("model name") or "",
    )


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo | None:
    """This machine's /proc/cpuinfo, read and parsed once per process; None where unreadable."""
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name: /proc/cpuinfo's, else the platform's, else ``unknown-cpu``."""
    info = cpu_info()
    if info is None:
        return platform.processor() or "unknown-cpu"
    return info.name or "unknown-cpu"


def gpu_model() -> str | None:
    """The first NVIDIA GPU's model from the driver's proc files (no torch import), or None."""
    root = NVIDIA_GPUS
    for info in sorted(root.glob("*/information")) if root.is_dir() else []:
        found = re.search(r"^Model:\s*(.+)$", info.read_text(), re.M)
        if found:
            return found.group(1).strip()
    return None


def usable_cpus() -> set[int]:
    """The CPUs this process may run on now (read each time: pinning changes it)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def core_groups(cpus: Iterable[int], sys_root: Path = CPU_SYS) -> dict[str, list[int]]:
    """``cpus`` grouped by the physical core they sit on (SMT siblings share one core).

    Keyed by the core's sibling list from sysfs; a CPU without topology files is its own core.
    """
    groups: dict[str, list[int]] = {}
    for cpu in sorted(cpus):
        topo = sys_root / f"cpu{cpu}" / "topology"
        key = str(cpu)
        for name in ("core_cpus_list", "thread_siblings_list"):
            with contextlib.suppress(OSError):
                key = (topo / name).read_text().strip()
                break
        groups.setdefault(key, []).append(cpu)
    return groups


def physical_cores(cpus: Iterable[int], sys_root: Path = CPU_SYS) -> int:
    """How many physical cores ``cpus`` span (at least 1)."""
    return max(1, len(core_groups(cpus, sys_root)))


def physical_cpus(cpus: Iterable[int] | None = None, sys_root: Path = CPU_SYS) -> list[int]:
    """The lowest CPU of each physical core among ``cpus`` (default: this process's CPUs)."""
    groups = core_groups(usable_cpus() if cpus is None else cpus, sys_root)
    return sorted(members[0] for members in groups.values())


def max_freq_khz(cpus: Iterable[int], sys_root: Path = CPU_SYS) -> int | None:
    """The highest ``cpuinfo_max_freq`` among ``cpus``; None without cpufreq (VMs often)."""
    found = []
    for cpu in cpus:
        path = sys_root / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq"
        with contextlib.suppress(OSError, ValueError):
            found.append(int(path.read_text()))
    return max(found) if found else None


def mem_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Memory the kernel could give without swapping (MemAvailable), or None where unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_status_bytes(field: str, pid: int | str = "self") -> int | None:
    """A memory field of ``/proc/PID/status`` (``VmHWM``, ``VmRSS``, ``RssFile``...: reported
    in kB) in bytes, or None where the file or the field is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None where it is not installed."""
    try:
        return importlib.metadata.version(name)  # looked up at call time: tests patch it
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions by distribution name; packages not installed are left out."""
    found = {name: package_version(name) for name in names}
    return {name: v for name, v in found.items() if v is not None}


def python_version() -> str:
    """This interpreter's version, e.g. ``3.11.9``."""
    return sys.version.split()[0]


def source_commit(root: Path) -> str | None:
    """The commit under test: ``$GITHUB_SHA`` in GitHub Actions, else ``git rev-parse HEAD``
    in ``root``; None outside a git checkout. Shards of one run must agree on it."""
    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    head = done.stdout.strip()
    return head if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", head) else None


def cpu_list(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (the worker's ``parse_cpus`` reads it back)."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
