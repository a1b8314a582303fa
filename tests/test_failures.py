"""Workers that crash, hang or raise, and baseline files that are damaged."""

from __future__ import annotations

import json

import pytest

from pytest_sdperf.testing import SdperfRun


@pytest.fixture
def run(pytester: pytest.Pytester) -> SdperfRun:
    r = SdperfRun(pytester, rounds=2)
    r.write_suite()
    return r


def test_crashing_worker_fails_only_its_test(run: SdperfRun) -> None:
    result = run.run("--sdperf-variants", "fake,fake-crash")
    result.assert_outcomes(failed=2)  # fake fails only because it records
    result.stdout.fnmatch_lines(["*sdperf worker for fake-crash died (exit status 3)*"])


def test_hanging_worker_is_killed_at_the_timeout(run: SdperfRun) -> None:
    result = run.run("--sdperf-variants", "fake-hang", "--sdperf-timeout", "4")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fake-hang did not finish within 4 s (killed)*"])


def test_raising_worker_shows_its_traceback(run: SdperfRun) -> None:
    result = run.run("--sdperf-variants", "fake-raise")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*raised an error*", "*worker stderr*", "*RuntimeError: fake pipeline failure*"])


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "*not valid JSON*"),
        (json.dumps({"schema_version": 99, "entries": {}}), "*schema version 99*reads version 1*"),
        (json.dumps({"schema_version": 1, "entries": {"x": {"variant": 3}}}), "*at entries/x*"),
    ],
)
def test_damaged_baseline_is_reported_and_kept(run: SdperfRun, content: str, expected: str) -> None:
    path = run.root / "baselines" / "placeholder.json"
    path.parent.mkdir()
    run.run("--sdperf-variants", "fake", "--sdperf-baselines", str(run.root / "probe"))
    key = next((run.root / "probe").glob("*.json")).name
    path = path.with_name(key)
    path.write_text(content)
    result = run.run("--sdperf-variants", "fake")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([expected, "*--sdperf-update-all*"])
    assert "Traceback" not in result.stdout.str()
    assert path.read_text() == content

    rewritten = run.run("--sdperf-variants", "fake", "--sdperf-update-all")
    rewritten.assert_outcomes(passed=1)
    assert path.with_name(key + ".bak").read_text() == content
    assert json.loads(path.read_text())["schema_version"] == 1
