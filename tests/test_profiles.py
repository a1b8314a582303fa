"""Architecture profiles: published parameter counts, model defaults, arch detection, SDXL.

The full-size weights are never built here: counts come from the meta device. A small
SDXL-shaped pipeline (the same builder, small configs) runs through the real variants.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_sdperf.models.profiles import (
    Profile,
    build_modules,
    count_parameters,
    get_profile,
    profile_names,
)
from pytest_sdperf.models.source import ModelError, default_workload, detect_arch, resolve_model

pytest.importorskip("diffusers")


def test_the_three_profiles_ship():
    assert profile_names() == ["sd15-arch", "sd21-arch", "sdxl-arch"]
    with pytest.raises(KeyError, match="known: sd15-arch, sd21-arch, sdxl-arch"):
        get_profile("sd3-arch")


@pytest.mark.parametrize("name", ["sd15-arch", "sd21-arch", "sdxl-arch"])
def test_parameter_counts_match_the_published_models(name):
    """SD 1.5 UNet 859,520,964; SD 2.1 865,910,724; SDXL 2,567,463,684; and every encoder."""
    profile = get_profile(name)
    counted = count_parameters(build_modules(profile, device="meta"))
    assert counted == profile.published_parameters
    assert counted["unet"] == {"sd15-arch": 859_520_964, "sd21-arch": 865_910_724,
                               "sdxl-arch": 2_567_463_684}[name]


def test_sdxl_profile_has_two_text_encoders_and_its_scheduler():
    profile = get_profile("sdxl-arch")
    assert profile.text_encoders() == ["text_encoder", "text_encoder_2"]
    assert profile.pipeline == "StableDiffusionXLPipeline" and profile.arch == "sdxl"
    assert profile.configs["unet"]["cross_attention_dim"] == 768 + 1280


def test_unknown_profile_name_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no such profile; known: sd15-arch"):
        resolve_model("sd14-arch", tmp_path)


def _pipeline_folder(root: Path, class_name: str, sample_size: int | None = None,
                     extra: dict | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": class_name, **(extra or {})}))
    if sample_size:
        (root / "unet").mkdir()
        (root / "unet" / "config.json").write_text(json.dumps({"sample_size": sample_size}))
    return root


@pytest.mark.parametrize(("class_name", "extra", "arch"), [
    ("StableDiffusionPipeline", {}, "sd"),
    ("StableDiffusionXLPipeline", {}, "sdxl"),
    ("OVStableDiffusionXLPipeline", {}, "sdxl"),
    ("OVStableDiffusionPipeline", {}, "sd"),
    ("SomethingPipeline", {"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}, "sdxl"),
    ("FluxPipeline", {}, ""),
])
def test_arch_is_detected_from_model_index(tmp_path, class_name, extra, arch):
    assert detect_arch(_pipeline_folder(tmp_path / "m", class_name, extra=extra)) == arch


def test_default_workload_follows_the_model(tmp_path):
    assert default_workload("tiny") == {}
    assert default_workload("sd15-arch") == {"height": 256, "width": 256, "steps": 4}
    assert default_workload("sdxl-arch")["height"] == 256
    sd21 = _pipeline_folder(tmp_path / "sd21", "StableDiffusionPipeline", sample_size=96)
    assert default_workload(str(sd21)) == {"height": 768, "width": 768, "steps": 20}
    assert default_workload("owner/model") == {"height": 512, "width": 512, "steps": 20}


# A small SDXL of the same layout (the shapes diffusers' own SDXL tests use).
SMALL_XL: dict = {
    "pipeline": "StableDiffusionXLPipeline", "arch": "sdxl",
    "default_workload": {"height": 64, "width": 64, "steps": 2},
    "published_parameters": {},
    "unet": {
        "block_out_channels": [32, 64], "layers_per_block": 1, "sample_size": 8,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": [2, 4], "use_linear_projection": True,
        "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
        "transformer_layers_per_block": [1, 2], "projection_class_embeddings_input_dim": 80,
        "cross_attention_dim": 64, "norm_num_groups": 32,
    },
    "vae": {
        "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "norm_num_groups": 32, "sample_size": 64, "scaling_factor": 0.13025,
    },
    "text_encoder": {"class": "CLIPTextModel", "hidden_size": 32, "intermediate_size": 37,
                     "num_attention_heads": 4, "num_hidden_layers": 2, "projection_dim": 32,
                     "max_position_embeddings": 77, "vocab_size": 1000, "hidden_act": "gelu"},
    "text_encoder_2": {"class": "CLIPTextModelWithProjection", "hidden_size": 32,
                       "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "projection_dim": 32, "max_position_embeddings": 77, "vocab_size": 1000,
                       "hidden_act": "gelu"},
    "scheduler": {"class": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "steps_offset": 1,
                  "timestep_spacing": "leading"},
}


@pytest.fixture(scope="module")
def small_xl(tmp_path_factory):
    """A small SDXL pipeline folder built by the profile builder (float16 safetensors)."""
    from pytest_sdperf.models.profiles import build_from_profile

    out = tmp_path_factory.mktemp("small-xl") / "small-xl"
    out.mkdir()
    build_from_profile(Profile("small-xl", "StableDiffusionXLPipeline", "sdxl", SMALL_XL), out)
    return out


def test_builder_writes_an_sdxl_pipeline_with_two_tokenizers(small_xl):
    index = json.loads((small_xl / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        assert (small_xl / part).is_dir(), part
    assert not list(small_xl.rglob("*.bin")), "weights must be safetensors"
    ref = resolve_model(str(small_xl), small_xl.parent)
    assert (ref.kind, ref.arch) == ("diffusers", "sdxl")


@pytest.mark.slow
def test_sdxl_pipeline_runs_through_the_variants(pytester, small_xl):
    """torch-fp32, precomputed embeddings (pooled ones too) and OpenVINO static on SDXL."""
    pytest.importorskip("optimum.intel")
    # Latency is not what this test is about: two rounds on a shared 2-core machine are noise.
    pytester.makepyfile(test_xl="""
