"""pytest entry point: options (each with an ini twin), the ``sdperf`` marker, fixtures, hooks."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from . import hookspecs
from .config import OPTIONS, Option, Settings, UsageError, settings_from_config
from .workload import Protocol, Workload, locate_init_image, parse_marker_kwargs, resolve_workload

if TYPE_CHECKING:
    from .compare import Check
    from .gate import Gate
    from .measure.latency import LatencyStats
    from .results import Measurement, WorkerFailure
    from .session import SdperfState  # noqa: F401  (named in a string below)
    from .variants.registry import VariantSpec

STATE = pytest.StashKey["SdperfState"]()
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
    if "init_image" in args.workload:
        fields = locate_init_image(args.workload, request.node.path.parent,
                                   f"{request.node.nodeid}: sdperf marker")
        args = dataclasses.replace(args, workload=fields)
    return resolve_workload(args, default_workload(settings.model), settings.workload_overrides())


@pytest.fixture
def sdperf_variant(request: pytest.FixtureRequest) -> VariantSpec:
    """The VariantSpec under test (parametrized); skips where it cannot run here."""
    state = request.config.stash[STATE]
    spec: VariantSpec = state.registry.get(request.param)
    reason = state.skip_reason(spec)
    if reason:
        pytest.skip(reason)
    return spec


@pytest.fixture
def sdperf_sweep(request: pytest.FixtureRequest) -> dict[str, str]:
    """This test's values of the list-valued --sdperf-set settings (``tome_ratio=0.3,0.5``
    parametrizes every benchmark test, once a value); {} when none is a list."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
def sdperf_measurement(request: pytest.FixtureRequest, sdperf_variant: VariantSpec,
                       sdperf_workload: Workload, sdperf_gate: Gate, sdperf_sweep: dict[str, str],
                       tmp_path: Path) -> Measurement | WorkerFailure:
    """Build the variant in a fresh worker process and measure it (a ``Measurement``).

    With ``--sdperf-rounds auto`` the worker is given the test's baseline latency, and times
    rounds until the gate's comparison is decided (or the time budget is spent). Where this
    workload has no reference image yet, the reference variant is run once to make it.

    A worker that raises, crashes or exceeds ``--sdperf-timeout`` fails this test (in its
    call phase, when the measurement is used) with the worker's output (a ``WorkerFailure``
    stands in for the measurement); a variant that finds it cannot run here skips with its reason.
    """
    from .models.source import ModelError
    from .results import Measurement, WorkerFailure

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
    if protocol.sweep is not None:
        raise pytest.UsageError(f"{request.node.nodeid}: sdperf marker sweep= is run by the "
                                "sdperf_knee fixture; use sdperf_knee instead of sdperf_measurement")
    rounds, warmup = _counts(protocol, s)
    if protocol.scenario is not None:
        from .measure.loadgen import loadgen_missing

        missing = loadgen_missing()
        if missing:
            pytest.skip(missing)

    def measure(workdir: Path, earlier: tuple[LatencyStats, ...] = ()) -> Measurement | WorkerFailure:
        target = (sdperf_gate.latency_target(model.key, sdperf_workload)
                  if (s.rounds if rounds is None else rounds) == 0 else None)
        outcome = state.run(
            sdperf_variant, sdperf_workload, workdir, memray_capture=capture, rounds=rounds,
            warmup=warmup, warmup_steps=protocol.warmup_steps, extra_settings=sdperf_sweep,
            scenario=protocol.scenario,
            target=target.confirming(earlier) if target is not None and earlier else target,
        )
        if outcome.skip_reason is not None:
            pytest.skip(outcome.skip_reason)
        if outcome.measured is None:
            return WorkerFailure(outcome.failure_text(sdperf_variant.name, s.timeout_s),
                                 outcome.status, sdperf_variant.name, model.key, sdperf_workload.key())
        m = Measurement.from_result(sdperf_variant, model, sdperf_workload, outcome.measured)
        return dataclasses.replace(m, info={**m.info, "swept": sdperf_sweep}) if sdperf_sweep else m

    held = state.later.take(request.node.nodeid)
    if held is not None:  # its first reading, held until the session's end (later.py)
        m = _confirm(held.measurement, held.check, sdperf_gate, state, measure, tmp_path / "confirmation")
    else:
        m = measure(tmp_path)
        first = sdperf_gate.latency_again(m) if isinstance(m, Measurement) else None
        if isinstance(m, Measurement) and first is not None:
            _hold_suspect(request, m, first, state)
            m = _confirm(m, first, sdperf_gate, state, measure, tmp_path / "confirmation")
    if sdperf_variant.name != state.reference_name():
        failed = state.ensure_references(sdperf_workload, tmp_path)
        if failed is not None:
            return failed
    return m


