"""Image-to-image workloads (issue #16): the task's marker keywords and their errors, keys that
leave text-to-image's untouched, the init image, and img2img really run through PyTorch (and,
in test_openvino_family, OpenVINO) and through the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_sdperf.workload import (
    Workload,
    locate_init_image,
    parse_marker_kwargs,
    resolve_workload,
)

I2I = Workload(steps=4, height=64, width=64, task="img2img", strength=0.5)


def _png(path: Path, seed: int, size: int = 48) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# --- keys and keywords ---------------------------------------------------------------------


def test_text_to_image_keys_did_not_change() -> None:
    """The committed reference image is named by the default workload's key from before tasks
    existed: adding task fields must not rename it (nor any baseline entry)."""
    key = Workload(steps=10, height=128, width=128).key()
    assert key == "128x128-10st-9240d85ca6"
    assert (Path(__file__).parents[1] / "baselines" / "references" / "tiny-fed9edcfcc40"
            / f"{key}-0.png").is_file()


def test_img2img_key_names_task_strength_and_image_content(tmp_path: Path) -> None:
    made = I2I.key()
    assert "-i2i-" in made and made != Workload(steps=4, height=64, width=64).key()
    assert Workload(**{**I2I.to_dict(), "strength": 0.75}).key() != made
    a, b = _png(tmp_path / "a.png", 1), _png(tmp_path / "b.png", 2)
    same_as_a = _png(tmp_path / "copy-of-a.png", 1)
    keys = [Workload(**{**I2I.to_dict(), "init_image": str(p)}).key() for p in (a, b, same_as_a)]
    assert keys[0] != keys[1] and keys[0] == keys[2] and made not in keys


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"task": "inpaint"}, "task='inpaint' must be one of txt2img, img2img"),
    ({"task": "img2img", "strength": 0}, "strength=0 must be a number in \\(0, 1\\]"),
    ({"task": "img2img", "strength": 1.5}, "strength=1.5 must be"),
    ({"task": "img2img", "strength": "high"}, "strength='high' must be"),
    ({"strength": 0.5}, "strength only apply to task='img2img'"),
    ({"task": "txt2img", "init_image": "x.png"}, "init_image only apply to task='img2img'"),
    ({"task": "img2img", "init_image": 3}, "init_image=3 must be the path of an image file"),
])
def test_bad_task_keywords_name_the_keyword(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_marker_kwargs(kwargs, "t.py::test")


def test_init_image_is_found_beside_the_test_and_checked(tmp_path: Path) -> None:
    _png(tmp_path / "start.png", 3)
    fields = locate_init_image({"task": "img2img", "init_image": "start.png"}, tmp_path, "t")
    assert fields["init_image"] == str((tmp_path / "start.png").resolve())
    with pytest.raises(ValueError, match="init_image='nope.png': no such file"):
        locate_init_image({"init_image": "nope.png"}, tmp_path, "t")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="bad.png is not an image PIL can read"):
        locate_init_image({"init_image": "bad.png"}, tmp_path, "t")


def test_a_strength_that_runs_no_step_is_refused() -> None:
    args = parse_marker_kwargs({"task": "img2img", "strength": 0.3, "steps": 2}, "t")
    with pytest.raises(ValueError, match="steps=2 with strength=0.3 runs none"):
        resolve_workload(args, {}, {})
    assert resolve_workload(args, {}, {"steps": 4}).steps == 4  # --sdperf-steps can fix it


def test_init_image_is_made_from_the_seed_or_read_and_resized(tmp_path: Path) -> None:
    from pytest_sdperf.variants.task import init_image, input_digest

    made = np.asarray(init_image(I2I))
    assert made.shape == (64, 64, 3) and np.array_equal(made, np.asarray(init_image(I2I)))
    other_seed = Workload(**{**I2I.to_dict(), "seed": 7})
    assert not np.array_equal(made, np.asarray(init_image(other_seed)))
    user = Workload(**{**I2I.to_dict(), "init_image": str(_png(tmp_path / "u.png", 4))})
    assert np.asarray(init_image(user)).shape == (64, 64, 3)  # 48x48 file, resized
    latents = np.zeros((1, 4, 8, 8), np.float32)
    assert input_digest(I2I, latents, init_image(I2I)) != input_digest(
        user, latents, init_image(user))


# --- the real thing, PyTorch in-process on the tiny model ----------------------------------


@pytest.fixture(scope="module")
def tiny(request: pytest.FixtureRequest) -> tuple[Any, Path]:
    pytest.importorskip("diffusers")
    from pytest_sdperf.models.source import resolve_model

    assert request.config.cache is not None
    cache = Path(request.config.cache.mkdir("sdperf-test-cache"))
    return resolve_model("tiny", cache), cache


def _run(tiny: tuple[Any, Path], variant: str, wl: Workload) -> tuple[Any, Any, dict[str, float]]:
    """Build ``variant`` as the worker does and call it twice: (pipeline, image, stages)."""
    from pytest_sdperf.measure.latency import StageClock
    from pytest_sdperf.variants.base import BuildContext
    from pytest_sdperf.variants.build import build_pipeline, make_generate
    from pytest_sdperf.variants.builtin import register_builtin
    from pytest_sdperf.variants.registry import VariantRegistry

    registry = VariantRegistry()
    register_builtin(registry)
    spec = registry.get(variant)
    ctx = BuildContext(model=tiny[0], workload=wl, cache_dir=tiny[1], variant=spec.name,
                       recipe=spec.recipe)
    pipeline = build_pipeline(spec.to_dict(), ctx)
    clock = StageClock(pipeline.pipe)
    call, _ = make_generate(pipeline, ctx, clock)
    first, second = call(), call()
    assert np.array_equal(first, second), "the generator is seeded afresh for every call"
    return pipeline, first, clock.stages()


@pytest.mark.slow
def test_img2img_runs_from_the_init_image_through_torch(tiny: tuple[Any, Path], tmp_path: Path) -> None:
    pipeline, image, stages = _run(tiny, "torch-fp32", I2I)
    assert type(pipeline.pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    assert pipeline.info["task"] == "img2img" and image.shape == (1, 64, 64, 3)
    # strength 0.5 of 4 steps: the last 2 of the schedule's timesteps (PNDM, the tiny model's
    # scheduler, repeats its first timestep: 3 UNet calls), after the init image's VAE encode
    assert stages["steps_per_call"] == 3 and stages["vae_encode"] > 0
    _, _, full = _run(tiny, "torch-fp32", Workload(steps=4, height=64, width=64))
    assert full["steps_per_call"] == 5 and "vae_encode" not in full
    user = Workload(**{**I2I.to_dict(), "init_image": str(_png(tmp_path / "u.png", 5, 64))})
    _, from_user, _ = _run(tiny, "torch-fp32", user)
    assert not np.allclose(image, from_user), "the init image shapes the output"
    # transforms apply to the image-to-image pipeline: a scheduler swap and token merging
    composed, merged, _ = _run(tiny, "dpm-solver+tome", I2I)
    assert type(composed.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert composed.info["tome_ratio"] == 0.4 and merged.shape == image.shape


@pytest.mark.slow
def test_img2img_bf16_draws_the_same_noise(tiny: tuple[Any, Path]) -> None:
    """bfloat16 draws its noise from the same seeded generator: the image stays close to
    float32's (different noise would give an unrelated image)."""
    from pytest_sdperf.measure.similarity import compare_images, to_uint8

    _, fp32, _ = _run(tiny, "torch-fp32", I2I)
    _, bf16, _ = _run(tiny, "torch-bf16", I2I)
    assert compare_images(list(to_uint8(bf16)), list(to_uint8(fp32))).ssim > 0.95


