"""The worker's measuring state: a variant built and warmed, timed one round at a time, then
finished into a ``protocol.WorkerResult``.

``Bench.prepare`` builds the variant, makes the first call and the warm-up calls, and measures
peak memory (before any timed round, so nothing else the process did counts in it); ``round``
times one call and the calibration workload after it; ``finish`` counts the UNet's FLOPs,
saves the last call's images and returns the result. The worker (``worker.py``) runs these
either by itself (fixed or auto rounds, ``worker.measure``) or as the parent drives it one round
at a time (``--serve``), so the parent can interleave the rounds of two processes.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import glibc_malloc, progress
from .host import usable_cpus

if TYPE_CHECKING:
    from .measure.memory import MemoryStats
    from .measure.scenario import Scenario, ScenarioResult
    from .protocol import WorkerRequest, WorkerResult
    from .variants.base import BuildContext, Pipeline


class Bench:
    """One variant in this process, ready to be timed (see the module docstring)."""

    def __init__(self, request: WorkerRequest) -> None:
        self.request = request
        self.samples: list[float] = []
        self.marks: list[float] = []  # the calibration before round 1, then after each round

    def prepare(self) -> None:
        """Build, first call, warm-up calls, peak memory; then the first calibration."""
        from .measure.calibration import make_calibration
        from .measure.latency import StageClock
        from .variants.base import BuildContext
        from .variants.build import build_pipeline, make_generate, sync_fn

        r = self.request
        ctx = BuildContext(model=r.model, workload=r.workload, cache_dir=r.cache_dir, device=r.device,
                           settings=dict(r.settings), variant=r.variant.name,
                           recipe=dict(r.variant.recipe))
        start = time.perf_counter()
        progress.beat("build", phase="variant")
        self.pipeline = build_pipeline(r.variant.to_dict(), ctx)
        self.build_s = time.perf_counter() - start
        progress.beat("built", phase="variant")
        self.ctx, self.sync = ctx, sync_fn(ctx.device)
        self.clock = StageClock(self.pipeline.pipe, self.sync)
        self.calls = calls = _CallCounter()
        generate, self.latents_sha = make_generate(self.pipeline, ctx, self.clock)
        self.generate = calls.wrap(generate)
        warmup_call = _warmup_generate(self.pipeline, ctx, self.clock, r.warmup_steps)
        warm = calls.wrap(warmup_call) if warmup_call else self.generate
        self.images = _timed(warm, self.sync)[1]
        # Time a loader spent filling a cache (exporting, quantizing) is reported on its own.
        cache_s = float(self.pipeline.info.get("cache_build_s", 0.0))
        self.first_call_s = time.perf_counter() - start - cache_s
        # The last warm-up call, when it is a call of the workload, is also the peak-RSS call.
        fold = r.warmup > 0 and warmup_call is None
        for _ in range(r.warmup - fold):
            warm()
        self.memory = _memory(self.generate, ctx.device, r.memray_capture)
        self.clock.reset()
        self.use_torch = "torch" in sys.modules
        self.calibrate = make_calibration(ctx.device, self.use_torch)
        self.marks.append(self.calibrate())

    def round(self) -> float:
        """Time one call (seconds), then the calibration after it."""
        seconds, self.images = _timed(self.generate, self.sync)
        self.samples.append(seconds)
        self.marks.append(self.calibrate())
        return seconds

    def restart(self) -> float:
        """Forget the rounds so far and run the calibration afresh (its seconds)."""
        self.samples.clear()
        self.marks = [self.calibrate()]
        return self.marks[-1]

    def round_only(self) -> float:
        """Time one call, without calibration (a paired variant's or reference's round)."""
        seconds, self.images = _timed(self.generate, self.sync)
        self.samples.append(seconds)
        return seconds

    def stats(self, reference: list[float] | None = None) -> Any:
        """The rounds so far as LatencyStats (``reference``: the paired reference's rounds)."""
        from .measure.calibration import kernel_name
        from .measure.latency import LatencyStats

        calibration = _around(self.marks) if len(self.marks) > 1 else []
        return LatencyStats.from_samples(self.samples, self.first_call_s, self.clock.stages(),
                                         calibration, kernel_name(self.use_torch), reference or [])

    def finish(self, reference: list[float] | None = None) -> WorkerResult:
        """FLOPs, the GEMM peak where asked, the last call's images: the result."""
        from .protocol import OK, WorkerResult

        r, stats = self.request, self.stats(reference)
        progress.beat("build", phase="FLOP count and GEMM peak")
        efficiency = _efficiency(self.pipeline, self.ctx, stats.stages)
        # The machine's GEMM peak is measured once per session, by a worker that has a UNet.
        peak = _machine_peak(r, self.ctx.device) if efficiency and r.measure_peak else {}
        progress.beat("built", phase="FLOP count and GEMM peak")
        info = dict(self.pipeline.info)
        info[glibc_malloc.INFO_KEY] = glibc_malloc.mode_of(os.environ)  # what glibc read at start
        throughput = None
        if r.scenario is not None:
            before = self.calibrate()
            found = self.run_scenario(r.scenario, stats.p50)
            info["scenario"] = found.to_dict()
            throughput = self.throughput(found, (before + self.calibrate()) / 2, reference)
        return WorkerResult(
            status=OK, build_s=self.build_s, latency=stats, memory=self.memory,
            images=_save_images(self.images, r.out_dir), info=info,
            environment=_environment_report(), latents_sha256=self.latents_sha,
            device=self.ctx.device, efficiency=efficiency, machine_peak=peak, throughput=throughput,
        )

    def throughput(self, found: ScenarioResult, calibration_s: float,
                   reference: list[float] | None) -> Any:
        """The scenario run's seconds per image as LatencyStats, the throughput gate's figure
        (None when no sample completed). Sample i: sample i's call over the images it made;
        its calibration is the workload's run around the whole LoadGen run; its paired
        reference, the reference variant's median round over its images (the same workload,
        one request): the ratio is per image, like with like. The reference's rounds were timed
        beside this variant's just before the LoadGen run, not beside each sample."""
        import numpy as np

        from .measure.calibration import kernel_name
        from .measure.latency import LatencyStats

        if not found.service_s or found.images_per_sample < 1:
            return None
        per_image = [s / found.images_per_sample for s in found.service_s]
        n = len(per_image)
        ref: list[float] = []
        if reference:
            ref = [float(np.median(reference)) / max(len(np.asarray(self.images)), 1)] * n
        return LatencyStats.from_samples(per_image, None, {}, [calibration_s] * n,
                                         kernel_name(self.use_torch), ref)

    def run_scenario(self, scenario: Scenario, expected_s: float) -> ScenarioResult:
        """LoadGen's ``scenario`` around this pipeline (measure/loadgen.py), its logs beside the
        images; the query sample library is ``QSL_SAMPLES`` seeds of the workload (seed + i).
        ``expected_s``: one call's median seconds from the timed rounds."""
        import numpy as np

        from .measure.loadgen import run_scenario
        from .variants.build import make_generate

        wl = self.ctx.workload
        calls = [self.generate]  # each call reports itself to the watchdog (self.calls)
        for i in range(1, QSL_SAMPLES):
            ctx = dataclasses.replace(self.ctx, workload=dataclasses.replace(wl, seed=wl.seed + i))
            calls.append(self.calls.wrap(make_generate(self.pipeline, ctx, self.clock)[0]))
        progress.beat("build", phase=f"LoadGen {scenario.name} run")
        # One call of a throughput pipeline (ov-async) makes its image in each request in flight.
        per_call = len(np.asarray(self.images)) * int(self.pipeline.info.get("requests", 1))
        found = run_scenario(scenario, calls, expected_s or self.first_call_s,
                             self.request.out_dir.parent / "loadgen", images_per_sample=per_call)
        progress.beat("built", phase=f"LoadGen {scenario.name} run")
        return found


# The query sample library of a scenario run: the workload's prompt at this many seeds.
QSL_SAMPLES = 4


class _CallCounter:
    """Wraps the calls a worker times so that each completed one is reported to the watchdog."""

    def __init__(self) -> None:
        self.n = 0

    def wrap(self, call: Callable[[], Any]) -> Callable[[], Any]:
        def beating() -> Any:
            start = time.perf_counter()
            out = call()
            self.n += 1
            progress.beat("call", n=self.n, seconds=time.perf_counter() - start)
            return out

        return beating


def _warmup_generate(pipeline: Any, ctx: Any, clock: Any, steps: int | None) -> Any:
    """A call at ``steps`` steps for the untimed calls (reference B warms up with 10), or None."""
    from .variants.build import make_generate

    if not steps or steps == ctx.workload.steps:
        return None
    wl = dataclasses.replace(ctx.workload, steps=steps)
    return make_generate(pipeline, dataclasses.replace(ctx, workload=wl), clock)[0]


def _around(marks: list[float]) -> list[float]:
    """Each round's calibration: the mean of the runs just before and just after it."""
    return [(a + b) / 2 for a, b in zip(marks[:-1], marks[1:], strict=True)]


def _timed(call: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    sync()
    start = time.perf_counter()
    out = call()
    sync()
    return time.perf_counter() - start, out


def _efficiency(pipeline: Pipeline, ctx: BuildContext, stages: Mapping[str, float]) -> dict[str, Any]:
    """FLOPs of one step's UNet call and the FLOP/s reached; {} when they cannot be counted."""
    if "torch" not in sys.modules:  # a pipeline without torch has no UNet to count
        return {}
    from .measure.efficiency import step_efficiency

    try:
        found = step_efficiency(pipeline.pipe, ctx.workload, pipeline.info, stages, ctx.model.location,
                                ctx.cache_dir)
    except Exception as exc:  # an unusual UNet costs the figure, never the measurement
        print(f"sdperf: UNet FLOPs not counted: {exc!r}", file=sys.stderr)
        return {}
    return found.to_dict() if found else {}


def _machine_peak(request: WorkerRequest, device: str) -> dict[str, Any]:
    """GEMM peaks over the session's CPUs (or on the GPU), asked of one worker per session."""
    from .measure.peak import measured_peaks

    cpus = set(request.machine_cpus or usable_cpus())
    try:
        return {k: dataclasses.asdict(v) for k, v in measured_peaks(device, cpus).items()}
    except (RuntimeError, OSError) as exc:
        print(f"sdperf: GEMM peak not measured: {exc!r}", file=sys.stderr)
        return {}


def _memory(generate: Callable[[], Any], device: str, capture: Path | None) -> MemoryStats:
    """Peak RSS (one call), memray's peak heap (one call) and, on CUDA, the peak allocation."""
    from .measure.memory import MemoryStats, cuda_peak_of, memray_peak_of, peak_rss_of

    rss = peak_rss_of(generate)
    peak_heap = memray_peak_of(generate, capture)
    cuda = cuda_peak_of(generate) if device.startswith("cuda") else None
    return MemoryStats(rss.peak, peak_heap, rss.before, cuda, rss.peak_anon, rss.file_after)


def _save_images(images: Any, out_dir: Path) -> tuple[Path, ...]:
    import numpy as np

    from .measure.similarity import save_png, to_uint8

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(to_uint8(np.asarray(images))):
        path = out_dir / f"image-{i}.png"
        save_png(img, path)
        paths.append(path)
    return tuple(paths)


def _environment_report() -> dict[str, Any]:
    """What the worker really ran under, so environment variants can be verified."""
    report: dict[str, Any] = {
        key: os.environ.get(key)
        for key in ("LD_PRELOAD", "MALLOC_CONF", "OMP_NUM_THREADS", "KMP_AFFINITY", "KMP_HW_SUBSET", "KMP_BLOCKTIME",
                    *glibc_malloc.ENV_KEYS)
    }
    report["affinity"] = sorted(usable_cpus())
    report["pid"] = os.getpid()
    if "torch" in sys.modules:
        report["torch_threads"] = sys.modules["torch"].get_num_threads()
    try:
        maps = Path("/proc/self/maps").read_text()
        report["allocator_loaded"] = sorted(
            {name for name in ("jemalloc", "tcmalloc") if name in maps}
        )
        # Every OpenMP runtime mapped; with env-iomp, libiomp5 is first in symbol lookup.
        report["openmp_loaded"] = sorted({name for name in ("libiomp5", "libgomp", "libomp.so")
                                          if name in maps})
    except OSError:
        report["allocator_loaded"] = report["openmp_loaded"] = []
    return report
