"""The glibc malloc thresholds the workers run under (``--sdperf-glibc-malloc``).

glibc's malloc serves a block above its mmap threshold (128 KiB at first) with a fresh mmap,
whose pages fault in zeroed on first touch, and raises that threshold (up to 32 MiB) when such
a block is freed; it also hands the top of its heap back to the kernel above a trim threshold
that moves with it. Where a pipeline allocates large temporaries every call (the default
attention's score matrices, VAE tiles), whether those thresholds settle so that the call reuses
memory or faults it in again depends on the order of allocations and frees in that process,
so one variant runs in one of two speeds chosen at process start. Measured here
(2026-12-06, the tiny model, default attention over SDPA timed alternately in one process, 12
rounds a process): with glibc's defaults, per-process median ratios of 1.07-1.11 in 6 of 18
processes and 1.25-1.41 in the other 12; with both thresholds fixed, 1.02-1.10 in all 16. In
the committed AVX-512 baseline, that test's paired ratio had read 1.28-1.32 in four sessions
and 1.05 in a fifth.

``fixed`` (the default) sets both thresholds (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``: glibc then serves blocks under 1 GiB from its heaps where they fit and
keeps freed memory for reuse), so every worker, the paired reference's included, runs in one mode; a value
the user set is kept. ``dynamic`` leaves glibc's defaults, as a plain ``python`` has them. The
allocator variants (``env-jemalloc``, ``env-tcmalloc``) replace glibc's malloc, so neither
setting touches them: their speedup is over the reference under this setting.

A baseline entry records the setting its figures were measured under (``INFO_KEY`` in its
``info``; an entry without it was measured with ``dynamic``). The gate does not compare latency
or memory across settings: such an entry is recorded again (``gate.Gate``).
"""

from __future__ import annotations

import os
from typing import Mapping, MutableMapping

FIXED, DYNAMIC = "fixed", "dynamic"
MODES = (FIXED, DYNAMIC)
#: What ``fixed`` sets (glibc's environment names for its mallopt parameters).
FIXED_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}
#: Every variable that sets the thresholds (the worker's environment report shows their values).
ENV_KEYS = (*FIXED_ENV, "GLIBC_TUNABLES")
#: The key of a measurement's (and a baseline entry's) ``info`` that names its setting.
INFO_KEY = "glibc_malloc"


def apply(mode: str, environ: MutableMapping[str, str] | None = None) -> tuple[str, ...]:
    """Give ``environ`` (default ``os.environ``, which every worker inherits) the setting's
    variables; a variable already set (the user's own) is kept. ``dynamic`` changes nothing.
    Returns the variables it set (``withdraw`` removes them when the session ends)."""
    target = os.environ if environ is None else environ
    added = tuple(key for key in FIXED_ENV if key not in target) if mode == FIXED else ()
    for key in added:
        target[key] = FIXED_ENV[key]
    return added


def withdraw(added: tuple[str, ...], environ: MutableMapping[str, str] | None = None) -> None:
    """Remove the variables ``apply`` set (and nobody changed since), so that a process that
    goes on after the session (an in-process pytest run, a test of this plugin) keeps its own
    environment."""
    target = os.environ if environ is None else environ
    for key in added:
        if target.get(key) == FIXED_ENV[key]:
            del target[key]


def mode_of(environ: Mapping[str, str]) -> str:
    """The setting a process started with ``environ`` runs under: ``fixed`` where either
    threshold is set (as a variable or a glibc tunable; glibc then stops moving them), else
    ``dynamic``."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    if any(environ.get(key) for key in FIXED_ENV) or any(
            name in tunables for name in ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")):
        return FIXED
    return DYNAMIC


def recorded_mode(info: Mapping[str, object]) -> str:
    """The setting a baseline entry's figures were measured under (none recorded: ``dynamic``,
    as every entry written before the setting existed)."""
    return str(info.get(INFO_KEY) or DYNAMIC)
