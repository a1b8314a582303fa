"""pytest entry point: options (each with an ini twin), the ``sdperf`` marker, hooks; the
fixtures live in fixtures.py and knee.py and are imported here, where pytest finds them."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs
from .config import OPTIONS, Option, UsageError, settings_from_config
from .fixtures import (  # noqa: F401  (the plugin's fixtures: pytest collects them from here)
    sdperf_gate,
    sdperf_measurement,
    sdperf_settings,
    sdperf_sweep,
    sdperf_variant,
    sdperf_workload,
)
from .keys import STATE
from .knee import sdperf_knee  # noqa: F401  (a fixture, as above)
from .workload import parse_marker_kwargs

if TYPE_CHECKING:
    from .session import SdperfState

SKIP_REASON = "run with --sdperf"
FIXTURES = ("sdperf_variant", "sdperf_measurement", "sdperf_gate", "sdperf_knee")

# The ini twin of each kind of option (a value's ini key is a string, parsed when read).
_INI: dict[str, dict[str, Any]] = {"flag": {"type": "bool", "default": False},
                                   "list": {"type": "linelist"}, "value": {"default": None}}


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the ``pytest_sdperf_*`` hooks."""
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """The options of ``config.OPTIONS`` under 'sdperf', each with its ``sdperf_*`` ini key."""
    group = parser.getgroup("sdperf", "Stable Diffusion performance gates")
    for option in OPTIONS:
        group.addoption(option.flag, default=None, help=_argparse_help(option.help_text),
                        **_argparse_kwargs(option))
        if option.ini:
            parser.addini(option.ini_key, option.help_text, **_INI[option.kind])


def _argparse_kwargs(option: Option) -> dict[str, Any]:
    """How ``option`` is added to argparse (its default is None: "not given", so the ini
    twin and then the declared default apply)."""
    if option.kind == "flag":
        return {"action": "store_true"}
    kwargs: dict[str, Any] = {"type": option.parse, "metavar": option.metavar}
    return {**kwargs, "action": "append"} if option.kind == "list" else kwargs


def _argparse_help(text: str) -> str:
    """``text`` with its "%" escaped: argparse %-formats option help (ini help is not)."""
    return text.replace("%", "%%")


def pytest_configure(config: pytest.Config) -> None:
    """Parse settings, build the variant registry (built-ins, then the hook), stash state."""
    config.addinivalue_line(
        "markers",
        "sdperf(**kwargs): workload (prompt, negative_prompt, steps, height, width, "
        "images_per_prompt, guidance_scale, seed, task, strength, init_image), thresholds (latency_pct, memory_pct, "
        "min_ssim, min_psnr, min_speedup), protocol (protocol, arch, rounds, warmup, warmup_steps) and "
        "an MLPerf LoadGen scenario (scenario, target_qps, latency_cap_ms, duration_s, min_queries) or "
        "a latency-capped sweep (sweep, sweep_values, sweep_cap_ms; the sdperf_knee fixture) of "
        "a pytest-sdperf benchmark test",
    )
    from .against import AgainstError
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
        if settings.enabled and settings.against is not None:
            from .against import probe

            state.against = probe(settings.against, settings.model, settings.cache_dir)
            state.notes.append(f"--sdperf-against: 'vs baseline' is this environment over "
                               f"{settings.against} ({state.against_differences()}); no baseline "
                               "was read or written")
    except (UsageError, VariantError, AgainstError) as exc:
        raise pytest.UsageError(str(exc)) from None
    _check_baselines(state)
    config.stash[STATE] = state
    if settings.enabled and _xdist_workers(config):
        config.issue_config_time_warning(pytest.PytestWarning(
            "pytest-sdperf: timings taken while pytest-xdist runs tests in parallel compete for "
            "the same cores and are not trustworthy; results and baselines stay consistent "
            "(file lock), but record and gate latency without -n"), stacklevel=2)


