"""--sdperf-against PYTHON: each test timed here and under another interpreter, head to head."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_sdperf.testing import SdperfRun


def _other_environment(root: Path, slowdown: float) -> Path:
    """An interpreter standing for another environment: its own 'diffusers' 0.0.1 (package
    metadata first on its path) and a fake pipeline ``slowdown`` times as slow as here."""
    site = root / "other-site"
    meta = site / "diffusers-0.0.1.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: diffusers\nVersion: 0.0.1\n")
    python = root / "other-env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nSDPERF_FAKE_ENV_SLOWDOWN={slowdown} PYTHONPATH="{site}:$PYTHONPATH" '
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return python


def _run(pytester: pytest.Pytester, python: Path) -> tuple[object, dict[str, object]]:
    run = SdperfRun(pytester, options=("--sdperf-variants", "fake", "--sdperf-latency-pct", "30"))
    run.write_suite()
    done = run.run("--sdperf-against", str(python), "--sdperf-json", "out.json")
    results = json.loads((run.root / "out.json").read_text())
    assert not list((run.root / "baselines").glob("*.json")), "no baseline file is written"
    return done, results


def test_a_faster_other_environment_fails_the_test_here(pytester: pytest.Pytester) -> None:
    done, results = _run(pytester, _other_environment(pytester.path, 0.4))
    assert done.ret == 1  # type: ignore[attr-defined]
    done.stdout.fnmatch_lines(["*slower or worse here than under*other-env/bin/python*",  # type: ignore[attr-defined]
                               "*latency ratio (here / *other-env/bin/python)*",
                               "*--sdperf-against: 'vs baseline' is this environment over*"
                               "diffusers * here, 0.0.1 there*no baseline was read or written*"])
    against = results["against"]
    assert isinstance(against, dict)
    assert against["versions"]["diffusers"] == "0.0.1"  # what the other side really imported
    assert against["differences"]["diffusers"]["there"] == "0.0.1"
    (record,) = results["results"]  # type: ignore[misc]
    assert record["verdict"] == "regression" and record["ratio"] > 1.8
    assert record["info"]["against"]["python"].endswith("other-env/bin/python")


def test_the_same_speed_elsewhere_passes(pytester: pytest.Pytester) -> None:
    done, results = _run(pytester, _other_environment(pytester.path, 1.0))
    assert done.ret == 0, done.stdout.str()  # type: ignore[attr-defined]
    (record,) = results["results"]  # type: ignore[misc]
    assert record["verdict"] in ("pass", "inconclusive") and 0.8 < record["ratio"] < 1.25
    low, high = record["ratio_interval"]
    assert low < 1.0 < high


@pytest.mark.parametrize("make, said", [
    (lambda root: root / "nowhere" / "python", "no such interpreter"),
    (lambda root: _broken(root), "cannot import pytest-sdperf's code"),
])
def test_an_interpreter_that_cannot_be_the_other_side_is_a_usage_error(pytester: pytest.Pytester, make: object,
                                                                       said: str) -> None:
    run = SdperfRun(pytester, options=("--sdperf-variants", "fake"))
    run.write_suite()
    python = make(pytester.path)  # type: ignore[operator]
    done = run.run("--sdperf-against", str(python))
    assert done.ret == pytest.ExitCode.USAGE_ERROR
    done.stderr.fnmatch_lines([f"*--sdperf-against {python}: {said}*"])


def _broken(root: Path) -> Path:
    python = root / "broken" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named jsonschema' >&2\nexit 1\n")
    python.chmod(0o755)
    return python
