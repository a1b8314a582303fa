"""Helpers for testing pytest-sdperf itself (and plugins built on it) with ``pytester``.

A fake pipeline stands in for diffusers: it needs no torch, runs in milliseconds, and can be
made slower, noisier, hungrier, or made to crash or hang, through transforms. Use it as::

    def test_cycle(pytester):
        run = SdperfRun(pytester)
        run.write_suite()
        run.run("--sdperf-variants", "fake").assert_outcomes(failed=1)   # records
        run.run("--sdperf-variants", "fake").assert_outcomes(passed=1)   # compares
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .variants.base import BuildContext, Pipeline
from .variants.registry import VariantRegistry, VariantSpec

HERE = "pytest_sdperf.testing"


class _Output:
    def __init__(self, images: np.ndarray) -> None:
        self.images = images


class FakePipe:
    """Turns latents into an image, sleeping ``delay`` seconds per step."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.noise = 0.0
        self.hold_bytes = 0
        self.mode = "ok"
        self.later_delay = delay
        self.call_steps: list[int] = []  # steps of every call, in order (reported in info)

    def encode_prompt(self, prompt: str) -> int:
        """Stands in for text encoding (timed as a stage)."""
        return len(prompt)

    def __call__(self, **kw: Any) -> _Output:
        if self.mode == "crash":
            os._exit(3)
        if self.mode == "hang":
            time.sleep(3600)
        if self.mode == "hang-later" and self.call_steps:
            _hold_the_gil_forever()
        if self.mode == "slow-later" and self.call_steps:
            self.delay = self.later_delay
        if self.mode == "raise":
            raise RuntimeError("fake pipeline failure")
        self.encode_prompt(kw["prompt"])
        self.call_steps.append(kw["num_inference_steps"])
        held = np.ones(self.hold_bytes // 8) if self.hold_bytes else None
        callback = kw.get("callback_on_step_end")
        for step in range(kw["num_inference_steps"]):
            time.sleep(self.delay)
            if callback:
                callback(self, step, step, {})
        del held
        return _Output(self._image(kw["latents"], kw["height"], kw["width"]))

    def _image(self, latents: np.ndarray, height: int, width: int) -> np.ndarray:
        scale = height // latents.shape[2]
        img = latents[:, :3].repeat(scale, axis=2).repeat(scale, axis=3).transpose(0, 2, 3, 1)
        img = 1.0 / (1.0 + np.exp(-img))
        if self.noise:
            img = img + np.random.default_rng(1).normal(0, self.noise, img.shape)
        out: np.ndarray = np.clip(img, 0, 1).astype(np.float32)
        return out


def _hold_the_gil_forever() -> None:
    """Block in native code without releasing the GIL, as a deadlocked extension does
    (ctypes.PyDLL keeps the GIL across the call; a signal ends one sleep, not the loop)."""
    import ctypes

    libc = ctypes.PyDLL(None)
    while True:
        libc.sleep(3600)


def load_fake(ctx: BuildContext) -> Pipeline:
    """Loader: a FakePipe with ``fake_delay`` seconds per step (default 0.01), times
    ``$SDPERF_FAKE_ENV_SLOWDOWN`` (default 1: how fast this environment is, so tests can tell two
    environments apart), built in ``fake_build_s`` seconds (default 0: a build stage reported
    as "fake build")."""
    from .progress import beat

    build_s = ctx.setting("fake_build_s", 0.0, float)
    if build_s:
        beat("stage", name="fake build")
        time.sleep(build_s)
    pipe = FakePipe(ctx.setting("fake_delay", 0.01, float) * float(os.environ.get("SDPERF_FAKE_ENV_SLOWDOWN", "1")))
    return Pipeline(
        pipe=pipe, backend="torch", prepare_latents=lambda lat, _p, _c: lat,
        info={"call_steps": pipe.call_steps},
    )


def slower(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: ``fake_slowdown`` times the per-step delay (default 3)."""
    pipeline.pipe.delay *= ctx.setting("fake_slowdown", 3.0, float)


def slower_once(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: 3x slower in the first worker only: the one that creates the file named by
    setting ``fake_once_file`` (a transient slowdown, as another job on the machine makes)."""
    marker = Path(ctx.setting("fake_once_file", "", str))
    try:
        marker.open("x").close()
    except FileExistsError:
        return
    pipeline.pipe.delay *= 3.0


def noisy(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: adds Gaussian noise (sigma 0.2) to the image."""
    pipeline.pipe.noise = 0.2


def hungry(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: holds an extra ``fake_hold_mb`` MiB (default 400) during each call."""
    pipeline.pipe.hold_bytes = int(ctx.setting("fake_hold_mb", 400.0, float) * 2**20)


def _mode(name: str) -> Any:
    def transform(pipeline: Pipeline, ctx: BuildContext) -> None:
        pipeline.pipe.mode = name
    return transform


def slow_later(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: calls after the first take ``fake_later_delay`` s per step (default 0.6):
    slow, but each step still reports progress."""
    pipeline.pipe.mode = "slow-later"
    pipeline.pipe.later_delay = ctx.setting("fake_later_delay", 0.6, float)


def in_flight(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: a throughput pipeline with a known law (the sweep's test double). One call
    makes the workload's images for each of ``fake_requests`` requests in flight (default 1;
    ``info["requests"]``, as ov-async reports): N = requests x images per prompt images at
    once, in ``T1 * max(1 + a * (N - 1), N / c)``: T1 one image's call, ``a`` =
    ``fake_inflight_cost`` (default 0: images overlap for free) what each further image adds,
    ``c`` = ``fake_cores`` (default 1000) images the machine makes at full speed at once. So
    throughput N / latency grows until N = c, then stays flat, whether N is raised by requests
    or by the batch."""
    requests = ctx.setting("fake_requests", 1, int)
    n = requests * ctx.workload.images_per_prompt
    cost = ctx.setting("fake_inflight_cost", 0.0, float)
    cores = ctx.setting("fake_cores", 1000.0, float)
    pipeline.pipe.delay *= max(1.0 + cost * (n - 1), n / cores)
    pipeline.info["requests"] = requests


crash = _mode("crash")
hang = _mode("hang")
hang_later = _mode("hang-later")
fail = _mode("raise")


def fake_specs() -> list[VariantSpec]:
    """The fake variants: ``fake`` (use it as --sdperf-reference) and its faulty siblings."""
    def spec(name: str, *transforms: str) -> VariantSpec:
        return VariantSpec(
            name=name, family="fake", description=f"test double: {name}",
            loader=f"{HERE}:load_fake", transforms=tuple(f"{HERE}:{t}" for t in transforms),
        )
    return [spec("fake"), spec("fake-slow", "slower"), spec("fake-slow-once", "slower_once"),
            spec("fake-noisy", "noisy"),
            spec("fake-hungry", "hungry"), spec("fake-crash", "crash"),
            spec("fake-hang", "hang"), spec("fake-raise", "fail"),
            spec("fake-hang-later", "hang_later"), spec("fake-slow-later", "slow_later"),
            spec("fake-inflight", "in_flight")]


def register_fake_variants(registry: VariantRegistry) -> None:
    """Add the fake variants to a registry (call from ``pytest_sdperf_add_variants``)."""
    for spec in fake_specs():
        registry.add(spec)


def make_fake_model(folder: Path) -> Path:
    """A folder that passes --sdperf-model's checks (safetensors, model_index.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FakePipeline"}))
    (folder / "weights.safetensors").write_bytes(b"\0" * 16)
    return folder


CONFTEST = """
from pytest_sdperf.testing import register_fake_variants

def pytest_sdperf_add_variants(registry):
    register_fake_variants(registry)
"""

SUITE = """
import pytest

@pytest.mark.sdperf(steps=5, height=32, width=32{extra})
def test_gen(sdperf_measurement, sdperf_gate):
    sdperf_gate.check(sdperf_measurement)
"""


class SdperfRun:
    """Drives pytest-sdperf inside a ``pytester`` sandbox with the fake variants."""

    def __init__(self, pytester: Any, rounds: int = 5, options: tuple[str, ...] = ()) -> None:
        self.pytester = pytester
        self.root = Path(pytester.path)
        self.model = make_fake_model(self.root / "fake-model")
        self.rounds = rounds
        self.options = options  # added to every run, before its own arguments

    def write_suite(self, marker_extra: str = "") -> None:
        """conftest registering the fakes and one benchmark test."""
        self.pytester.makeconftest(CONFTEST)
        self.pytester.makepyfile(test_suite=SUITE.format(extra=marker_extra))

    def args(self, *extra: str) -> list[str]:
        """The standard arguments plus ``extra``."""
        return [
            "--sdperf", "--sdperf-model", str(self.model), "--sdperf-reference", "fake",
            "--sdperf-cache-dir", str(self.root / "cache"), "--sdperf-rounds", str(self.rounds),
            "--sdperf-latency-pct", "50",
            "--sdperf-warmup", "0", "--sdperf-device", "cpu", "-p", "no:cacheprovider", "-p", "no:randomly",
            *self.options, *extra,
        ]

    def run(self, *extra: str) -> Any:
        """Run pytest in a subprocess (workers need a real interpreter)."""
        return self.pytester.runpytest_subprocess(*self.args(*extra))

    def baseline_file(self) -> Path:
        """The one baseline JSON the runs wrote."""
        files = [p for p in (self.root / "baselines").glob("*.json") if ".obtained" not in p.name]
        assert len(files) == 1, files
        return files[0]


# --- Faults for the gate-validation harness (pytest_sdperf.validate), on real pipelines ---

def extra_work(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: every call does ``extra_work_pct`` percent more work (default 10; 0: none).

    The call is timed and, before it returns, float32 matmuls run for that share of its
    time on the same threads: a slowdown of exactly that size that computes like a real one
    (it competes for the same cores and caches), inside the timed call.
    """
    import contextlib

    import torch

    pct = ctx.setting("extra_work_pct", 10.0, float) / 100.0
    if pct <= 0:
        return
    a = torch.randn(256, 256)

    @contextlib.contextmanager
    def slower() -> Iterator[None]:
        start = time.perf_counter()
        yield
        until = time.perf_counter() + (time.perf_counter() - start) * pct
        while time.perf_counter() < until:
            a.matmul(a)

    pipeline.contexts.append(slower)


def perturb_unet(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: Gaussian noise (``perturb_scale`` x each tensor's std, default 0.5) on UNet weights."""
    import torch

    scale = ctx.setting("perturb_scale", 0.5, float)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in pipeline.pipe.unet.parameters():
            if param.numel() > 1:
                noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
                param.add_(noise * param.std() * scale)


_HELD: list[Any] = []


def hold_memory(pipeline: Pipeline, ctx: BuildContext) -> None:
    """Transform: allocate and touch ``hold_mb`` MiB (default 400) held for the worker's life."""
    _HELD.append(np.ones(int(ctx.setting("hold_mb", 400.0, float) * 2**20) // 8))
