"""Workers that crash, hang or raise, and baseline files that are damaged."""

from __future__ import annotations

import json
import time

import pytest

from pytest_sdperf.testing import SdperfRun


@pytest.fixture
def run(pytester: pytest.Pytester) -> SdperfRun:
    r = SdperfRun(pytester, rounds=2)
    r.write_suite()
    return r


def test_crashing_worker_fails_only_its_test(run: SdperfRun) -> None:
    result = run.run("--sdperf-variants", "fake,fake-crash")
    result.assert_outcomes(passed=1, failed=1)  # fake records (a pass), fake-crash fails
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
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # before any worker was started
    assert "test_suite.py" not in result.stdout.str()  # nothing collected or run
    result.stderr.fnmatch_lines([expected + "--sdperf-update-all*"])
    assert str(path) in result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert path.read_text() == content

    rewritten = run.run("--sdperf-variants", "fake", "--sdperf-update-all")
    rewritten.assert_outcomes(passed=1)
    assert path.with_name(key + ".bak").read_text() == content
    assert json.loads(path.read_text())["schema_version"] == 1


def test_worker_hung_after_its_first_call_is_killed_by_the_watchdog(run: SdperfRun) -> None:
    """Its stacks are in the message, it is told apart from a slow worker, and the next test
    starts at once; the results JSON marks it hung."""
    start = time.monotonic()
    result = run.run("--sdperf-variants", "fake-hang-later,fake", "--sdperf-timeout", "300",
                     "--sdperf-hang-floor", "3", "--sdperf-json", str(run.root / "r.json"))
    assert time.monotonic() - start < 120  # well before --sdperf-timeout
    result.assert_outcomes(passed=1, failed=1)  # fake records (a pass)
    result.stdout.fnmatch_lines([
        "*sdperf worker for fake-hang-later hung: no progress for * s (limit 3 s*This is a hang, not a slowdown*",
        "*Python stacks (faulthandler)*",
        "*_hold_the_gil_forever*",
        "*native stacks*",
    ])
    records = {r["variant"]: r for r in json.loads((run.root / "r.json").read_text())["results"]}
    assert records["fake-hang-later"]["verdict"] == "hung"
    assert records["fake"]["verdict"] == "recorded"


def test_slow_but_progressing_worker_is_not_killed(run: SdperfRun) -> None:
    """Calls after the first take 3 s, longer than the 2 s limit, but each step reports."""
    result = run.run("--sdperf-variants", "fake-slow-later", "--sdperf-hang-floor", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*no baseline entry*recorded now*"])
    assert "hung" not in result.stdout.str()
