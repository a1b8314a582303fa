"""System-environment variants: allocator preload, Intel OpenMP, thread count, CPU pinning
(reference B).

No code change to the pipeline: each sets the worker's environment before its process
starts (``env``) or pins the worker before anything heavy is imported (``cpus``). Backend
``any``, so they stack on any pipeline variant: ``env-jemalloc+torch-bf16``. The worker
reports what it really ran under (LD_PRELOAD, MALLOC_CONF, OMP_NUM_THREADS, affinity, torch
threads, the allocator mapped into it) with every measurement.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from pathlib import Path

from ..host import cpu_list, physical_cpus
from .registry import VariantError, VariantPattern, VariantRegistry, VariantSpec

MODULE = "pytest_sdperf.variants.system_family"
# Reference B's MALLOC_CONF, exactly (its write-up's stray space after "dirty_decay_ms:"
# dropped), key by key with what jemalloc does with it.
JEMALLOC_SETTINGS = (
    ("oversize_threshold:1", "every large allocation (past the 14 KiB small size classes) "
                             "comes from one dedicated arena, not the thread's own"),
    ("background_thread:true", "jemalloc's own threads purge unused pages, not the threads "
                               "that call free"),
    ("metadata_thp:auto", "jemalloc's metadata moves to transparent huge pages once it is "
                          "large (fewer TLB misses)"),
    ("dirty_decay_ms:60000", "freed (dirty) pages are kept for reuse, then purged over about "
                             "60 s (MADV_FREE where it can)"),
    ("muzzy_decay_ms:60000", "lazily purged (muzzy) pages go back to the kernel over about "
                             "60 s (MADV_DONTNEED)"),
)
JEMALLOC_CONF = ",".join(setting for setting, _ in JEMALLOC_SETTINGS)
LIB_DIRS = ("/usr/lib/{multiarch}", "/lib/{multiarch}", "/usr/lib64", "/usr/lib",
            "/usr/local/lib")
ALLOCATORS = {
    # variant: (library file, Debian/Ubuntu package)
    "env-jemalloc": ("libjemalloc.so.2", "libjemalloc2"),
    "env-tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"),
}
# Same-valued settings compose fine; different thread counts clash on OMP_NUM_THREADS.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


IOMP = "libiomp5.so"
# libiomp5 runs one thread per hardware thread by default; one per core is reference B's
# OMP_NUM_THREADS=<physical cores>, said without OMP_NUM_THREADS, so env-threads-N still stacks.
# KMP_BLOCKTIME=1 (ms; Intel's setting for PyTorch, as intel-extension-for-pytorch's launcher
# sets it): by default libiomp5's threads spin 200 ms after each parallel region, which stalls
# whatever runs next on the cores, the paired reference included: with it, env-iomp's paired
# ratios spread over 0.69-1.41 in one run here (2026-12-03), against +-5% for the others.
IOMP_ENV = {"KMP_HW_SUBSET": "1t", "KMP_BLOCKTIME": "1"}


def _multiarch() -> str:
    return str(sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")


def find_library(filename: str) -> Path | None:
    """The first ``filename`` in the usual library folders (and $CONDA_PREFIX/lib), or None."""
    dirs = [d.format(multiarch=_multiarch()) for d in LIB_DIRS]
    if os.environ.get("CONDA_PREFIX"):
        dirs.insert(0, os.path.join(os.environ["CONDA_PREFIX"], "lib"))
    for folder in dirs:
        path = Path(folder) / filename
        if path.is_file():
            return path
    return None


def library_path(variant: str) -> str:
    """Where the variant's allocator is, or where Debian would put it (then the check fails)."""
    filename = ALLOCATORS[variant][0]
    found = find_library(filename)
    return str(found or Path("/usr/lib") / _multiarch() / filename)


def _missing_reason(variant: str) -> str | None:
    filename, package = ALLOCATORS[variant]
    if find_library(filename) is not None:
        return None
    return (f"{variant} preloads {filename}, which is not installed here; install it with "
            f"'apt-get install -y {package}' (Debian/Ubuntu) or "
            f"'conda install -c conda-forge {variant.split('-')[1]}'")


def iomp_path() -> Path | None:
    """libiomp5.so from the intel-openmp package (in this interpreter's prefix), conda, or the
    system's (intel-mkl, as reference B); None when there is none."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = Path(prefix) / "lib" / IOMP
        if path.is_file():
            return path
    return find_library(IOMP)


def check_iomp() -> str | None:
    """Availability probe: is libiomp5.so installed?"""
    if iomp_path() is not None:
        return None
    return (f"env-iomp preloads {IOMP}, which is not installed here; install it with "
            "'pip install intel-openmp' (in this environment), or the system's intel-mkl")


def iomp_spec() -> VariantSpec:
    """env-iomp: Intel's OpenMP runtime preloaded, one thread per physical core (reference B)."""
    lib = str(iomp_path() or Path(sys.prefix) / "lib" / IOMP)
    return VariantSpec(
        name="env-iomp", family="system", backend="any",
        env={"LD_PRELOAD": lib, **IOMP_ENV}, exclusive=("openmp",),
        description=f"Intel OpenMP (libiomp5) through LD_PRELOAD ({lib}), one thread per physical "
                    "core (KMP_HW_SUBSET=1t), KMP_BLOCKTIME=1; stacks with env-jemalloc, env-threads-N, env-pinned",
        checks=(f"{MODULE}:check_iomp",),
    )


