"""pytest entry point: options (each with an ini twin), the ``sdperf`` marker, fixtures, hooks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from .config import (
    Settings,
    UsageError,
    device_choice,
    gate_mode,
    history_target,
    image_size,
    key_value,
    name_list,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    rounds_value,
    settings_from_config,
    variant_patterns,
)
from .workload import Workload, parse_marker_kwargs, resolve_workload

if TYPE_CHECKING:
    from .session import SdperfState  # noqa: F401  (named in a string below)

STATE = pytest.StashKey["SdperfState"]()
SKIP_REASON = "run with --sdperf"
FIXTURES = ("sdperf_variant", "sdperf_measurement", "sdperf_gate")

OPTIONS: tuple[tuple[str, dict[str, Any], str], ...] = (
    ("--sdperf-model", {"metavar": "MODEL"},
     "'tiny' (default, built locally), a profile (sd15-arch, sd21-arch, sdxl-arch: full-size "
     "architectures with random weights, built locally), a diffusers or OpenVINO folder, "
     "or a hub id"),
    ("--sdperf-steps", {"metavar": "N", "type": positive_int},
     "denoising steps of every test, overriding markers and the model's default"),
    ("--sdperf-size", {"metavar": "HxW", "type": image_size},
     "image size of every test (e.g. 256x256), overriding markers and the model's default"),
    ("--sdperf-protocol", {"metavar": "LIST", "type": name_list},
     "run these published-protocol tests (e.g. reference-b, or 'all'); skipped otherwise"),
    ("--sdperf-variants", {"metavar": "LIST", "type": variant_patterns},
     "comma list of variant names, globs or a+b compositions (default: all)"),
    ("--sdperf-baselines", {"metavar": "DIR"}, "baseline folder (default: baselines/)"),
    ("--sdperf-rounds", {"metavar": "N", "type": rounds_value},
     "timed rounds (default 5), or 'auto': until the comparison with the baseline is decided "
     "(with no baseline, until the median is known to +-2%), or the time budget is spent"),
    ("--sdperf-time-budget", {"metavar": "S", "type": positive_float},
     "seconds of timed rounds per variant with --sdperf-rounds auto (default 120)"),
    ("--sdperf-warmup", {"metavar": "N", "type": non_negative_int}, "warm-up calls (default 1)"),
    ("--sdperf-cache-dir", {"metavar": "DIR"}, "model/artifact cache (default ~/.cache/pytest-sdperf)"),
    ("--sdperf-json", {"metavar": "PATH"}, "write this run's results as JSON"),
    ("--sdperf-benchmark-json", {"metavar": "PATH"},
     "write the timed rounds in pytest-benchmark's JSON format (for pytest-benchmark compare)"),
    ("--sdperf-timeout", {"metavar": "S", "type": positive_float},
     "worker timeout, the hard cap (default 900)"),
    ("--sdperf-hang-floor", {"metavar": "S", "type": non_negative_float},
     "a worker silent for the larger of this and 20x its first call is hung: its stacks are "
     "taken and it is killed (default 60; 0: only --sdperf-timeout)"),
    ("--sdperf-device", {"metavar": "DEV", "type": device_choice}, "auto (default), cpu, cuda"),
    ("--sdperf-memray-dir", {"metavar": "DIR"}, "keep each variant's memray capture here"),
    ("--sdperf-gate", {"metavar": "MODE", "type": gate_mode},
     "relative (default: latency over an interleaved calibration workload), paired (over the "
     "reference variant timed in the same worker, rounds interleaved) or absolute"),
    ("--sdperf-machine-key", {"metavar": "KEY"},
     "compare with another machine's baseline file, by calibration-relative latency only"),
    ("--sdperf-reference", {"metavar": "VARIANT"},
     "the variant whose images are the reference and speedups' base (default torch-fp32)"),
    ("--sdperf-html", {"metavar": "PATH"},
     "write a self-contained HTML report (table, charts, images, trends) to PATH"),
    ("--sdperf-history", {"metavar": "URL_OR_PATH", "type": history_target},
     "append results to a history database: a SQLAlchemy URL (postgresql+psycopg://...), "
     "a SQLite file, or 'default' (<baselines>/history.sqlite)"),
)
FLAGS = (
    ("--sdperf", "run the sdperf benchmark tests (skipped otherwise)"),
    ("--sdperf-update", "rewrite the baseline entries of tests that fail (they still fail)"),
    ("--sdperf-update-all", "rewrite every baseline entry and reference image, and pass"),
    ("--sdperf-list-variants", "list the registered variants, whether they run here, and exit"),
    ("--sdperf-allow-pickle", "allow pickle (.bin/.ckpt) weights in --sdperf-model folders"),
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the ``pytest_sdperf_*`` hooks."""
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options under 'sdperf', each with a ``sdperf_*`` ini key."""
    group = parser.getgroup("sdperf", "Stable Diffusion performance gates")
    for flag, help_text in FLAGS:
        group.addoption(flag, action="store_true", default=None, help=_argparse_help(help_text))
        if flag != "--sdperf-list-variants":
            parser.addini(_ini(flag), help_text, type="bool", default=False)
    for flag, kwargs, help_text in OPTIONS:
        group.addoption(flag, default=None, help=_argparse_help(help_text), **kwargs)
        parser.addini(_ini(flag), help_text, default=None)
    group.addoption("--sdperf-set", action="append", type=key_value, metavar="NAME=VALUE",
                    help="a variant setting, e.g. tome_ratio=0.5 (repeatable)")
    parser.addini("sdperf_set", "variant settings, one NAME=VALUE a line", type="linelist")


def _argparse_help(text: str) -> str:
    """``text`` with its "%" escaped: argparse %-formats option help (ini help is not)."""
    return text.replace("%", "%%")


def _ini(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def pytest_configure(config: pytest.Config) -> None:
    """Parse settings, build the variant registry (built-ins, then the hook), stash state."""
    config.addinivalue_line(
        "markers",
        "sdperf(**kwargs): workload (prompt, negative_prompt, steps, height, width, "
        "images_per_prompt, guidance_scale, seed), thresholds (latency_pct, memory_pct, "
        "min_ssim, min_psnr) and protocol (protocol, arch, rounds, warmup, warmup_steps) of a "
        "pytest-sdperf benchmark test",
    )
    from .extras import settings_problems
    from .session import SdperfState
    from .variants.builtin import register_builtin
    from .variants.registry import VariantError, VariantRegistry

    try:
        settings = settings_from_config(config)
        if problems := settings_problems(settings):  # told now, not after the whole run
            raise UsageError("; ".join(problems))
        registry = VariantRegistry()
        register_builtin(registry)
        config.hook.pytest_sdperf_add_variants(registry=registry)
        state = SdperfState(settings, registry, Path(str(config.rootpath)))
        state.selected = registry.select(settings.variants)
        registry.get(settings.reference_variant)
    except (UsageError, VariantError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE] = state
    if settings.enabled and _xdist_workers(config):
        config.issue_config_time_warning(pytest.PytestWarning(
            "pytest-sdperf: timings taken while pytest-xdist runs tests in parallel compete for "
            "the same cores and are not trustworthy; results and baselines stay consistent "
            "(file lock), but record and gate latency without -n"), stacklevel=2)


def _xdist_workers(config: pytest.Config) -> int:
    try:
        value = config.getoption("numprocesses")
    except ValueError:
        return 0
    return 0 if value in (None, 0, "0") else 2


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--sdperf-list-variants``: print the registry and exit."""
    if not config.getoption("sdperf_list_variants"):
        return None
    from _pytest.main import wrap_session

    return wrap_session(config, _list_variants)