@pytest.fixture
def sdperf_knee(request: pytest.FixtureRequest, sdperf_variant: VariantSpec, sdperf_workload: Workload,
                sdperf_gate: Gate, sdperf_sweep: dict[str, str], tmp_path: Path) -> Measurement | WorkerFailure:
    """The latency-capped sweep of the marker's ``sweep=`` setting (sweep.py): the variant is
    measured in a fresh worker per value, in increasing order, until a point's p90 passes
    ``sweep_cap_ms`` or its throughput stops growing. Returns the knee's Measurement, its
    ``throughput`` the knee's seconds per image (``sdperf_gate.check`` gates it) and
    ``info["sweep"]`` the curve; with no point within the cap, the first point's (the gate
    fails the test). A knee that reads as a throughput regression is measured again in fresh
    workers before the test may fail, as any latency regression is."""
    from .host import usable_cpus
    from .models.source import ModelError
    from .results import Measurement, WorkerFailure
    from .sweep import SweepResult, per_image, point_of, stop_reason

    state = request.config.stash[STATE]
    marker = request.node.get_closest_marker("sdperf")
    protocol = parse_marker_kwargs(marker.kwargs if marker else {}, request.node.nodeid).run
    sweep = protocol.sweep
    if sweep is None:
        raise pytest.UsageError(f"{request.node.nodeid}: sdperf_knee needs the sdperf marker's "
                                "sweep='SETTING', sweep_values=(...) and sweep_cap_ms=...")
    if sweep.setting in sdperf_sweep:
        pytest.skip(f"this sweep raises {sweep.setting} itself; --sdperf-set {sweep.setting}=... "
                    "parametrizes the other tests")
    try:
        model = state.model()
    except ModelError as exc:
        return WorkerFailure(str(exc))
    s = state.settings
    rounds, warmup = _counts(protocol, s)

    base = sdperf_workload

    def measure(value: int, workdir: Path) -> Measurement | WorkerFailure:
        # a setting point adds the setting as --sdperf-set would; a batch point runs the
        # workload at that batch; an instances point, that many pinned workers driven as one;
        # each is paired with the reference at the test's own workload
        wl = dataclasses.replace(base, images_per_prompt=value) if sweep.batch else base
        own = sweep.batch or sweep.instances
        extra = dict(sdperf_sweep) if own else {**sdperf_sweep, sweep.setting: str(value)}
        outcome = state.run(sdperf_variant, wl, workdir, rounds=rounds, warmup=warmup,
                            warmup_steps=protocol.warmup_steps, extra_settings=extra,
                            reference_workload=base, instances=value if sweep.instances else 0)
        if outcome.skip_reason is not None:
            pytest.skip(outcome.skip_reason)
        if outcome.measured is None:
            return WorkerFailure(f"sweep {sweep.setting}={value}: "
                                 + outcome.failure_text(sdperf_variant.name, s.timeout_s),
                                 outcome.status, sdperf_variant.name, model.key, wl.key())
        return Measurement.from_result(sdperf_variant, model, wl, outcome.measured)

    def knee_of(m: Measurement, result: SweepResult) -> Measurement:
        """The knee as the test's measurement: seconds per image as its throughput (the
        reference's rounds, made at the test's workload, per image too); a batch knee is
        judged as the test's workload, its first images against that workload's reference."""
        info = {**m.info, "sweep": result.to_dict()}
        if sweep.batch:
            info.update(images_per_call=m.images_per_call, batch=m.workload.images_per_prompt)
        return dataclasses.replace(
            m, throughput=per_image(m.latency, m.images_per_call, base.images_per_prompt), info=info,
            workload=base, images=m.images[:base.images_per_prompt])

    measured: dict[int, Measurement] = {}
    points = []
    stopped = None
    cpus = len(usable_cpus())
    for value in sweep.values:
        if sweep.instances and value > cpus:
            stopped = (f"instances={value}: this machine offers {cpus} CPU(s), one instance each "
                       "at most")
            break
        m = measure(value, tmp_path / f"{sweep.setting}-{value}")
        if not isinstance(m, Measurement):
            return m
        measured[value] = m
        points.append(point_of(value, m.latency.samples, m.images_per_call))
        _live_line(request.config, request.config.pluginmanager.get_plugin("terminalreporter"),
                   f"sweep {sdperf_variant.name} {sweep.setting}={value}: {points[-1].images_per_s:.3g} "
                   f"images/s, p90 {points[-1].latency_s * 1000.0:.0f} ms")
        stopped = stop_reason(points, sweep)
        if stopped:
            break
    if not points:
        pytest.skip(f"sweep {sweep.setting}: {stopped}")
    result = SweepResult(sweep, tuple(points), stopped or "")
    knee = result.knee
    m = knee_of(measured[knee.value if knee else sweep.values[0]], result)
    found: Measurement | WorkerFailure = m
    if knee is not None:  # a knee that reads as regressed is measured again, as in sdperf_measurement
        def measure_knee(workdir: Path, earlier: tuple[LatencyStats, ...] = ()) -> Measurement | WorkerFailure:
            # a knee's points are measured without an auto target: ``earlier`` has no use here
            again = measure(knee.value, workdir)
            return knee_of(again, result) if isinstance(again, Measurement) else again

        found = _confirmed(m, sdperf_gate, state, measure_knee, tmp_path / "confirmation")
    if sdperf_variant.name != state.reference_name():
        failed = state.ensure_references(sdperf_workload, tmp_path)
        if failed is not None:
            return failed
    return found