def check_jemalloc() -> str | None:
    """Availability probe: is libjemalloc.so.2 installed?"""
    return _missing_reason("env-jemalloc")


def check_tcmalloc() -> str | None:
    """Availability probe: is libtcmalloc_minimal.so.4 installed?"""
    return _missing_reason("env-tcmalloc")


def threads_variant(count: int) -> VariantSpec:
    """``env-threads-N``: OMP_NUM_THREADS and MKL_NUM_THREADS set to N (torch follows them)."""
    if count < 1:
        raise VariantError(f"env-threads-{count}: the thread count must be 1 or more")
    return VariantSpec(
        name=f"env-threads-{count}", family="system", backend="any",
        description=f"OMP_NUM_THREADS={count} (torch's intra-op threads); any env-threads-N works",
        env={var: str(count) for var in THREAD_VARS},
        # Fewer threads make the same image; only latency moves, which is the point.
    )


def threads_spec(name: str, match: re.Match[str]) -> VariantSpec:
    """The ``env-threads-N`` pattern's factory."""
    return threads_variant(int(match.group(1)))


def pinned_spec(name: str, match: re.Match[str]) -> VariantSpec:
    """``env-pinned-A`` or ``env-pinned-A-B``: the worker pinned to CPUs A..B."""
    lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
    if hi < lo:
        raise VariantError(f"{name}: CPU range {lo}-{hi} is empty")
    return VariantSpec(
        name=name, family="system", backend="any", cpus=f"{lo}-{hi}" if hi > lo else str(lo),
        description=f"worker pinned to CPUs {lo}-{hi} (sched_setaffinity, as taskset does)",
        checks=(f"{MODULE}:check_pinned_cpus",),
    )


def check_pinned_cpus() -> str | None:
    """Pinning needs sched_setaffinity (Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        return "env-pinned needs sched_setaffinity (Linux); this platform has none"
    return None


def _allocator_spec(variant: str) -> VariantSpec:
    """env-jemalloc (with reference B's MALLOC_CONF, ``JEMALLOC_SETTINGS``) or env-tcmalloc.

    Their LD_PRELOAD goes before the user's own (``registry.merge_env``) and joins other
    parts' preloads in a composition; the two allocators share the exclusive group
    ``allocator``: one process has one malloc.
    """
    lib = library_path(variant)
    env = {"LD_PRELOAD": lib}
    if variant == "env-jemalloc":
        env["MALLOC_CONF"] = JEMALLOC_CONF
    kind = variant.split("-")[1]
    return VariantSpec(
        name=variant, family="system", backend="any", env=env, exclusive=("allocator",),
        description=f"{kind} through LD_PRELOAD ({lib}, before the user's own)"
                    + (f", MALLOC_CONF={JEMALLOC_CONF} (reference B)" if kind == "jemalloc"
                       else ""),
        checks=(f"{MODULE}:check_{kind}",),
        # Another allocator returns the same numbers; peak RSS moves by design (jemalloc
        # keeps freed pages up to 60 s in that MALLOC_CONF, longer than a test's calls).
        thresholds={"memory_pct": 30.0},
    )


def register(registry: VariantRegistry) -> None:
    """Register env-jemalloc, env-tcmalloc, env-iomp, env-threads-1 (+ env-threads-N),
    env-pinned."""
    for variant in ALLOCATORS:
        registry.add(_allocator_spec(variant))
    registry.add(iomp_spec())
    registry.add_pattern(VariantPattern(
        regex=r"env-threads-(\d+)", factory=threads_spec, shown="env-threads-N",
        description="OMP_NUM_THREADS=N for any N"))
    registry.add(threads_variant(1))
    physical = physical_cpus()
    registry.add(VariantSpec(
        name="env-pinned", family="system", backend="any", cpus=cpu_list(physical),
        description=f"worker pinned to one CPU per physical core ({cpu_list(physical)}), like "
                    "'numactl -C'; env-pinned-A-B pins to CPUs A..B",
        checks=(f"{MODULE}:check_pinned_cpus",),
    ))
    registry.add_pattern(VariantPattern(
        regex=r"env-pinned-(\d+)(?:-(\d+))?", factory=pinned_spec, shown="env-pinned-A-B",
        description="the worker pinned to CPUs A..B"))