import pytest

@pytest.mark.sdperf(latency_pct=10000)
def test_gen(sdperf_measurement, sdperf_gate):
    sdperf_gate.check(sdperf_measurement)
""")
    args = ["--sdperf", "--sdperf-model", str(small_xl), "--sdperf-rounds", "2",
            "--sdperf-warmup", "0", "--sdperf-device", "cpu", "-p", "no:cacheprovider",
            "--sdperf-baselines", str(pytester.path / "baselines"),
            "--sdperf-cache-dir", str(pytester.path / "cache"),
            "--sdperf-variants", "torch-fp32,precomputed-embeds,ov-static", "--sdperf-steps", "2",
            "--sdperf-json", str(pytester.path / "results.json")]
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=3)  # first run records (passing)
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=3)
    records = json.loads((pytester.path / "results.json").read_text())["results"]
    by_variant = {r["variant"]: r for r in records}
    assert by_variant["precomputed-embeds"]["info"]["released"] == [
        "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"]
    assert by_variant["precomputed-embeds"]["ssim"] > 0.99  # same embeddings, same image
    assert by_variant["ov-static"]["ssim"] > 0.99
    # The folder's native size (UNet sample_size 8 x 8), at the steps --sdperf-steps imposed.
    assert by_variant["torch-fp32"]["workload_key"].startswith("64x64-2st-")


@pytest.mark.parametrize("negative", ["low resolution", None])
def test_precomputed_embeds_on_sdxl_with_two_images_per_prompt(small_xl, negative):
    """SDXL repeats given embeddings, negative and pooled ones too (zeros when negative is
    None), once per image itself: encoded for one image, two images equal fp32's."""
    import numpy as np

    from pytest_sdperf.variants.base import BuildContext
    from pytest_sdperf.variants.build import build_pipeline, make_generate
    from pytest_sdperf.variants.builtin import register_builtin
    from pytest_sdperf.variants.registry import VariantRegistry
    from pytest_sdperf.workload import Workload

    class Clock:
        def on_step_end(self, pipe, step, timestep, kwargs):
            return kwargs

        def begin(self):
            pass

    registry = VariantRegistry()
    register_builtin(registry)
    wl = Workload(steps=2, height=64, width=64, images_per_prompt=2, negative_prompt=negative)
    ctx = BuildContext(model=resolve_model(str(small_xl), small_xl.parent), workload=wl,
                       cache_dir=small_xl.parent)
    images = [make_generate(build_pipeline(registry.get(name).to_dict(), ctx), ctx, Clock())[0]()
              for name in ("precomputed-embeds", "torch-fp32")]
    assert images[0].shape == (2, 64, 64, 3)
    assert np.allclose(images[0], images[1], atol=1e-5)


def test_sdperf_model_build_knows_the_profiles(tmp_path, capsys):
    from pytest_sdperf.cli import build_parser, main

    args = build_parser().parse_args(["model", "build", "sdxl-arch", "--out", str(tmp_path)])
    assert args.name == "sdxl-arch"
    (tmp_path / "x").write_text("")
    assert main(["model", "build", "sd15-arch", "--out", str(tmp_path)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