def _check_baselines(state: SdperfState) -> None:
    """A damaged baseline file is a usage error before any worker is started (naming the file
    and the fix); --sdperf-update-all replaces it, keeping a .bak copy."""
    from .baselines import BaselineError

    s = state.settings
    if not s.enabled or s.update_all:
        return
    try:
        state.store.entries()
    except BaselineError as exc:
        raise pytest.UsageError(str(exc)) from None


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
    chosen = state.settings.variants is not None  # --sdperf-variants: show its expansion
    for spec in state.selected if chosen else state.registry:
        reason = unavailable_reason(spec)
        needs = ", ".join(spec.requires) + (", CUDA" if spec.needs_cuda else "")
        tr.write_line(f"{spec.name:28} {spec.family:10} {'runs here' if not reason else 'cannot run'}")
        tr.write_line(f"    {spec.description}")
        tr.write_line(f"    needs: {needs or 'nothing extra'}" + (f"; {reason}" if reason else ""))
    for pattern in [] if chosen else state.registry.patterns():
        tr.write_line(f"{pattern.shown:28} {'pattern':10} (any value, e.g. as listed above)")
        tr.write_line(f"    {pattern.description}")
    tr.write_line("compose any of these with '+', e.g. torch-bf16+dpm-solver+tome")
    return 0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``sdperf_variant`` with the selected variants (ids are their names), and
    ``sdperf_sweep`` with each combination of list-valued --sdperf-set settings (ids
    ``name=value``), where any is given."""
    state = metafunc.config.stash[STATE]
    if "sdperf_variant" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("sdperf")
        try:
            run = parse_marker_kwargs(marker.kwargs if marker else {}, metafunc.definition.nodeid).run
        except (ValueError, TypeError):
            run = None  # pytest_collection_modifyitems reports it
        names = [spec.name for spec in state.selected if run is None or run.runs(spec.name)]
        metafunc.parametrize("sdperf_variant", names, ids=names, indirect=True)
    sweep = state.settings.swept_sets()
    if "sdperf_sweep" in metafunc.fixturenames and sweep:
        ids = ["-".join(f"{k}={v}" for k, v in combo.items()) for combo in sweep]
        metafunc.parametrize("sdperf_sweep", sweep, ids=ids, indirect=True)


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: the checks counted are the ones run
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
    scenarios: set[pytest.Item] = set()  # tests whose LoadGen run adds a throughput check
    for item in items:
        marker = item.get_closest_marker("sdperf")
        protocol = None
        if marker is not None:
            if marker.args:
                raise pytest.UsageError(f"{item.nodeid}: the sdperf marker takes keywords only")
            try:
                run = parse_marker_kwargs(marker.kwargs, item.nodeid).run
            except (ValueError, TypeError) as exc:
                raise pytest.UsageError(str(exc)) from None
            protocol = run.protocol
            if run.scenario is not None:
                scenarios.add(item)
        wanted = (protocol is None or protocol in settings.protocols or "all" in settings.protocols
                  or Path(str(item.path)).resolve() in named)
        (kept if wanted else deselected).append(item)
        uses = marker is not None or any(f in getattr(item, "fixturenames", ()) for f in FIXTURES)
        if uses and not settings.enabled:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
    # the whole selection's latency checks, a shard's too: the suite's false-alarm rate is the
    # merged run's (interval.suite_z); a scenario test's throughput check is one more
    config.stash[STATE].latency_checks = max(1, sum(
        ("sdperf_gate" in getattr(i, "fixturenames", ())) * (1 + (i in scenarios)) for i in kept))
    if settings.shard is not None:
        kept, dropped = _shard(config.stash[STATE], kept)
        deselected += dropped
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _shard(state: SdperfState, items: list[pytest.Item]) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """(this shard's items, the others) by ``sharding.split`` on the baseline file's durations;
    the shard's tests and the whole selection go in the results header (``sdperf merge``)."""
    from .baselines import BaselineError
    from .sharding import recorded_durations, split

    shard = state.settings.shard
    assert shard is not None
    try:
        durations = recorded_durations(state.store.entries(), state.settings.model)
    except BaselineError:
        durations = {}  # reported before any worker starts (_check_baselines)
    ids = [item.nodeid for item in items]
    mine = set(split(ids, durations, shard.count)[shard.index - 1])
    state.shard = {"index": shard.index, "count": shard.count, "collected": ids,
                   "tests": [i for i in ids if i in mine],
                   "recorded_s": round(sum(durations.get(i, 0.0) for i in mine), 1),
                   "latency_checks": state.latency_checks}
    return [i for i in items if i.nodeid in mine], [i for i in items if i.nodeid not in mine]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A benchmark test runs with its reports held back until its outcome is known: a suspect
    is confirmed after the session's other tests (later.py); other tests are left to pytest."""
    state = item.config.stash.get(STATE, None)
    if state is None or not state.settings.enabled \
            or "sdperf_measurement" not in getattr(item, "fixturenames", ()):
        return None
    state.later.run_protocol(item, nextitem)
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    """After the session's tests, the suspects held for a confirmation (later.py) run again."""
    outcome = yield
    state = session.config.stash.get(STATE, None)
    if state is not None and outcome.excinfo is None:
        state.later.run_held(session)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Add up each test's duration (setup, call, teardown): a baseline entry written this
    session records it, and ``--sdperf-shard`` balances shards by it."""
    state = item.config.stash.get(STATE, None)
    if state is not None:
        state.durations[item.nodeid] = state.durations.get(item.nodeid, 0.0) + call.duration


def pytest_collection_finish(session: pytest.Session) -> None:
    """With --sdperf and benchmark tests to run, start the fork server's imports now, so they
    overlap with what comes before the first worker; long builds report to the terminal."""
    from . import progress

    state = session.config.stash.get(STATE, None)
    if state is None or not state.settings.enabled or session.config.option.collectonly:
        return
    tr: Any = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        progress.set_reporter(functools.partial(_live_line, session.config, tr))
    if any(f in getattr(item, "fixturenames", ()) for item in session.items for f in FIXTURES):
        state.start_fork_server()


def _live_line(config: pytest.Config, tr: Any, text: str) -> None:
    """A line on the terminal now, during a test (past pytest's output capture, as live
    logging writes)."""
    capman: Any = config.pluginmanager.get_plugin("capturemanager")
    if capman is None:
        tr.write_line(f"sdperf: {text}")
        return
    with capman.global_and_fixture_disabled():
        tr.write_line(f"sdperf: {text}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Flush queued baseline writes once; write --sdperf-json, the history and --sdperf-html."""
    from . import progress
    from .baselines import BaselineError
    from .report import write_json

    progress.set_reporter(None)
    state = session.config.stash.get(STATE, None)
    if state is None or not state.settings.enabled:
        return
    state.close()
    if state.shard is not None and not state.shard["tests"] \
            and session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK  # an empty shard is not an error
        state.notes.append(f"shard {state.settings.shard.label if state.settings.shard else ''} has no "
                           f"tests (of {len(state.shard['collected'])} selected): nothing to run")
    try:
        if state._store is not None:
            state.store.set_durations(state.durations)
            state.written += state.store.flush(state.header(), force=state.settings.update_all)
    except BaselineError as exc:
        state.notes.append(f"baselines not written: {exc}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state.settings.benchmark_json:
        from .interop import write_benchmark_json

        write_benchmark_json(state.settings.benchmark_json, state.records)
        state.written.append(state.settings.benchmark_json)
    if state.settings.bmf_path:
        from .atomic import atomic_write_text
        from .merge import bmf

        atomic_write_text(state.settings.bmf_path, json.dumps(bmf(state.records), indent=1, sort_keys=True) + "\n")
        state.written.append(state.settings.bmf_path)
    if state.settings.json_path:
        write_json(state.settings.json_path, state.header(), state.records,
                   state.reference_name())
        state.written.append(state.settings.json_path)
    history = None
    if state.settings.history and state.shard is not None:
        state.notes.append(f"history not recorded by shard {state.shard['index']}/{state.shard['count']}: "
                           "append the merged run once (sdperf merge OUT.json SHARD.json... --history URL)")
    elif state.settings.history:
        history = _record_history(state)
    if state.settings.html_path:
        from .html_report import write_html

        write_html(state.settings.html_path, state.header(), state.records,
                   state.reference_name(), history)
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
                               state.reference_name(), time.monotonic() - state.started)
