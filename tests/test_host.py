"""host.py: the one reader of /proc/cpuinfo, CPU topology and package versions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pytest_sdperf import host


def test_package_versions_leave_out_what_is_not_installed() -> None:
    assert host.package_version("pytest") == pytest.__version__
    assert host.package_version("no-such-distribution-sdperf") is None
    found = host.package_versions(["pytest", "no-such-distribution-sdperf"])
    assert found == {"pytest": pytest.__version__}


def test_cpuinfo_is_read_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Test CPU 9000\nflags\t\t: fpu avx2 fma\n")
    monkeypatch.setattr(host, "CPUINFO", fake)
    host.cpu_info.cache_clear()
    try:
        assert host.cpu_model() == "Test CPU 9000"
        fake.write_text("model name\t: Another CPU\n")
        assert host.cpu_info() == host.parse_cpuinfo("model name: Test CPU 9000\nflags: fpu avx2 fma\n")
        assert {"avx2", "fma"} <= host.cpu_info().flags  # type: ignore[union-attr]
    finally:
        host.cpu_info.cache_clear()


def test_physical_cpus_keep_the_lowest_cpu_of_each_core(tmp_path: Path) -> None:
    for cpu, siblings in ((0, "0,2"), (1, "1,3"), (2, "0,2"), (3, "1,3")):
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(siblings + "\n")
    assert host.physical_cpus({0, 1, 2, 3, 5}, tmp_path) == [0, 1, 5]  # cpu5: no topology
    assert host.physical_cores({2, 3}, tmp_path) == 2
    assert host.physical_cpus() and set(host.physical_cpus()) <= host.usable_cpus()


def test_host_imports_nothing_of_the_package() -> None:
    """It sits below every other module: no import of pytest_sdperf and nothing heavy."""
    tree = ast.parse(Path(host.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
    assert not {name.split(".")[0] for name in names} & {"pytest_sdperf", "torch", "numpy"}
