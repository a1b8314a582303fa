"""PyTorch variants, tested in-process on the embedded tiny model at 64x64 and 2 steps.

Each test loads a fresh pipeline (cheap: the model is cached) and applies the variant's
transforms the way the worker does (``build_pipeline``), then checks what changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from pytest_sdperf.variants import torch_precision, torch_tiny_vae  # noqa: E402
from pytest_sdperf.variants.base import BuildContext, ModelRef, Pipeline  # noqa: E402
from pytest_sdperf.variants.build import build_pipeline, make_generate  # noqa: E402
from pytest_sdperf.variants.builtin import register_builtin  # noqa: E402
from pytest_sdperf.variants.registry import VariantRegistry  # noqa: E402
from pytest_sdperf.worker import SkipVariant  # noqa: E402
from pytest_sdperf.workload import Workload  # noqa: E402

WORKLOAD = Workload(steps=2, height=64, width=64)


class _Clock:
    """Stands in for the worker's StageClock."""

    def on_step_end(self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> Any:
        return kwargs

    def begin(self) -> None:
        pass


@pytest.fixture(scope="module")
def registry() -> VariantRegistry:
    """The built-in variants."""
    reg = VariantRegistry()
    register_builtin(reg)
    return reg


@pytest.fixture(scope="module")
def tiny(request: pytest.FixtureRequest) -> tuple[ModelRef, Path]:
    """The embedded model, built once into pytest's cache folder (kept between runs)."""
    from pytest_sdperf.models.source import resolve_model

    assert request.config.cache is not None
    cache = Path(request.config.cache.mkdir("sdperf-test-cache"))
    return resolve_model("tiny", cache), cache


def context(tiny: tuple[ModelRef, Path], **settings: str) -> BuildContext:
    """A BuildContext for the tiny model, the small workload and ``settings``."""
    return BuildContext(model=tiny[0], workload=WORKLOAD, cache_dir=tiny[1], settings=settings)


def build(registry: VariantRegistry, name: str, ctx: BuildContext) -> Pipeline:
    """Build ``name`` the way the worker does."""
    return build_pipeline(registry.get(name).to_dict(), ctx)


def generate(pipeline: Pipeline, ctx: BuildContext) -> Any:
    """One call with the workload's fixed latents, as float images."""
    call, _digest = make_generate(pipeline, ctx, _Clock())  # type: ignore[arg-type]
    return call()


@pytest.fixture(scope="module")
def reference(registry: VariantRegistry, tiny: tuple[ModelRef, Path]) -> Any:
    """The torch-fp32 images of the small workload."""
    ctx = context(tiny)
    return generate(build(registry, "torch-fp32", ctx), ctx)


def test_tome_is_deterministic_whatever_the_global_rng(
    registry: VariantRegistry, tiny: tuple[ModelRef, Path], reference: Any
) -> None:
    import numpy as np
    import torch

    ctx = context(tiny)
    pipeline = build(registry, "tome", ctx)
    torch.manual_seed(1)
    first = generate(pipeline, ctx)
    torch.manual_seed(2)
    second = generate(pipeline, ctx)
    again = generate(build(registry, "tome", ctx), ctx)
    assert np.array_equal(first, second) and np.array_equal(first, again)
    assert not np.array_equal(first, reference)  # tokens really were merged
    assert pipeline.info["tome_ratio"] == 0.4


def test_unseeded_tomesd_would_differ_between_calls(
    registry: VariantRegistry, tiny: tuple[ModelRef, Path]
) -> None:
    """Why tome seeds every call: tomesd's own generator advances from call to call."""
    import numpy as np

    ctx = context(tiny)
    pipeline = build(registry, "tome", ctx)
    pipeline.contexts.clear()
    assert not np.array_equal(generate(pipeline, ctx), generate(pipeline, ctx))


def test_tome_ratio_setting_is_validated(tiny: tuple[ModelRef, Path],
                                         registry: VariantRegistry) -> None:
    with pytest.raises(ValueError, match="tome_ratio='0.9': must be above 0 and below 0.75"):
        build(registry, "tome", context(tiny, tome_ratio="0.9"))


def test_bf16_with_dpm_solver_and_tome_composes(registry: VariantRegistry,
                                                tiny: tuple[ModelRef, Path]) -> None:
    import torch

    ctx = context(tiny)
    pipeline = build(registry, "torch-bf16+dpm-solver+tome", ctx)
    pipe = pipeline.pipe
    assert pipe.unet.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    images = generate(pipeline, ctx)
    assert images.shape == (1, 64, 64, 3) and images.dtype.name == "float32"


def test_bf16_autocast_mode_keeps_fp32_weights(registry: VariantRegistry,
                                               tiny: tuple[ModelRef, Path]) -> None:
    import torch

    pipeline = build(registry, "torch-bf16", context(tiny, bf16_mode="autocast"))
    assert pipeline.pipe.unet.dtype == torch.float32
    with pipeline.entered():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")


def test_default_attention_replaces_sdpa(registry: VariantRegistry,
                                         tiny: tuple[ModelRef, Path]) -> None:
    pipeline = build(registry, "torch-default-attn", context(tiny))
    kinds = {type(p).__name__ for p in pipeline.pipe.unet.attn_processors.values()}
    assert kinds == {"AttnProcessor"}


def test_vae_tiling_really_tiles_small_images(registry: VariantRegistry,
                                              tiny: tuple[ModelRef, Path]) -> None:
    from unittest import mock

    ctx = context(tiny)
    pipeline = build(registry, "vae-tiling", ctx)
    vae = pipeline.pipe.vae
    assert vae.use_tiling and vae.tile_sample_min_size == 32 and vae.tile_latent_min_size == 4
    with mock.patch.object(type(vae), "tiled_decode", autospec=True,
                           side_effect=type(vae).tiled_decode) as tiled:
        generate(pipeline, ctx)
    assert tiled.called


def test_vae_slicing_and_precomputed_embeds_keep_the_image(
    registry: VariantRegistry, tiny: tuple[ModelRef, Path], reference: Any
) -> None:
    import numpy as np

    ctx = context(tiny)
    pipeline = build(registry, "vae-slicing+precomputed-embeds", ctx)
    assert pipeline.pipe.vae.use_slicing
    assert pipeline.pipe.text_encoder is None and pipeline.pipe.tokenizer is None
    assert pipeline.call_kwargs["prompt"] is None
    assert pipeline.info["released"] == ["text_encoder", "tokenizer"]
    assert np.allclose(generate(pipeline, ctx), reference, atol=1e-5)


def _worker_images(name: str, wl: Workload, tiny: tuple[ModelRef, Path], out: Path) -> list[Any]:
    """``name``'s images of ``wl``, built and generated by a real worker process."""
    from pytest_sdperf.measure.similarity import load_png
    from pytest_sdperf.protocol import WorkerRequest
    from pytest_sdperf.runner import run_worker

    reg = VariantRegistry()
    register_builtin(reg)
    request = WorkerRequest(variant=reg.get(name), model=tiny[0], workload=wl, cache_dir=tiny[1],
                            device="cpu", out_dir=out / "images", rounds=1, warmup=0)
    outcome = run_worker(request, out, 300.0, {})
    assert outcome.measured is not None, outcome.failure_text(name, 300.0)
    return [load_png(path) for path in outcome.measured.images]


@pytest.mark.slow
@pytest.mark.parametrize("images", [2, 4])
def test_precomputed_embeds_with_several_images_per_prompt(
    tiny: tuple[ModelRef, Path], tmp_path: Path, images: int
) -> None:
    """Issue #16: embeddings encoded for N images were repeated N times again by the call
    ("size of tensor a (128) must match ... (256)"); now the worker's N images equal fp32's."""
    from pytest_sdperf.measure.similarity import compare_images

    wl = Workload(steps=2, height=64, width=64, images_per_prompt=images)
    obtained = _worker_images("precomputed-embeds", wl, tiny, tmp_path / "embeds")
    reference = _worker_images("torch-fp32", wl, tiny, tmp_path / "fp32")
    assert len(obtained) == images
    assert compare_images(obtained, reference).ssim > 0.999


def test_tiny_vae_is_built_once_and_swapped_in(registry: VariantRegistry,
                                               tiny: tuple[ModelRef, Path]) -> None:
    ctx = context(tiny)
    pipeline = build(registry, "tiny-vae", ctx)
    assert type(pipeline.pipe.vae).__name__ == "AutoencoderTiny"
    folder = torch_tiny_vae.ensure_tiny_taesd(tiny[1])
    assert folder.parent == tiny[1] / "models" and (folder / "config.json").is_file()
    stamp = (folder / "sdperf-manifest.json").stat().st_mtime_ns
    assert torch_tiny_vae.ensure_tiny_taesd(tiny[1]) == folder
    assert (folder / "sdperf-manifest.json").stat().st_mtime_ns == stamp  # cached, not rebuilt
    assert generate(pipeline, ctx).shape == (1, 64, 64, 3)


def test_tiny_vae_needs_a_taesd_for_other_models(tiny: tuple[ModelRef, Path],
                                                 tmp_path: Path) -> None:
    other = BuildContext(model=ModelRef("diffusers", str(tmp_path), "x"), workload=WORKLOAD,
                         cache_dir=tmp_path)
    with pytest.raises(SkipVariant, match="--sdperf-set taesd=PATH"):
        torch_tiny_vae.taesd_folder(other)
    with pytest.raises(ValueError, match="no config.json"):
        torch_tiny_vae.taesd_folder(context(tiny, taesd=str(tmp_path)))


@pytest.mark.parametrize("name", ["torch-fp16", "model-cpu-offload", "sequential-cpu-offload"])
def test_cuda_only_variants_skip_on_cpu_with_the_reason(
    registry: VariantRegistry, tiny: tuple[ModelRef, Path], name: str
) -> None:
    from pytest_sdperf.variants.availability import cuda_available, unavailable_reason

    if cuda_available():
        pytest.skip("a CUDA device is present: these variants run here")
    assert "needs a CUDA GPU" in str(unavailable_reason(registry.get(name)))
    # Forced onto the CPU anyway (--sdperf-device cpu on a GPU machine), the transform skips.
    with pytest.raises(SkipVariant, match="CUDA"):
        build(registry, name, context(tiny))


def test_ipex_reason_names_the_pins(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    versions = {"intel-extension-for-pytorch": "2.8.0+cpu", "torch": "2.14.1"}
    monkeypatch.setattr(md, "version", lambda name: versions[name])
    reason = torch_precision.ipex_unusable_reason()
    assert reason and "needs torch 2.8.0" in reason and "torch==2.8.0" in reason
    versions["torch"] = "2.8.0+cpu"
    assert torch_precision.ipex_unusable_reason() is None


def test_ipex_skips_here_without_importing_it(registry: VariantRegistry,
                                              tiny: tuple[ModelRef, Path]) -> None:
    import sys

    if torch_precision.ipex_unusable_reason() is None:
        pytest.skip("a matching IPEX is installed: ipex-bf16 runs here")
    with pytest.raises(SkipVariant, match="intel-extension-for-pytorch"):
        build(registry, "ipex-bf16", context(tiny))
    assert "intel_extension_for_pytorch" not in sys.modules


def test_compile_settings(tiny: tuple[ModelRef, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(tiny)
    assert torch_precision._compile_settings(ctx) == ("default", True)
    cuda = BuildContext(model=tiny[0], workload=WORKLOAD, cache_dir=tiny[1], device="cuda")
    assert torch_precision._compile_settings(cuda) == ("reduce-overhead", True)
    with pytest.raises(ValueError, match="compile_mode='fast'"):
        torch_precision._compile_settings(context(tiny, compile_mode="fast"))
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert "C++ compiler" in str(torch_precision.compiler_missing_reason("cpu"))
