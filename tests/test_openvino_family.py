"""The OpenVINO family: recipes from the registry's composition, the IR cache, IR-folder input, offline
calibration and throughput mode, on the embedded tiny model (one shared export)."""

from __future__ import annotations

import functools
import json
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest

from pytest_sdperf.variants import openvino_cache
from pytest_sdperf.variants.base import BuildContext, ModelRef
from pytest_sdperf.variants.builtin import register_builtin
from pytest_sdperf.variants.openvino_family import Recipe, recipe_for
from pytest_sdperf.variants.registry import VariantRegistry
from pytest_sdperf.workload import Workload

# Small and quick; the dynamic-shape export serves any size.
WORKLOAD = Workload(steps=3, height=64, width=64)


@functools.cache
def builtin_registry() -> VariantRegistry:
    registry = VariantRegistry()
    register_builtin(registry)
    return registry


def ctx_for(model: ModelRef, cache: Path, variant: str, **settings: str) -> BuildContext:
    """The context the worker gives ``variant``'s loader: its name and its merged recipe."""
    spec = builtin_registry().get(variant)
    return BuildContext(model=model, workload=WORKLOAD, cache_dir=cache, settings=settings,
                        variant=spec.name, recipe=spec.recipe)


# --- recipes: pure, no OpenVINO needed ---------------------------------------------------


def test_stacked_parts_make_one_recipe(tmp_path: Path) -> None:
    model = ModelRef("tiny", str(tmp_path), "tiny-x")
    recipe = recipe_for(ctx_for(model, tmp_path, "ov-int8-hybrid+ov-tome", tome_ratio="0.3"))
    assert recipe == Recipe(weights="hybrid", static=True, tome_ratio=0.3)
    assert recipe_for(ctx_for(model, tmp_path, "ov-async", ov_requests="3")).requests == 3
    # streams follow the requests unless set apart (issue #17)
    assert recipe_for(ctx_for(model, tmp_path, "ov-async", ov_requests="3")).streams == 3
    apart = recipe_for(ctx_for(model, tmp_path, "ov-async", ov_requests="4", ov_streams="2",
                               ov_async_form="threads"))
    assert (apart.requests, apart.streams, apart.form) == (4, 2, "threads")
    assert recipe_for(ctx_for(model, tmp_path, "ov-fp32")) == Recipe()


def test_recipe_is_read_from_the_context_not_the_name(tmp_path: Path) -> None:
    model = ModelRef("tiny", str(tmp_path), "tiny-x")
    spec = builtin_registry().get("ov-static+ov-int8-weights+ov-async")
    unnamed = BuildContext(model=model, workload=WORKLOAD, cache_dir=tmp_path, recipe=spec.recipe)
    assert recipe_for(unnamed) == Recipe(weights="int8", static=True, requests=2, streams=2)
    misnamed = BuildContext(model=model, workload=WORKLOAD, cache_dir=tmp_path,
                            variant="ov-int8-hybrid+ov-tome")
    assert recipe_for(misnamed) == Recipe()


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    model = ModelRef("tiny", str(tmp_path), "tiny-x")
    with pytest.raises(ValueError, match="tome_ratio='0.9'.*below 0.75"):
        recipe_for(ctx_for(model, tmp_path, "ov-tome", tome_ratio="0.9"))
    with pytest.raises(ValueError, match="ov_requests='0'"):
        recipe_for(ctx_for(model, tmp_path, "ov-async", ov_requests="0"))
    with pytest.raises(ValueError, match="ov_streams='0'"):
        recipe_for(ctx_for(model, tmp_path, "ov-async", ov_streams="0"))
    with pytest.raises(ValueError, match="ov_async_form='fibers': must be one of callbacks, threads"):
        recipe_for(ctx_for(model, tmp_path, "ov-async", ov_async_form="fibers"))
    with pytest.raises(ValueError, match="ov_mmap='maybe': must be true or false"):
        recipe_for(ctx_for(model, tmp_path, "ov-fp32", ov_mmap="maybe"))
    assert recipe_for(ctx_for(model, tmp_path, "ov-fp32", ov_mmap="false")).mmap is False