def _list_variants(config: pytest.Config, session: pytest.Session) -> int:
    from .variants.availability import unavailable_reason

    state = config.stash[STATE]
    tr: Any = config.pluginmanager.get_plugin("terminalreporter")
    tr.section("sdperf variants")
    for spec in state.registry:
        reason = unavailable_reason(spec)
        needs = ", ".join(spec.requires) + (", CUDA" if spec.needs_cuda else "")
        tr.write_line(f"{spec.name:28} {spec.family:10} {'runs here' if not reason else 'cannot run'}")
        tr.write_line(f"    {spec.description}")
        tr.write_line(f"    needs: {needs or 'nothing extra'}" + (f"; {reason}" if reason else ""))
    for pattern in state.registry.patterns():
        tr.write_line(f"{pattern.shown:28} {'pattern':10} (any value, e.g. as listed above)")
        tr.write_line(f"    {pattern.description}")
    tr.write_line("compose any of these with '+', e.g. torch-bf16+dpm-solver+tome")
    return 0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``sdperf_variant`` with the selected variants (ids are their names)."""
    if "sdperf_variant" in metafunc.fixturenames:
        names = [spec.name for spec in metafunc.config.stash[STATE].selected]
        metafunc.parametrize("sdperf_variant", names, ids=names, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Validate ``sdperf`` markers; without --sdperf, skip the benchmark tests.

    Protocol tests (marker ``protocol=...``) are deselected unless --sdperf-protocol names them
    (or 'all') or their file was named on the command line, so ``pytest --sdperf suites/``
    stays the quick default suite.
    """
    settings = config.stash[STATE].settings
    named = {Path(str(a).split("::")[0]).resolve() for a in config.args}
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("sdperf")
        protocol = None
        if marker is not None:
            if marker.args:
                raise pytest.UsageError(f"{item.nodeid}: the sdperf marker takes keywords only")
            try:
                protocol = parse_marker_kwargs(marker.kwargs, item.nodeid).run.protocol
            except (ValueError, TypeError) as exc:
                raise pytest.UsageError(str(exc)) from None
        wanted = (protocol is None or protocol in settings.protocols or "all" in settings.protocols
                  or Path(str(item.path)).resolve() in named)
        (kept if wanted else deselected).append(item)
        uses = marker is not None or any(f in getattr(item, "fixturenames", ()) for f in FIXTURES)
        if uses and not settings.enabled:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def sdperf_settings(pytestconfig: pytest.Config) -> Settings:
    """The validated sdperf settings of this session."""
    settings: Settings = pytestconfig.stash[STATE].settings
    return settings