SUITE = """
import pytest

@pytest.mark.sdperf(task="img2img", strength=0.5, steps=4, height=64, width=64)
def test_i2i(sdperf_measurement, sdperf_gate):
    sdperf_gate.check(sdperf_measurement)
"""


@pytest.mark.slow
def test_img2img_through_the_gate(tiny: tuple[Any, Path], pytester: pytest.Pytester) -> None:
    """torch-fp32 makes the img2img FP32 reference (its own file, beside text-to-image's),
    OpenVINO's img2img pipeline is compared with it and paired with torch-fp32's."""
    pytest.importorskip("optimum.intel")
    pytester.makepyfile(test_i2i=SUITE)
    out = pytester.path / "r.json"
    args = ("--sdperf", "--sdperf-variants", "torch-fp32,ov-fp32", "--sdperf-cache-dir",
            str(tiny[1]), "--sdperf-baselines", str(pytester.path / "bl"), "--sdperf-rounds",
            "3", "--sdperf-json", str(out), "--sdperf-set", "ov_precision=f32")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)
    references = [p.name for p in (pytester.path / "bl" / "references").rglob("*.png")]
    assert references == [f"{I2I.key()}-0.png"]
    records = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    assert records["torch-fp32"]["ssim"] == 1.0
    assert records["ov-fp32"]["ssim"] > 0.99 and records["ov-fp32"]["info"]["task"] == "img2img"
    assert records["ov-fp32"]["info"]["paired_with"]["variant"] == "torch-fp32"


def test_summary_rows_name_the_test_where_a_variant_has_several() -> None:
    from pytest_sdperf.report import labels
    from pytest_sdperf.results import Record

    def record(test: str, variant: str, **info: Any) -> Record:
        return Record(test_id=f"suites/t.py::{test}[{variant}]", variant=variant, model_key="m",
                      workload_key="w", verdict="pass", info=info)

    records = [record("test_text_to_image", "torch-fp32"), record("test_text_to_image", "ov-fp32"),
               record("test_image_to_image", "torch-fp32"),
               record("test_text_to_image", "tome", swept={"tome_ratio": "0.3"}),
               record("test_text_to_image", "tome", swept={"tome_ratio": "0.5"})]
    assert labels(records) == [
        "torch-fp32 (test_text_to_image)", "ov-fp32", "torch-fp32 (test_image_to_image)",
        "tome tome_ratio=0.3", "tome tome_ratio=0.5"]
