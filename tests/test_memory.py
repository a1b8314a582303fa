"""The memory figures: anonymous allocations count, pages mapped from files do not."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_sdperf.measure.memory import common_figure, gated_figure, peak_rss_of

MIB = 2**20
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


@linux_only
def test_an_allocation_held_in_the_call_counts() -> None:
    rss = peak_rss_of(lambda: np.ones(200 * MIB // 8).sum())
    assert rss.before and rss.peak and rss.peak_anon is not None
    assert rss.peak - rss.before > 190 * MIB
    rest = peak_rss_of(lambda: None)
    assert rest.peak_anon is not None
    assert 190 * MIB < rss.peak_anon - rest.peak_anon < 260 * MIB


@linux_only
def test_pages_of_a_mapped_file_count_in_rss_but_not_in_peak_anon(tmp_path: Path) -> None:
    """As a model's memory-mapped weights or a shared library's code: mapped before the call and
    still mapped after it. (A mapping opened and closed inside the call would count in peak_anon:
    the file-backed RSS is read after the call.)"""
    path = tmp_path / "weights.bin"
    path.write_bytes(np.random.default_rng(0).bytes(128 * MIB))
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        views = [np.frombuffer(m, dtype=np.uint8)]
        rest = peak_rss_of(lambda: None)
        mapped = peak_rss_of(lambda: int(views[0][::4096].sum()))  # touches every page
        views.clear()  # the map closes only when no array points into it
    assert rest.peak is not None and mapped.peak is not None
    assert rest.peak_anon is not None and mapped.peak_anon is not None
    assert mapped.peak - rest.peak > 100 * MIB  # the mapped pages were resident
    assert abs(mapped.peak_anon - rest.peak_anon) < 32 * MIB


def test_gated_figure_prefers_cuda_then_anonymous_then_rss() -> None:
    assert gated_figure({"peak_rss": 3, "peak_anon": 2, "cuda_peak": 1}) == ("cuda_peak", 1)
    assert gated_figure({"peak_rss": 3, "peak_anon": 2, "cuda_peak": None}) == ("peak_anon", 2)
    assert gated_figure({"peak_rss": 3}) == ("peak_rss", 3)
    assert gated_figure({"peak_rss": None}) is None


def test_common_figure_falls_back_to_what_an_older_baseline_has() -> None:
    assert common_figure({"peak_rss": 5, "peak_anon": 4}, {"peak_rss": 3, "peak_anon": 2}) == ("peak_anon", 4, 2)
    assert common_figure({"peak_rss": 5, "peak_anon": 4}, {"peak_rss": 3}) == ("peak_rss", 5, 3)
    assert common_figure({"peak_anon": 4}, {"peak_rss": 3}) is None


@linux_only
def test_memory_an_allocator_kept_is_released_before_the_call() -> None:
    """jemalloc as env-jemalloc preloads it (freed pages never decay): without the purge, the
    pages freed before the call would count in its peak."""
    from pytest_sdperf.variants.system_family import find_library

    lib = find_library("libjemalloc.so.2")
    if lib is None:
        pytest.skip("libjemalloc.so.2 is not installed (apt install libjemalloc2)")
    code = (
        "import numpy as np\n"
        "from pytest_sdperf.host import proc_status_bytes\n"
        "from pytest_sdperf.measure.memory import peak_rss_of, release_free_memory\n"
        "a = np.ones(300 * 2**20 // 8); del a\n"
        "kept = proc_status_bytes('RssAnon')\n"
        "print(kept, peak_rss_of(lambda: None).peak_anon, release_free_memory())\n"
    )
    # decay off: this jemalloc keeps every freed page (reference B's own conf gives pages back
    # after 60 s, and at once for allocations this large: oversize_threshold)
    env = {**os.environ, "LD_PRELOAD": str(lib), "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split(maxsplit=2)
    kept, peak_anon = int(out[0]), int(out[1])
    assert "jemalloc" in out[2]
    assert kept > 300 * MIB  # jemalloc kept the freed array
    assert peak_anon < kept - 250 * MIB
