"""System-environment variants: allocator preload, threads, pinning, and their skip reasons.

The end-to-end test runs one composed environment variant through the real worker on a
small workload and checks what the worker reports it ran under.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_sdperf.host import cpu_list
from pytest_sdperf.variants import system_family
from pytest_sdperf.variants.availability import unavailable_reason
from pytest_sdperf.variants.builtin import register_builtin
from pytest_sdperf.variants.registry import VariantRegistry

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def registry() -> VariantRegistry:
    """The built-in variants."""
    reg = VariantRegistry()
    register_builtin(reg)
    return reg


def test_cpu_list_round_trips_through_the_worker_parser() -> None:
    from pytest_sdperf.worker import parse_cpus

    assert cpu_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert parse_cpus(cpu_list([0, 1, 2, 5, 7, 8])) == {0, 1, 2, 5, 7, 8}


def test_physical_cpus_keeps_one_cpu_per_core() -> None:
    cpus = system_family.physical_cpus()
    assert cpus and set(cpus) <= os.sched_getaffinity(0)


@pytest.mark.parametrize(("variant", "package"), [("env-jemalloc", "libjemalloc2"),
                                                   ("env-tcmalloc", "libtcmalloc-minimal4")])
def test_missing_allocator_skips_with_the_install_command(
    registry: VariantRegistry, monkeypatch: pytest.MonkeyPatch, variant: str, package: str
) -> None:
    monkeypatch.setattr(system_family, "find_library", lambda filename: None)
    reason = unavailable_reason(registry.get(variant))
    assert reason is not None and f"apt-get install -y {package}" in reason


def test_allocator_library_is_found_where_debian_puts_it(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libjemalloc.so.2").write_bytes(b"")
    monkeypatch.setenv("CONDA_PREFIX", str(tmp_path))
    assert system_family.find_library("libjemalloc.so.2") == tmp_path / "lib" / "libjemalloc.so.2"
    assert system_family.check_jemalloc() is None


def test_jemalloc_conf_is_reference_b_exactly(registry: VariantRegistry) -> None:
    """Issue #16: the write-up's MALLOC_CONF, its stray space after dirty_decay_ms: dropped."""
    assert registry.get("env-jemalloc").env["MALLOC_CONF"] == (
        "oversize_threshold:1,background_thread:true,metadata_thp:auto,"
        "dirty_decay_ms:60000,muzzy_decay_ms:60000")
    assert all(why for _, why in system_family.JEMALLOC_SETTINGS)  # each key explained
    assert "MALLOC_CONF=oversize_threshold:1," in registry.get("env-jemalloc").description


def test_reference_b_system_row_is_one_selection(registry: VariantRegistry) -> None:
    """env-iomp stacks with the allocator, a thread count and pinning: reference B's row."""
    row = registry.get("env-jemalloc+env-iomp+env-threads-2+env-pinned")
    preload = row.env["LD_PRELOAD"].split(":")
    assert [Path(p).name for p in preload] == ["libjemalloc.so.2", "libiomp5.so"]
    assert row.env["OMP_NUM_THREADS"] == "2" and row.env["KMP_HW_SUBSET"] == "1t"
    assert row.env["KMP_BLOCKTIME"] == "1"
    assert row.cpus == registry.get("env-pinned").cpus


def test_missing_intel_openmp_skips_with_the_install_command(
        registry: VariantRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(system_family.sys, "prefix", str(tmp_path))
    monkeypatch.setattr(system_family.sys, "base_prefix", str(tmp_path))
    monkeypatch.setattr(system_family, "find_library", lambda filename: None)
    reason = unavailable_reason(registry.get("env-iomp"))
    assert reason is not None and "pip install intel-openmp" in reason
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libiomp5.so").write_bytes(b"")
    assert system_family.iomp_path() == tmp_path / "lib" / "libiomp5.so"


def test_merge_env_keeps_the_users_preload_after_the_variants() -> None:
    from pytest_sdperf.variants.registry import merge_env

    parent = {"LD_PRELOAD": "/home/me/libshim.so /usr/lib/libjemalloc.so.2", "PATH": "/bin",
              "MALLOC_CONF": "narenas:1"}
    variant = {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2", "MALLOC_CONF": "background_thread:true"}
    assert merge_env(parent, variant) == {
        "LD_PRELOAD": "/usr/lib/libjemalloc.so.2:/home/me/libshim.so",  # each library once
        "PATH": "/bin", "MALLOC_CONF": "background_thread:true"}  # scalars are replaced
    assert merge_env({"PATH": "/bin"}, variant)["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2"
    assert merge_env(parent, {"OMP_NUM_THREADS": "1"})["LD_PRELOAD"] == parent["LD_PRELOAD"]
    assert parent["LD_PRELOAD"].startswith("/home")  # the parent's mapping is not changed


def test_unavailable_cpus_skip_the_worker_with_the_reason() -> None:
    from pytest_sdperf.worker import SkipVariant, _pin

    with pytest.raises(SkipVariant, match="cannot pin the worker to CPUs 4096"):
        _pin("4096")


REPORT_TEST = """
import pytest

@pytest.mark.sdperf(steps=2, height=64, width=64)
def test_env(sdperf_measurement):
    env = dict(sdperf_measurement.environment)
    print("SDPERF-ENV", env)
    assert env["LD_PRELOAD"].split(":")[0].endswith("libjemalloc.so.2")  # before any of yours
    assert "background_thread:true" in env["MALLOC_CONF"]
    assert env["allocator_loaded"] == ["jemalloc"]
    assert env["LD_PRELOAD"].split(":")[1].endswith("libiomp5.so") and env["KMP_HW_SUBSET"] == "1t"
    assert "libiomp5" in env["openmp_loaded"]  # Intel's OpenMP really mapped in
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["torch_threads"] == 1
    assert env["affinity"] == [0]
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(1 << 30)  # --sdperf-glibc-malloc fixed (default)
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(1 << 32)
"""


@pytest.mark.skipif(system_family.check_jemalloc() is not None,
                    reason=str(system_family.check_jemalloc()))
@pytest.mark.skipif(system_family.check_iomp() is not None, reason=str(system_family.check_iomp()))
def test_environment_variant_changes_the_worker_environment(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    """The worker runs with jemalloc and Intel OpenMP mapped in, one OpenMP/torch thread and
    CPU 0 only (reference B's system row, at one thread)."""
    assert request.config.cache is not None
    cache = request.config.cache.mkdir("sdperf-test-cache")
    pytester.makepyfile(test_env=REPORT_TEST)
    result = pytester.runpytest_subprocess(
        "--sdperf", "--sdperf-variants", "env-jemalloc+env-iomp+env-threads-1+env-pinned-0",
        "--sdperf-cache-dir", str(cache), "--sdperf-baselines", str(pytester.path / "bl"),
        "--sdperf-rounds", "1", "--sdperf-warmup", "0", "-s",
    )
    result.assert_outcomes(passed=1)
    if "jemalloc" not in os.environ.get("LD_PRELOAD", ""):
        # The parent stays as it was: only the worker's environment was changed.
        assert "jemalloc" not in Path("/proc/self/maps").read_text()
