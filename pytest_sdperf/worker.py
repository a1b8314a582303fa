"""The measuring process: ``python -m pytest_sdperf.worker REQUEST.json RESULT.json``.

One variant per process, so its memory is its own, a crash costs one test, and environment
variants (LD_PRELOAD, thread counts, pinning) apply before anything heavy is imported.
The result file is plain JSON; images are written as PNG into the request's ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import progress
from .atomic import atomic_write_text
from .host import usable_cpus
from .variants.base import SkipVariant

__all__ = ["SkipVariant", "main", "measure", "parse_cpus"]  # SkipVariant: its old home

if TYPE_CHECKING:  # the protocol imports numpy: only after the worker has pinned itself
    from .measure.latency import LatencyStats
    from .measure.memory import MemoryStats
    from .protocol import AutoTarget, WorkerRequest, WorkerResult
    from .variants.base import BuildContext, Pipeline
    from .variants.registry import VariantSpec


def parse_cpus(text: str) -> set[int]:
    """'0-2,5' -> {0, 1, 2, 5}."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def main(argv: list[str]) -> int:
    """Entry point; exit status 0 whenever a result file was written."""
    raw = json.loads(Path(argv[0]).read_text())
    result_path = Path(argv[1])
    progress.start(Path(raw["progress"]) if raw.get("progress") else None)
    try:
        if raw["variant"].get("cpus"):
            _pin(raw["variant"]["cpus"])
        from .protocol import WorkerRequest, WorkerResult

        result = measure(WorkerRequest.from_dict(raw))
    except SkipVariant as exc:
        from .protocol import WorkerResult

        result = WorkerResult.skipped(str(exc))
    except Exception:
        traceback.print_exc()
        from .protocol import WorkerResult

        result = WorkerResult.failed(traceback.format_exc())
    atomic_write_text(result_path, json.dumps(result.to_dict(), indent=1))
    return 0


def _pin(cpus: str) -> None:
    """Pin this process to ``cpus``; CPUs this machine does not offer skip the variant."""
    try:
        os.sched_setaffinity(0, parse_cpus(cpus))
    except (OSError, ValueError) as exc:
        raise SkipVariant(f"cannot pin the worker to CPUs {cpus} ({exc}); this machine "
                          f"offers CPUs {sorted(usable_cpus())}") from None


def measure(request: WorkerRequest) -> WorkerResult:
    """Build the variant, time it, measure its memory, save its images."""
    from .measure.calibration import kernel_name, make_calibration
    from .measure.latency import LatencyStats, StageClock
    from .protocol import OK, WorkerResult
    from .variants.base import BuildContext
    from .variants.build import build_pipeline, make_generate, sync_fn

    ctx = BuildContext(
        model=request.model,
        workload=request.workload,
        cache_dir=request.cache_dir,
        device=request.device,
        settings=dict(request.settings),
        variant=request.variant.name,
        recipe=dict(request.variant.recipe),
    )
    start = time.perf_counter()
    progress.beat("build", phase="variant")
    pipeline = build_pipeline(request.variant.to_dict(), ctx)
    build_s = time.perf_counter() - start
    progress.beat("built", phase="variant")
    sync = sync_fn(ctx.device)
    clock = StageClock(pipeline.pipe, sync)
    calls = _CallCounter()
    generate, latents_sha = make_generate(pipeline, ctx, clock)
    generate = calls.wrap(generate)
    warmup_call = _warmup_generate(pipeline, ctx, clock, request.warmup_steps)
    warm = calls.wrap(warmup_call) if warmup_call else generate
    images = _timed(warm, sync)[1]
    # Time a loader spent filling a cache (exporting, quantizing) is reported on its own.
    first_call_s = time.perf_counter() - start - float(pipeline.info.get("cache_build_s", 0.0))
    for _ in range(request.warmup):
        warm()
    memory: MemoryStats | None = None
    reference = None
    if request.reference is not None:
        # The reference pipeline must not count in this variant's memory: measure that first.
        memory = _memory(generate, ctx.device, request.memray_capture)
        progress.beat("build", phase="paired reference")
        reference = calls.wrap(_reference_generate(request.reference, ctx, sync, request.warmup))
        progress.beat("built", phase="paired reference")
    clock.reset()
    use_torch = "torch" in sys.modules
    calibrate = make_calibration(ctx.device, use_torch)
    samples: list[float] = []
    ref_samples: list[float] = []
    marks = [calibrate()]  # the calibration before round 1, then after each round

    def so_far() -> LatencyStats:
        return LatencyStats.from_samples(samples, calibration=_around(marks), reference=ref_samples)

    while _more_rounds(request, samples, so_far):
        if reference is not None and len(samples) % 2:  # ABBA order: drift hits both sides
            ref_samples.append(_timed(reference, sync)[0])
        seconds, images = _timed(generate, sync)
        if reference is not None and not len(samples) % 2:
            ref_samples.append(_timed(reference, sync)[0])
        samples.append(seconds)
        marks.append(calibrate())
    stats = LatencyStats.from_samples(samples, first_call_s, clock.stages(), _around(marks),
                                      kernel_name(use_torch), ref_samples)
    if memory is None:
        memory = _memory(generate, ctx.device, request.memray_capture)
    progress.beat("build", phase="FLOP count and GEMM peak")
    efficiency = _efficiency(pipeline, ctx, stats.stages)
    # The machine's GEMM peak is measured once per session, by a worker that has a UNet.
    peak = _machine_peak(request, ctx.device) if efficiency and request.measure_peak else {}
    progress.beat("built", phase="FLOP count and GEMM peak")
    return WorkerResult(
        status=OK, build_s=build_s, latency=stats, memory=memory,
        images=_save_images(images, request.out_dir), info=dict(pipeline.info),
        environment=_environment_report(), latents_sha256=latents_sha, device=ctx.device,
        efficiency=efficiency, machine_peak=peak,
    )


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


