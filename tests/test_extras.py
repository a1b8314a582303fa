"""``pip install pytest-sdperf`` is the plugin and its gates; the report and the history are
extras, and a feature whose extra is missing says which one to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_sdperf.cli import main
from pytest_sdperf.testing import SdperfRun

EXTRA_MODULES = ("matplotlib", "sqlalchemy", "ruptures", "pytest_benchmark")
# The same modules made unimportable in every process of a run, workers included.
BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"
# No entry-point plugins (pytest-benchmark's would be loaded where it is installed): only ours.
ONLY_SDPERF = ("-p", "pytest_sdperf.plugin", "-p", "no:cacheprovider")


@pytest.mark.parametrize(("option", "module", "message"), [
    (("--sdperf-html", "r.html"), "matplotlib",
     "the HTML report needs matplotlib: pip install 'pytest-sdperf[report]'"),
    (("--sdperf-history", "default"), "sqlalchemy",
     "the history needs SQLAlchemy: pip install 'pytest-sdperf[history]'"),
    (("--sdperf-history", "default"), "ruptures",
     "the history needs ruptures: pip install 'pytest-sdperf[history]'"),
    (("--sdperf-benchmark-json", "b.json"), "pytest_benchmark",
     "the pytest-benchmark JSON needs pytest-benchmark: pip install 'pytest-sdperf[report]'"),
])
def test_an_option_without_its_extra_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, option: tuple[str, ...],
    module: str, message: str,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = pytester.runpytest("--sdperf", *option, *ONLY_SDPERF)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: {message}" in result.stderr.str()


def test_without_sdperf_the_extras_are_not_asked_for(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--sdperf-html", "r.html", *ONLY_SDPERF)
    result.assert_outcomes(passed=1)


def test_sdperf_commands_name_the_extra_they_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")]) == 2
    assert "the HTML report needs matplotlib: pip install 'pytest-sdperf[report]'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    assert main(["history", "--db", str(tmp_path / "h.sqlite")]) == 2
    assert "the history needs SQLAlchemy: pip install 'pytest-sdperf[history]'" in capsys.readouterr().err


def test_a_core_install_runs_the_gate_and_writes_its_json(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No extra imported anywhere: an import of one would fail the run."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK.format(names=EXTRA_MODULES))
    monkeypatch.setenv("PYTHONPATH", f"{site}:{':'.join(sys.path)}")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    run = SdperfRun(pytester, rounds=3)
    run.write_suite()
    result = run.run("--sdperf-variants", "fake", "--sdperf-update-all", "--sdperf-json", "r.json",
                     "-p", "pytest_sdperf.plugin")
    result.assert_outcomes(passed=1)
    assert (run.root / "r.json").is_file() and run.baseline_file().is_file()
