"""The ``sdperf_knee`` fixture: a latency-capped sweep measured point by point (sweep.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .fixtures import counts, marker_args
from .keys import STATE
from .workload import Workload

if TYPE_CHECKING:
    from .gate import Gate
    from .measure.latency import LatencyStats
    from .results import Measurement, WorkerFailure
    from .variants.registry import VariantSpec


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
    from . import progress
    from .confirm import confirmed
    from .host import usable_cpus
    from .models.source import ModelError
    from .results import Measurement, WorkerFailure
    from .sweep import SweepResult, per_image, point_of, stop_reason

    state = request.config.stash[STATE]
    protocol = marker_args(request.node).run
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
    rounds, warmup = counts(protocol, s)

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
        progress.say(f"sweep {sdperf_variant.name} {sweep.setting}={value}: "
                     f"{points[-1].images_per_s:.3g} images/s, p90 {points[-1].latency_s * 1000.0:.0f} ms")
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

        found = confirmed(m, sdperf_gate, state, measure_knee, tmp_path / "confirmation")
    if sdperf_variant.name != state.reference_name():
        failed = state.ensure_references(sdperf_workload, tmp_path)
        if failed is not None:
            return failed
    return found