class _FakeRequest:
    """An infer request whose inference is a sleep on a timer thread, then its callback (as
    OpenVINO's runtime calls it), for the callbacks form's driver without OpenVINO."""

    def __init__(self, seconds: float, log: list[str], name: str) -> None:
        self.seconds, self.log, self.name = seconds, log, name
        self.callback: Any = None

    def set_callback(self, callback: Any, userdata: Any) -> None:
        self.callback = callback

    def start_async(self, inputs: Any, share_inputs: bool = True) -> None:
        import threading

        self.log.append(f"{self.name} start")
        threading.Timer(self.seconds, self.callback, args=(None,)).start()

    def wait(self) -> None:
        pass


def test_callbacks_form_resumes_generations_as_their_requests_finish(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #17 item 3: one thread, generations resumed in the order their inferences end, so a
    quick one runs its next stage while a slow one still computes, and they overlap in time."""
    import queue
    import time

    from pytest_sdperf.variants import openvino_async as oa

    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    counter = [0]
    log: list[str] = []
    monkeypatch.setattr(oa, "_copied_results", lambda request: request.name)

    def generation(name: str, seconds: float, calls: int) -> str:
        call = oa._Yielding(_FakeRequest(seconds, log, name), finished, counter)
        outputs = [call({}) for _ in range(calls)]
        log.append(f"{name} done")
        return f"{name}:{len(outputs)}"

    start = time.perf_counter()
    results, most = oa.drive([functools.partial(generation, "slow", 0.3, 2),
                              functools.partial(generation, "quick", 0.05, 4)], finished)
    elapsed = time.perf_counter() - start
    assert results == ["slow:2", "quick:4"] and counter == [6] and most == 2
    # the quick generation finished all four of its calls while the slow one's first computed
    assert log.index("quick done") < log.index("slow done")
    assert log[:2] == ["slow start", "quick start"] and log.count("quick start") == 4
    assert elapsed < 0.6 + 0.2 + 0.3  # overlapped: 0.6 s for the slow one, not 0.6 + 0.2


def test_a_stalled_request_fails_the_callbacks_form_instead_of_hanging() -> None:
    import queue

    from pytest_sdperf.variants import openvino_async as oa

    class Lost(_FakeRequest):
        def start_async(self, inputs: Any, share_inputs: bool = True) -> None:
            pass  # never finishes

    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    call = oa._Yielding(Lost(0.0, [], "lost"), finished, [0])
    with pytest.raises(RuntimeError, match="no inference finished in 0 s with 1 in flight"):
        oa.drive([lambda: call({})], finished, stall_s=0.1)


def test_precision_is_the_devices_unless_set(tmp_path: Path) -> None:
    """Issue #16: no INFERENCE_PRECISION_HINT by default; ov_precision=f32|bf16|f16 forces one."""
    model = ModelRef("tiny", str(tmp_path), "tiny-x")
    assert recipe_for(ctx_for(model, tmp_path, "ov-fp32")).precision is None
    assert recipe_for(ctx_for(model, tmp_path, "ov-static", ov_precision="bf16")).precision == "bf16"
    with pytest.raises(ValueError, match="ov_precision='f64': must be one of f32, bf16, f16"):
        recipe_for(ctx_for(model, tmp_path, "ov-fp32", ov_precision="f64"))


@pytest.mark.parametrize("variant", ["ov-fp32", "ov-int8-weights", "ov-int8-hybrid+ov-tome"])
def test_precision_is_not_part_of_any_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """Precision is chosen when compiling: every precision loads the same export and quantization."""
    from pytest_sdperf.variants.openvino_family import ir_folder

    keys: list[tuple[str, dict[str, Any]]] = []

    def record(cache_dir: Path, stage: str, model_key: str, recipe: Any, build: Any) -> Any:
        keys.append((stage, dict(recipe)))
        return openvino_cache.CacheEntry(cache_dir / stage, True, 0.0)

    monkeypatch.setattr(openvino_cache, "cached_build", record)
    model = ModelRef("tiny", str(tmp_path), "tiny-x")
    seen = []
    for settings in ({}, {"ov_precision": "f32"}, {"ov_precision": "bf16"}):
        ctx = ctx_for(model, tmp_path, variant, **settings)
        keys.clear()
        ir_folder(ctx, recipe_for(ctx), {"cache_hit": True})
        seen.append(list(keys))
    assert seen[0] and seen[0] == seen[1] == seen[2]


def test_calibration_prompts_ship_with_the_package() -> None:
    from pytest_sdperf.variants.openvino_build import calibration_prompts

    prompts = calibration_prompts()
    assert len(prompts) >= 50 and len(set(prompts)) == len(prompts)
    assert not any(p.startswith("#") for p in prompts)


# --- the cache (a cheap copy stands in for an export) -------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "openvino_model.xml").write_text("<net/>")
    (folder / "openvino_model.bin").write_bytes(b"\0" * 64)
    return folder


def build_copy(source: Path) -> Any:
    return functools.partial(shutil.copytree, source, dirs_exist_ok=True)


def test_second_use_is_a_cache_hit(tmp_path: Path, source: Path) -> None:
    first = openvino_cache.cached_build(tmp_path, "export", "m-1", {}, build_copy(source))
    second = openvino_cache.cached_build(tmp_path, "export", "m-1", {}, build_copy(source))
    assert (first.hit, second.hit) == (False, True)
    assert second.path == first.path and second.build_s == pytest.approx(first.build_s)
    assert openvino_cache.ir_size_bytes(second.path) == 64 + len("<net/>")


def test_any_key_change_builds_anew(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = openvino_cache.cached_build(tmp_path, "export", "m-1", {}, build_copy(source))
    recipe = openvino_cache.cached_build(tmp_path, "export", "m-1", {"r": 1}, build_copy(source))
    model = openvino_cache.cached_build(tmp_path, "export", "m-2", {}, build_copy(source))
    versions = {**openvino_cache.library_versions(), "openvino": "1999.0"}
    monkeypatch.setattr(openvino_cache, "library_versions", lambda: versions)
    upgraded = openvino_cache.cached_build(tmp_path, "export", "m-1", {}, build_copy(source))
    assert not any(e.hit for e in (recipe, model, upgraded))
    assert len({e.path for e in (base, recipe, model, upgraded)}) == 4
    built = json.loads((upgraded.path / openvino_cache.BUILD_INFO).read_text())
    assert built["versions"]["openvino"] == "1999.0"


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_damaged_entry_is_rebuilt(tmp_path: Path, source: Path, damage: str) -> None:
    entry = openvino_cache.cached_build(tmp_path, "export", "m-1", {}, build_copy(source))
    victim = entry.path / "openvino_model.bin"
    if damage == "truncate":
        victim.write_bytes(b"\0" * 10)
    elif damage == "delete":
        victim.unlink()
    else:
        (entry.path / "sdperf-manifest.json").write_text("{not json")
    again = openvino_cache.cached_build(tmp_path, "export", "m-1", {}, build_copy(source))
    assert not again.hit and victim.read_bytes() == b"\0" * 64


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-source"
    with pytest.raises(RuntimeError, match="FileNotFoundError|No such file"):
        openvino_cache.cached_build(tmp_path, "export", "m-1", {}, build_copy(missing))
    assert [p.name for p in (tmp_path / "openvino").iterdir() if p.suffix != ".lock"] == []


# --- the real thing, on the embedded model (one export shared by the tests below) ---------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRef, Path]:
    """The embedded model in a fresh cache, with its ov-fp32 export built once."""
    pytest.importorskip("openvino")
    pytest.importorskip("optimum.intel")
    from pytest_sdperf.models.source import resolve_model
    from pytest_sdperf.variants.openvino_family import load_openvino

    cache = tmp_path_factory.mktemp("sdc")
    model = resolve_model("tiny", cache)
    pipeline = load_openvino(ctx_for(model, cache, "ov-fp32"))
    assert pipeline.info["cache_hit"] is False and pipeline.info["export_s"] > 0
    return model, cache


def generate(pipeline: Any, ctx: BuildContext) -> Any:
    from pytest_sdperf.measure.latency import StageClock
    from pytest_sdperf.variants.build import make_generate

    call, _digest = make_generate(pipeline, ctx, StageClock(pipeline.pipe))
    return call()


@pytest.mark.slow
def test_export_is_reused_and_gets_the_workload_latents(tiny: tuple[ModelRef, Path]) -> None:
    from pytest_sdperf.variants.openvino_family import load_openvino

    model, cache = tiny
    ctx = ctx_for(model, cache, "ov-static")
    pipeline = load_openvino(ctx)
    assert pipeline.info["cache_hit"] is True and "cache_build_s" not in pipeline.info
    first, second = generate(pipeline, ctx), generate(pipeline, ctx)
    # OpenVINO's pipeline would draw its own noise; with the workload's latents, calls agree.
    assert first.shape == (1, 64, 64, 3) and abs(first - second).max() < 1e-5
    assert pipeline.info["model_size_bytes"] > 0 and pipeline.info["compile_s"] > 0


@pytest.mark.slow
def test_precision_is_read_back_and_ov_precision_forces_f32(tiny: tuple[ModelRef, Path]) -> None:
    """By default the compiled models use the CPU plugin's own choice (bf16 where the CPU has
    it natively, reference B), read back into the info; ov_precision=f32 forces float32,
    on the same cached IR."""
    import openvino as ov

    from pytest_sdperf.variants.openvino_family import load_openvino

    model, cache = tiny
    device = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    chosen = load_openvino(ctx_for(model, cache, "ov-fp32")).info
    assert chosen["ov_precision"] == device and "ov_precision_hint" not in chosen
    forced = load_openvino(ctx_for(model, cache, "ov-fp32", ov_precision="f32")).info
    assert forced["ov_precision"] == "f32" and forced["ov_precision_hint"] == "f32"
    assert forced["ir"] == chosen["ir"] and forced["cache_hit"] is True
    # the UNet's layers, read back from the runtime model, follow the precision (#19)
    assert forced["ov_unet_layers"] == {"Convolution": "f32", "FullyConnected": "f32"}
    assert set(chosen["ov_unet_layers"].values()) == {device}


@pytest.mark.slow
def test_ir_folder_input_needs_no_export(tiny: tuple[ModelRef, Path], tmp_path: Path) -> None:
    from pytest_sdperf.models.source import resolve_model
    from pytest_sdperf.variants.openvino_family import ir_folder, load_openvino
    from pytest_sdperf.worker import SkipVariant

    model, cache = tiny
    exported = ir_folder(ctx_for(model, cache, "ov-fp32"), Recipe(), {"cache_hit": True})
    ir_model = resolve_model(str(shutil.copytree(exported, tmp_path / "my-ir")), cache)
    assert ir_model.kind == "openvino"
    empty_cache = tmp_path / "cache"
    ctx = ctx_for(ir_model, empty_cache, "ov-fp32")
    pipeline = load_openvino(ctx)
    assert pipeline.info["source"] == "openvino-ir" and not empty_cache.exists()
    reference = generate(load_openvino(ctx_for(model, cache, "ov-fp32")), ctx)
    assert abs(generate(pipeline, ctx) - reference).max() < 1e-5
    with pytest.raises(SkipVariant, match="already an OpenVINO IR folder"):
        load_openvino(ctx_for(ir_model, empty_cache, "ov-tome"))


IR_SUITE = """
import pytest

@pytest.mark.sdperf(steps=4, height=64, width=64)
def test_gen(sdperf_measurement, sdperf_gate):
    sdperf_gate.check(sdperf_measurement)
"""


@pytest.mark.slow
def test_an_ir_folder_is_measured_against_ov_fp32_through_the_gate(
        tiny: tuple[ModelRef, Path], pytester: pytest.Pytester) -> None:
    """Issue #16: with no PyTorch model (an IR folder, as reference A's QAT models are
    published), ov-fp32 is the reference: its images, the paired reference, the speedups."""
    from pytest_sdperf.variants.openvino_family import ir_folder

    model, cache = tiny
    exported = ir_folder(ctx_for(model, cache, "ov-fp32"), Recipe(), {"cache_hit": True})
    ir = shutil.copytree(exported, pytester.path / "my-ir")
    pytester.makepyfile(test_ir=IR_SUITE)
    out = pytester.path / "r.json"
    result = pytester.runpytest_subprocess(
        "--sdperf", "--sdperf-model", str(ir), "--sdperf-variants", "torch-fp32,ov-fp32,ov-static",
        "--sdperf-cache-dir", str(cache), "--sdperf-baselines", str(pytester.path / "bl"),
        "--sdperf-rounds", "3", "--sdperf-json", str(out))
    result.assert_outcomes(passed=2, skipped=1)  # torch-fp32 cannot run on an IR folder
    result.stdout.fnmatch_lines(["*reference: ov-fp32, not torch-fp32: --sdperf-model is an "
                                 "OpenVINO IR folder*"])
    doc = json.loads(out.read_text())
    assert doc["reference_variant"] == "ov-fp32"
    records = {r["variant"]: r for r in doc["results"]}
    assert records["ov-static"]["info"]["paired_with"]["variant"] == "ov-fp32"
    assert records["ov-static"]["ssim"] > 0.9 and records["ov-fp32"]["ssim"] == 1.0
    assert list((pytester.path / "bl" / "references").rglob("*.png"))  # made by ov-fp32


@pytest.mark.slow
def test_int8_weights_are_smaller(tiny: tuple[ModelRef, Path], tmp_path: Path) -> None:
    from pytest_sdperf.variants.openvino_build import compress_weights
    from pytest_sdperf.variants.openvino_cache import ir_size_bytes
    from pytest_sdperf.variants.openvino_family import ir_folder

    model, cache = tiny
    base = ir_folder(ctx_for(model, cache, "ov-fp32"), Recipe(), {"cache_hit": True})
    compress_weights(base, tmp_path / "int8")
    assert ir_size_bytes(tmp_path / "int8") < 0.4 * ir_size_bytes(base)


@pytest.mark.slow
def test_int8_weights_compute_type_is_read_from_the_compiled_unet(tiny: tuple[ModelRef, Path]) -> None:
    """#19: 8-bit weight compression ran at 107% of the float32 GEMM peak on sd15-arch here:
    on a CPU with VNNI the plugin quantizes the FullyConnected layers' activations at run time,
    so they compute in int8, and the variant is held to the int8 peak."""
    from pytest_sdperf.host import cpu_info
    from pytest_sdperf.measure.efficiency import compute_type
    from pytest_sdperf.measure.peak import native_type
    from pytest_sdperf.variants.openvino_family import load_openvino

    model, cache = tiny
    info = load_openvino(ctx_for(model, cache, "ov-int8-weights", ov_precision="f32")).info
    layers = info["ov_unet_layers"]
    assert layers["Convolution"] == "f32"  # not compressed here: f32 as forced
    int8 = layers["FullyConnected"] in ("u8", "i8")
    assert compute_type(info) == ("int8" if int8 else "float32")
    vnni = native_type(cpu_info(), "int8")  # (4, ...) with VNNI/AMX, (2, ...) with AVX2 alone
    if vnni is not None and vnni[0] == 4:
        assert int8, layers


@pytest.mark.slow
def test_memory_split_puts_the_mapped_ir_in_file_backed_pages(tiny: tuple[ModelRef, Path]) -> None:
    """#19: a call's peak RSS splits into anonymous and file-backed pages that add up to it, and
    the IR's weights, memory-mapped by default, are resident in the file-backed part (read from
    /proc/self/smaps: the pages mapped from the IR's .bin files). ov_mmap=false is not checked
    here: a mapping made earlier in this process (the fixture's load) would still be counted."""
    from pytest_sdperf.measure.memory import peak_rss_of
    from pytest_sdperf.variants.openvino_family import load_openvino

    model, cache = tiny
    ctx = ctx_for(model, cache, "ov-fp32")  # OpenVINO's default: the IR memory-mapped
    pipeline = load_openvino(ctx)
    generate(pipeline, ctx)  # warmed up, as the worker measures
    rss = peak_rss_of(lambda: generate(pipeline, ctx))
    ir = Path(pipeline.info["ir"]).resolve()
    weights = sum(f.stat().st_size for f in ir.glob("*/*.bin"))
    assert rss.peak is not None and rss.file_after is not None and rss.peak_anon is not None
    assert rss.peak_anon + rss.file_after == rss.peak
    mapped = _resident_from(ir)
    assert 0.5 * weights < mapped <= rss.file_after


def _resident_from(folder: Path) -> int:
    """Bytes resident in this process's mappings of files under ``folder`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and ":" not in fields[0]:  # a mapping's header line
            inside = len(fields) >= 6 and fields[5].startswith(str(folder))
        elif inside and fields[:1] == ["Rss:"]:
            total += int(fields[1]) * 1024
    return total


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


@pytest.mark.slow
def test_hybrid_calibrates_offline_on_the_shipped_prompts(
    tiny: tuple[ModelRef, Path], tmp_path: Path, no_network: None
) -> None:
    import openvino as ov

    from pytest_sdperf.variants import openvino_build as ob
    from pytest_sdperf.variants.openvino_family import ir_folder

    model, cache = tiny
    base = ir_folder(ctx_for(model, cache, "ov-fp32"), Recipe(), {"cache_hit": True})
    seen: list[str] = []

    class Spy:
        def __init__(self, pipe: Any) -> None:
            self.pipe = pipe

        def __getattr__(self, name: str) -> Any:
            return getattr(self.pipe, name)

        def __call__(self, **kwargs: Any) -> Any:
            seen.append(kwargs["prompt"])
            return self.pipe(**kwargs)

    data = ob.collect_unet_inputs(Spy(ob.load_ir(base)), WORKLOAD, samples=10)
    assert len(data) == 10 and seen == ob.calibration_prompts()[: len(seen)]
    ob.hybrid_quantize(base, tmp_path / "q", wl=WORKLOAD, samples=4, static=False)
    unet = ov.Core().read_model(str(tmp_path / "q" / "unet" / "openvino_model.xml"))
    assert any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in unet.get_ops())


@pytest.mark.slow
@pytest.mark.parametrize("form", ["callbacks", "threads"])
def test_async_runs_requests_in_flight(tiny: tuple[ModelRef, Path], tmp_path: Path,
                                       form: str) -> None:
    """Through a real worker with a short timeout: a hang fails this test, never CI."""
    from pytest_sdperf.protocol import WorkerRequest
    from pytest_sdperf.runner import run_worker
    from pytest_sdperf.variants.builtin import register_builtin
    from pytest_sdperf.variants.registry import VariantRegistry

    model, cache = tiny
    registry = VariantRegistry()
    register_builtin(registry)
    request = WorkerRequest(
        variant=registry.get("ov-async"), model=model, workload=WORKLOAD, cache_dir=cache,
        device="cpu", out_dir=tmp_path / "images", rounds=2, warmup=0,
        # the threaded form also reads its IR without memory-mapping (issue #19's setting)
        settings={"ov_requests": "3", "ov_streams": "2", "ov_async_form": form,
                  **({"ov_mmap": "false"} if form == "threads" else {})},
    )
    outcome = run_worker(request, tmp_path, 300.0, {})
    assert outcome.measured is not None, outcome.failure_text("ov-async", 300.0)
    info = outcome.measured.info
    assert (info["requests"], info["streams"], info["async_form"]) == (3, 2, form)
    assert info["images_per_s"] > 0 and info["requests_agree"] is True
    assert info["requests_max_diff"] <= 2e-3
    # every model call went through start_async: text encoder, 3 steps' UNet, VAE decoder per
    # generation, 3 generations a call, warm-up call plus 2 rounds at least
    assert info["dispatches"] >= 3 * 5 * 3
    if form == "callbacks":
        assert info["most_in_flight"] == 3  # all three generations' requests at once
    else:
        assert info["ov_mmap"] is False


@pytest.mark.slow
def test_a_loadgen_sample_of_ov_async_counts_every_request(tiny: tuple[ModelRef, Path],
                                                          tmp_path: Path) -> None:
    """Issue #17: one LoadGen sample is one call, which makes an image in each request in
    flight, so the scenario's images/s is twice its samples/s at two requests."""
    pytest.importorskip("mlperf_loadgen")
    from pytest_sdperf.measure.scenario import Scenario
    from pytest_sdperf.protocol import WorkerRequest
    from pytest_sdperf.runner import run_worker

    model, cache = tiny
    request = WorkerRequest(
        variant=builtin_registry().get("ov-async"), model=model, workload=WORKLOAD,
        cache_dir=cache, device="cpu", out_dir=tmp_path / "images", rounds=2, warmup=0,
        settings={"ov_requests": "2"}, scenario=Scenario("offline", duration_s=1.0),
    )
    outcome = run_worker(request, tmp_path, 300.0, {})
    assert outcome.measured is not None, outcome.failure_text("ov-async", 300.0)
    scenario = outcome.measured.info["scenario"]
    assert scenario["images_per_sample"] == 2 and scenario["samples_per_s"] > 0
    assert scenario["images_per_s"] == pytest.approx(2 * scenario["samples_per_s"])
    assert len(outcome.measured.images) == 1



@pytest.mark.slow
def test_img2img_through_openvino(tiny: tuple[ModelRef, Path], tmp_path: Path) -> None:
    """Issue #16: optimum's image-to-image pipeline on the same IR (static shapes and
    requests in flight too) draws the same noise as diffusers': float32 agrees with torch."""
    import dataclasses

    from pytest_sdperf.variants.openvino_family import load_openvino
    from pytest_sdperf.variants.torch_family import load_torch

    model, cache = tiny
    wl = Workload(steps=4, height=64, width=64, task="img2img", strength=0.5)

    def i2i(variant: str, **settings: str) -> tuple[Any, Any]:
        ctx = dataclasses.replace(ctx_for(model, cache, variant, **settings), workload=wl)
        pipeline = load_openvino(ctx)
        return pipeline, generate(pipeline, ctx)

    torch_ctx = dataclasses.replace(ctx_for(model, cache, "torch-fp32"), workload=wl)
    from pytest_sdperf.variants.task import for_task

    reference = load_torch(torch_ctx)
    for_task(reference, torch_ctx)
    expected = generate(reference, torch_ctx)
    for variant in ("ov-fp32", "ov-static"):
        pipeline, image = i2i(variant, ov_precision="f32")
        assert type(pipeline.pipe).__name__ == "OVStableDiffusionImg2ImgPipeline"
        assert pipeline.info["task"] == "img2img" and abs(image - expected).max() < 1e-3, variant
    pipeline, image = i2i("ov-async", ov_precision="f32", ov_requests="2")
    assert pipeline.info["requests_agree"] is True and abs(image - expected).max() < 1e-3


RACE = """
import threading, openvino as ov
from pytest_sdperf.variants.openvino_async import prime_bindings
prime_bindings()
barrier = threading.Barrier(8)
def first_conversion():
    barrier.wait()
    ov.Type.f32.to_dtype()
threads = [threading.Thread(target=first_conversion) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_primed_bindings_survive_threads_converting_at_once() -> None:
    """The ov-async deadlock, reduced: without prime_bindings() this script hung 21 times in
    30 here (a static's guard and the GIL taken in opposite orders); with it, never."""
    import subprocess
    import sys

    for _ in range(5):
        subprocess.run([sys.executable, "-c", RACE], check=True, timeout=60)
