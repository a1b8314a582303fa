"""Options, ini twins, markers, variant selection and listing."""

from __future__ import annotations

import pytest

from pytest_sdperf.testing import SdperfRun


@pytest.fixture
def run(pytester: pytest.Pytester) -> SdperfRun:
    r = SdperfRun(pytester, rounds=2)
    r.write_suite()
    return r


def test_without_flag_benchmarks_are_skipped(pytester: pytest.Pytester, run: SdperfRun) -> None:
    result = pytester.runpytest("-rs")
    outcomes = result.parseoutcomes()  # every registered variant: collected, then skipped
    assert set(outcomes) == {"skipped"} and outcomes["skipped"] >= 8
    result.stdout.fnmatch_lines(["*run with --sdperf*"])


def test_help_lists_every_option(pytester: pytest.Pytester) -> None:
    """argparse formats help texts with %: a bare "2%" in one once made --help crash."""
    from pytest_sdperf.config import OPTIONS

    result = pytester.runpytest("--help")
    assert result.ret == 0, result.stderr.str()
    out = result.stdout.str()
    assert all(option.flag in out for option in OPTIONS)
    assert all(f"{option.ini_key} (" in out for option in OPTIONS if option.ini)
    assert "sdperf_list_variants" not in out
    assert "+-2%" in out  # printed as written
    assert "(default 30)" in out and "(default 900)" in out  # the declared defaults, formatted in


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sdperf-rounds", "0"], "*--sdperf-rounds*'0' must be 1 or more*"),
        (["--sdperf-rounds", "many"], "*--sdperf-rounds*'many' is not an integer*"),
        (["--sdperf-rounds", "x"], "*--sdperf-rounds*'x' is not an integer*"),
        (["--sdperf-timeout", "-1"], "*--sdperf-timeout*must be a positive number*"),
        (["--sdperf-device", "tpu"], "*--sdperf-device*'tpu' is not one of*"),
        (["--sdperf-variants", "nope"], "*unknown variant 'nope'; known variants: torch-fp32*fake*"),
        (["--sdperf-variants", "zz-*"], "*pattern 'zz-?' matches no variant*"),
        (["--sdperf-variants", "fake,,x"], "*not a comma list of variant names*"),
        (["--sdperf-set", "novalue"], "*'novalue' is not NAME=VALUE*"),
        (["--sdperf-set", "tome_ratio=0.3,"], "*'tome_ratio=0.3,' has an empty item in its list*"),
        (["--sdperf-reference", "nope"], "*unknown variant 'nope'*"),
        (["--sdperf-latency-pct", "-5"], "*--sdperf-latency-pct*'-5' must be 0 or more*"),
        (["--sdperf-memory-pct", "lots"], "*--sdperf-memory-pct*'lots' is not a number*"),
        (["--sdperf-min-ssim", "1.5"], "*--sdperf-min-ssim*'1.5' must be from -1 to 1*"),
        (["--sdperf-min-psnr", "-1"], "*--sdperf-min-psnr*'-1' must be 0 or more*"),
        (["--sdperf-min-speedup", "ov-static"], "*--sdperf-min-speedup*not VARIANT=X*"),
        (["--sdperf-min-speedup", "ov-static=-1"], "*--sdperf-min-speedup*'-1' must be 0 or more*"),
        (["--sdperf-glibc-malloc", "static"], "*--sdperf-glibc-malloc*'static' is not one of fixed, dynamic*"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, run: SdperfRun,
                                      args: list[str], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize("ini, message", [
    ("sdperf_rounds = 0", "*ini key sdperf_rounds = '0'*must be 1 or more*"),
    ("sdperf_min_ssim = 2", "*ini key sdperf_min_ssim = '2'*must be from -1 to 1*"),
    ("sdperf_set =\n  novalue", "*ini key sdperf_set = [[]'novalue'[]]*'novalue' is not NAME=VALUE*"),
])
def test_ini_twins_are_read_and_validated(pytester: pytest.Pytester, run: SdperfRun,
                                          ini: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    result = pytester.runpytest("--sdperf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ini_rounds_reach_the_worker(pytester: pytest.Pytester, run: SdperfRun) -> None:
    pytester.makeini("[pytest]\nsdperf_rounds = 3\nsdperf_variants = fake\n")
    args = [a for a in run.args() if a not in ("--sdperf-rounds", "2")]
    pytester.runpytest_subprocess(*args)
    import json
    entry = next(iter(json.loads(run.baseline_file().read_text())["entries"].values()))
    assert len(entry["latency"]["samples"]) == 3


def test_marker_typo_is_an_error(pytester: pytest.Pytester, run: SdperfRun) -> None:
    run.write_suite(marker_extra=", step=3")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown sdperf marker argument(s) ['step']; valid: " in result.stderr.str()


def test_a_marker_can_run_a_test_for_some_variants_only(pytester: pytest.Pytester,
                                                        run: SdperfRun) -> None:
    run.write_suite(marker_extra=", variants='fake-h*, fake-noisy'")
    result = pytester.runpytest("--collect-only", "-q", "--sdperf-variants", "fake,fake-hungry,fake-noisy")
    result.stdout.fnmatch_lines(["*test_gen[[]fake-hungry[]]", "*test_gen[[]fake-noisy[]]", "2 tests collected*"])
    run.write_suite(marker_extra=", variants='fake,'")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "sdperf marker variants='fake,' must be a comma list" in result.stderr.str()


def test_glob_and_composition_selection(pytester: pytest.Pytester, run: SdperfRun) -> None:
    result = pytester.runpytest("--collect-only", "-q", "--sdperf-variants", "fake-h*,fake+fake-noisy")
    result.stdout.fnmatch_lines(["*test_gen[[]fake-hungry[]]", "*test_gen[[]fake-hang[]]",
                                 "*test_gen[[]fake+fake-noisy[]]"])


def test_list_variants(pytester: pytest.Pytester, run: SdperfRun) -> None:
    result = pytester.runpytest("--sdperf-list-variants")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*sdperf variants*", "torch-fp32 *torch*", "*needs: torch*",
                                 "fake-crash *fake*runs here*"])


def test_bad_model_folder_fails_with_fix(pytester: pytest.Pytester, run: SdperfRun) -> None:
    bad = pytester.mkdir("pickled")
    (bad / "model_index.json").write_text("{}")
    (bad / "unet.bin").write_bytes(b"x")
    result = pytester.runpytest_subprocess(*run.args("--sdperf-variants", "fake",
                                                     "--sdperf-model", str(bad)))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pickle files (unet.bin)*--sdperf-allow-pickle*"])


def test_glibc_malloc_setting_fixes_both_thresholds_and_keeps_the_users_own() -> None:
    from pytest_sdperf import glibc_malloc

    env: dict[str, str] = {"MALLOC_TRIM_THRESHOLD_": "123"}
    added = glibc_malloc.apply("fixed", env)
    assert env == {"MALLOC_TRIM_THRESHOLD_": "123", "MALLOC_MMAP_THRESHOLD_": str(1 << 30)}
    assert glibc_malloc.mode_of(env) == "fixed" and added == ("MALLOC_MMAP_THRESHOLD_",)
    glibc_malloc.withdraw(added, env)  # the session's end: the user's own stays
    assert env == {"MALLOC_TRIM_THRESHOLD_": "123"}
    untouched: dict[str, str] = {}
    glibc_malloc.apply("dynamic", untouched)
    assert untouched == {} and glibc_malloc.mode_of(untouched) == "dynamic"
    assert glibc_malloc.mode_of({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}) == "fixed"
    assert glibc_malloc.recorded_mode({}) == "dynamic"  # an entry written before the setting
    assert glibc_malloc.recorded_mode({"glibc_malloc": "fixed"}) == "fixed"