@pytest.fixture
def sdperf_workload(request: pytest.FixtureRequest) -> Workload:
    """The workload of this test.

    Workload defaults, then the model's (``--sdperf-model``: tiny 128x128/10 steps, a profile
    its own small size, a folder its native size), then ``@pytest.mark.sdperf(...)``, then
    ``--sdperf-size`` / ``--sdperf-steps``. A protocol test for another architecture skips.
    """
    from .models.source import default_workload

    settings = request.config.stash[STATE].settings
    marker = request.node.get_closest_marker("sdperf")
    args = parse_marker_kwargs(marker.kwargs if marker else {}, request.node.nodeid)
    if args.run.arch and settings.enabled:
        from .models.source import ModelError

        try:
            arch = request.config.stash[STATE].model().arch
        except ModelError:
            arch = ""  # sdperf_measurement reports the model's problem
        if arch and arch != args.run.arch:
            pytest.skip(f"{args.run.protocol or 'this test'} needs an {args.run.arch} "
                        f"pipeline; --sdperf-model {settings.model} is {arch}")
    return resolve_workload(args, default_workload(settings.model), settings.workload_overrides())


@pytest.fixture
def sdperf_variant(request: pytest.FixtureRequest) -> Any:
    """The VariantSpec under test (parametrized); skips where it cannot run here."""
    state = request.config.stash[STATE]
    spec = state.registry.get(request.param)
    reason = state.skip_reason(spec)
    if reason:
        pytest.skip(reason)
    return spec