def _reference_generate(spec: VariantSpec, ctx: Any, sync: Callable[[], None], warmup: int) -> Any:
    """The reference variant built in this worker, called once plus ``warmup`` times."""
    from .measure.latency import StageClock
    from .variants.build import build_pipeline, make_generate

    rctx = dataclasses.replace(ctx, variant=spec.name, recipe=dict(spec.recipe))
    pipeline = build_pipeline(spec.to_dict(), rctx)
    generate = make_generate(pipeline, rctx, StageClock(pipeline.pipe, sync))[0]
    for _ in range(1 + warmup):
        generate()
    return generate


def _more_rounds(request: WorkerRequest, samples: list[float], so_far: Callable[[], LatencyStats]) -> bool:
    """Fixed rounds; or auto rounds (rounds 0), at least ``min_rounds``, then until time is up or:

    - with no baseline to compare with (``auto.target`` None: a first recording), the median
      of the gated ratios (over the paired reference, else over the calibration) is known to
      +-``halfwidth``;
    - with a baseline, the gate's comparison is decided: a regression stops at once; a pass
      stops once the median is known as above; an inconclusive comparison samples on.

    ``so_far()`` gives the rounds taken as LatencyStats; only auto rounds ask for it."""
    if request.rounds > 0:
        return len(samples) < request.rounds
    auto = request.auto
    if len(samples) < auto.min_rounds:
        return True
    if len(samples) >= auto.max_rounds or sum(samples) >= auto.budget_s:
        return False
    return _undecided(so_far(), auto.target, auto.halfwidth)


def _undecided(stats: LatencyStats, target: AutoTarget | None, halfwidth: float) -> bool:
    """Whether auto rounds should sample on, given the rounds so far (see ``_more_rounds``)."""
    from .compare import latency_figures
    from .judge import Figures, Status, judge
    from .measure.latency import median_ci_halfwidth
    from .workload import Thresholds

    if target is None:
        ratios = stats.paired() or stats.relative() or stats.samples
        return median_ci_halfwidth(ratios) > halfwidth
    limits = Thresholds(latency_pct=target.latency_pct)
    status = judge(Figures(stats), Figures(target.baseline), limits, target.mode, target.reference).status
    if status is Status.REGRESSION:
        return False
    figures = latency_figures(target.mode, stats, target.baseline, target.reference)
    return status is Status.INCONCLUSIVE or median_ci_halfwidth(figures.current) > halfwidth


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
        for key in ("LD_PRELOAD", "MALLOC_CONF", "OMP_NUM_THREADS", "KMP_AFFINITY")
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
    except OSError:
        report["allocator_loaded"] = []
    return report



if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