def _counts(protocol: Protocol, s: Settings) -> tuple[int | None, int | None]:
    """The protocol's rounds and warmup calls, unless the command line gave its own (None:
    the options')."""
    rounds = protocol.rounds if protocol.rounds is not None and not s.rounds_given else None
    warmup = protocol.warmup if protocol.warmup is not None and not s.warmup_given else None
    return rounds, warmup


def _confirmed(m: Measurement, gate: Gate, state: SdperfState,
               measure: Callable[[Path, tuple[LatencyStats, ...]], Measurement | WorkerFailure],
               workdir: Path) -> Measurement | WorkerFailure:
    """A reading of a possible latency regression (a suspect, compare.py), or one its rounds
    left undecided (inconclusive where more rounds would have narrowed it: ``Verdict.undecided``),
    is measured again in fresh workers before the test is judged: the second measurement, with
    the first as ``Measurement.earlier``, is the one judged (pooled with the first where the
    second alone is a suspect too, else alone); the first one's reading alone rides in its info
    (the message and the JSON show both). Its auto rounds sample until that comparison is
    decided (``AutoTarget.confirming``), not until the second reading alone is a suspect:
    stopped there, the pooled reading was often left undecided (inconclusive). A suspect
    that may wait is confirmed after the session's other tests instead (``_hold_suspect``,
    later.py); here it is confirmed at once (``-x``, a sweep's knee)."""
    first = gate.latency_again(m)
    return m if first is None else _confirm(m, first, gate, state, measure, workdir)


def _hold_suspect(request: pytest.FixtureRequest, m: Measurement, first: Check, state: SdperfState) -> None:
    """Where ``m``'s check ``first`` (``Gate.latency_again``) is a suspect and the session will
    reach its end, hold it for a confirmation then (later.py) and skip this first pass (its
    reports are never logged); else return."""
    from . import progress
    from .later import HELD, Held

    nodeid = request.node.nodeid
    if not first.suspect or not state.later.may_hold(request.config, nodeid):
        return
    state.later.hold(nodeid, Held(m, first))
    progress.say(f"{m.variant}: a possible latency regression ({first.measured:.3f}x): measured "
                 f"again in fresh workers after the session's other tests")
    pytest.skip(HELD)


def _confirm(m: Measurement, first: Check, gate: Gate, state: SdperfState,
             measure: Callable[[Path, tuple[LatencyStats, ...]], Measurement | WorkerFailure],
             workdir: Path) -> Measurement | WorkerFailure:
    """``m`` (whose check ``first`` is a suspect or undecided) measured again in fresh workers
    and pooled with it (see ``_confirmed``)."""
    from .compare import FAIL
    from .results import Measurement

    earlier = (*m.earlier, m.latency)
    again = measure(workdir, earlier)
    if not isinstance(again, Measurement):
        return again
    info = {**again.info, "first_measurement": first.message()}
    pooled = dataclasses.replace(again, info=info, earlier=earlier,
                                 earlier_throughput=(*m.earlier_throughput,
                                                     *((m.throughput,) if m.throughput else ())))
    if not first.suspect:
        state.notes.append(f"{m.variant}: a first measurement was left undecided, so fresh workers "
                           f"measured it again: {first.message()}")
        return pooled
    judged = gate.latency_suspect(pooled)
    if judged is None or judged.status != FAIL:
        state.notes.append(f"{m.variant}: a first measurement read a possible latency regression, "
                           f"fresh workers pooled with it did not confirm it: {first.message()}")
    return pooled


@pytest.fixture
def sdperf_gate(request: pytest.FixtureRequest, sdperf_variant: VariantSpec, tmp_path: Path) -> Gate:
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
                               state.reference_name())