@pytest.fixture
def sdperf_measurement(request: pytest.FixtureRequest, sdperf_variant: Any,
                       sdperf_workload: Workload, sdperf_gate: Any, tmp_path: Path) -> Any:
    """Build the variant in a fresh worker process and measure it (a ``Measurement``).

    With ``--sdperf-rounds auto`` the worker is given the test's baseline latency, and times
    rounds until the gate's comparison is decided (or the time budget is spent).

    A worker that raises, crashes or exceeds ``--sdperf-timeout`` fails this test (in its
    call phase, when the measurement is used) with the worker's output; a variant that finds
    it cannot run here skips with its reason.
    """
    from .models.source import ModelError
    from .session import Measurement, WorkerFailure

    state = request.config.stash[STATE]
    try:
        model = state.model()
    except ModelError as exc:
        return WorkerFailure(str(exc))
    capture = None
    if state.settings.memray_dir:
        capture = state.settings.memray_dir / (re.sub(r"[^\w.-]+", "_", request.node.nodeid) + ".bin")
    marker = request.node.get_closest_marker("sdperf")
    protocol = parse_marker_kwargs(marker.kwargs if marker else {}, request.node.nodeid).run
    s = state.settings
    outcome = state.run(
        sdperf_variant, sdperf_workload, tmp_path, memray_capture=capture,
        rounds=protocol.rounds if protocol.rounds is not None and not s.rounds_given else None,
        warmup=protocol.warmup if protocol.warmup is not None and not s.warmup_given else None,
        warmup_steps=protocol.warmup_steps,
        target=sdperf_gate.latency_target(model.key, sdperf_workload) if s.rounds == 0 else None,
    )
    if outcome.status == "skip":
        pytest.skip(outcome.result.get("reason", "the variant skipped itself"))
    if outcome.status != "ok":
        return WorkerFailure(outcome.failure_text(sdperf_variant.name, state.settings.timeout_s),
                             outcome.status, sdperf_variant.name, model.key, sdperf_workload.key())
    return Measurement.from_result(sdperf_variant, model, sdperf_workload, outcome.result)


@pytest.fixture
def sdperf_gate(request: pytest.FixtureRequest, sdperf_variant: Any, tmp_path: Path) -> Any:
    """Compare a measurement with the baseline: ``sdperf_gate.check(sdperf_measurement)``.

    Fails the test on a regression (naming metric, value, baseline, limit and files) and on a
    first recording; see the README for the rules.
    """
    from .gate import Gate
    from .workload import parse_marker_kwargs as parse

    marker = request.node.get_closest_marker("sdperf")
    thresholds = parse(marker.kwargs if marker else {}, request.node.nodeid).thresholds
    state = request.config.stash[STATE]
    return Gate(state, request.node.nodeid, sdperf_variant, thresholds, tmp_path)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Flush queued baseline writes once; write --sdperf-json, the history and --sdperf-html."""
    from .baselines import BaselineError
    from .report import write_json

    state = session.config.stash.get(STATE, None)
    if state is None or not state.settings.enabled:
        return
    try:
        if state._store is not None:
            state.written += state.store.flush(state.header(), force=state.settings.update_all)
    except BaselineError as exc:
        state.notes.append(f"baselines not written: {exc}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state.settings.benchmark_json:
        from .interop import write_benchmark_json

        write_benchmark_json(state.settings.benchmark_json, state.records)
        state.written.append(state.settings.benchmark_json)
    if state.settings.json_path:
        write_json(state.settings.json_path, state.header(), state.records,
                   state.settings.reference_variant)
        state.written.append(state.settings.json_path)
    history = _record_history(state) if state.settings.history else None
    if state.settings.html_path:
        from .html_report import write_html

        write_html(state.settings.html_path, state.header(), state.records,
                   state.settings.reference_variant, history)
        state.written.append(state.settings.html_path)


def _record_history(state: SdperfState) -> Any:
    """Append this run to --sdperf-history; this machine's history, or None (with a note)."""
    from .history import HistoryError, append_and_load

    try:
        return append_and_load(str(state.settings.history), state.settings.baselines_dir,
                               state.header(), state.records)
    except HistoryError as exc:
        state.notes.append(f"history not recorded: {exc}")
        return None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The sdperf table: variant, p50, speedup vs torch-fp32, memory, similarity, verdict."""
    from .report import write_terminal_summary

    state = config.stash.get(STATE, None)
    if state is not None:
        notes = [*state.notes, state.model_note()] if state.records and state.model_note() else state.notes
        write_terminal_summary(terminalreporter, state.records, notes, state.written,
                               state.settings.reference_variant)
