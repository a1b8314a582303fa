"""The fixtures of a benchmark test: its settings, workload and variant, the measurement (a
fresh worker paired with the reference, a suspect confirmed in fresh workers) and the gate.

plugin.py imports them into its namespace, where pytest finds them; ``sdperf_knee`` is in
knee.py.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .config import Settings
from .keys import STATE
from .workload import MarkerArgs, Protocol, Workload, locate_init_image, parse_marker_kwargs, resolve_workload

if TYPE_CHECKING:
    from .gate import Gate
    from .measure.latency import LatencyStats
    from .results import Measurement, WorkerFailure
    from .variants.registry import VariantSpec


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
    args = marker_args(request.node)
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
    from .confirm import confirm, hold_suspect
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
    protocol = marker_args(request.node).run
    s = state.settings
    if protocol.sweep is not None:
        raise pytest.UsageError(f"{request.node.nodeid}: sdperf marker sweep= is run by the "
                                "sdperf_knee fixture; use sdperf_knee instead of sdperf_measurement")
    rounds, warmup = counts(protocol, s)
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
        m = confirm(held.measurement, held.check, sdperf_gate, state, measure, tmp_path / "confirmation")
    else:
        m = measure(tmp_path)
        if isinstance(m, Measurement) and (first := sdperf_gate.latency_again(m)) is not None:
            hold_suspect(request, m, first, state)
            m = confirm(m, first, sdperf_gate, state, measure, tmp_path / "confirmation")
    if sdperf_variant.name != state.reference_name():
        failed = state.ensure_references(sdperf_workload, tmp_path)
        if failed is not None:
            return failed
    return m


def marker_args(node: pytest.Item) -> MarkerArgs:
    """The test's ``sdperf`` marker keywords, validated (none: the defaults)."""
    marker = node.get_closest_marker("sdperf")
    return parse_marker_kwargs(marker.kwargs if marker else {}, node.nodeid)


def counts(protocol: Protocol, s: Settings) -> tuple[int | None, int | None]:
    """The protocol's rounds and warmup calls, unless the command line gave its own (None:
    the options')."""
    rounds = protocol.rounds if protocol.rounds is not None and not s.rounds_given else None
    warmup = protocol.warmup if protocol.warmup is not None and not s.warmup_given else None
    return rounds, warmup


@pytest.fixture
def sdperf_gate(request: pytest.FixtureRequest, sdperf_variant: VariantSpec, tmp_path: Path) -> Gate:
    """Compare a measurement with the baseline: ``sdperf_gate.check(sdperf_measurement)``.

    Fails the test on a regression (naming metric, value, baseline, limit and files) and on a
    first recording; see the README for the rules.
    """
    from .gate import Gate

    thresholds = marker_args(request.node).thresholds
    state = request.config.stash[STATE]
    return Gate(state, request.node.nodeid, sdperf_variant, thresholds, tmp_path)
