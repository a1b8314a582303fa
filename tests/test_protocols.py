"""Workload resolution (model defaults, marker, options) and the protocol suites' selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sdperf.workload import Protocol, parse_marker_kwargs, resolve_workload

SUITES = Path(__file__).resolve().parents[1] / "suites"


def test_precedence_defaults_model_marker_options():
    args = parse_marker_kwargs({"steps": 20, "prompt": "cartoon bird"}, "t")
    model = {"height": 256, "width": 256, "steps": 4}
    wl = resolve_workload(args, model, {})
    assert (wl.height, wl.steps, wl.prompt) == (256, 20, "cartoon bird")
    wl = resolve_workload(args, model, {"steps": 2, "height": 64, "width": 64})
    assert (wl.height, wl.width, wl.steps, wl.prompt) == (64, 64, 2, "cartoon bird")
    assert resolve_workload(parse_marker_kwargs({}, "t"), {}, {}).height == 128


def test_protocol_keywords_are_parsed_and_checked():
    args = parse_marker_kwargs({"protocol": "reference-b", "arch": "sd", "rounds": 10,
                                "warmup": 0, "warmup_steps": 10}, "t")
    assert args.run == Protocol("reference-b", "sd", 10, 0, 10)
    for bad, match in (({"arch": "sd3"}, "arch='sd3' must be one of"),
                       ({"rounds": 0}, "rounds=0 must be an int >= 1"),
                       ({"warmup_steps": "10"}, "warmup_steps='10'"),
                       ({"protocol": ""}, "protocol='' must be a non-empty string"),
                       ({"rounds_": 3}, "unknown sdperf marker argument")):
        with pytest.raises(ValueError, match=match):
            parse_marker_kwargs(bad, "t")


@pytest.mark.parametrize(("args", "expected"), [
    ([], {"test_text_to_image", "test_text_to_image_batch", "test_image_to_image"}),
    (["--sdperf-protocol", "reference-b"],
     {"test_text_to_image", "test_text_to_image_batch", "test_image_to_image", "test_reference_b"}),
    (["--sdperf-protocol", "all"],
     {"test_text_to_image", "test_text_to_image_batch", "test_image_to_image", "test_reference_a", "test_reference_b",
      "test_reference_d", "test_single_stream", "test_offline", "test_server_1qps", "test_server_2qps",
      "test_reference_c_latency", "test_reference_c_throughput", "test_reference_c_img2img_throughput",
      "test_reference_c_knee",
      "test_reference_c_batch_knee", "test_reference_c_instances_knee"}),
    (["--sdperf-protocol", "reference-c"],
     {"test_text_to_image", "test_text_to_image_batch", "test_image_to_image", "test_reference_c_latency",
      "test_reference_c_throughput", "test_reference_c_img2img_throughput", "test_reference_c_knee",
      "test_reference_c_batch_knee", "test_reference_c_instances_knee"}),
    (["--sdperf-protocol", "serving"],
     {"test_text_to_image", "test_text_to_image_batch", "test_image_to_image", "test_single_stream",
      "test_offline", "test_server_1qps", "test_server_2qps"}),
])
def test_protocol_suites_run_only_when_selected(pytester, args, expected):
    for path in SUITES.glob("test_*.py"):
        pytester.makepyfile(**{path.stem: path.read_text()})
    result = pytester.runpytest("--sdperf", "--sdperf-variants", "torch-fp32",
                                "--collect-only", "-q", *args)
    collected = {line.split("::")[1].split("[")[0] for line in result.outlines if "::" in line}
    assert collected == expected


def test_a_protocol_file_named_on_the_command_line_runs(pytester):
    pytester.makepyfile(test_reference_a=(SUITES / "test_reference_a.py").read_text())
    result = pytester.runpytest("--sdperf", "--sdperf-variants", "torch-fp32",
                                "--collect-only", "-q", "test_reference_a.py")
    assert any("test_reference_a[torch-fp32]" in line for line in result.outlines)


def test_size_and_steps_options_are_validated(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--sdperf-size", "250x250")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--sdperf-size*'250x250': height and width must be positive "
                                 "multiples of 8*"])
    result = pytester.runpytest("--sdperf-steps", "0")
    result.stderr.fnmatch_lines(["*--sdperf-steps*'0' must be 1 or more*"])


def test_protocol_for_another_architecture_skips(pytester, tmp_path):
    """reference-d needs an SDXL pipeline: on an SD 1.x folder it skips, naming both."""
    from pytest_sdperf.testing import CONFTEST

    model = tmp_path / "sd-model"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (model / "w.safetensors").write_bytes(b"\0" * 16)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_reference_d=(SUITES / "test_reference_d.py").read_text())
    result = pytester.runpytest("--sdperf", "--sdperf-model", str(model), "--sdperf-variants",
                                "fake", "--sdperf-reference", "fake", "-rs", "test_reference_d.py")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*reference-d needs an sdxl pipeline; --sdperf-model * is sd*"])


def test_protocol_rounds_warmup_and_warmup_steps_reach_the_worker(pytester):
    """Reference B's shape: the untimed calls run warmup_steps, the timed ones the workload's;
    the marker's rounds and warmup apply unless --sdperf-rounds / --sdperf-warmup are given."""
    import json

    from pytest_sdperf.testing import CONFTEST, make_fake_model

    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_p="""
import pytest

@pytest.mark.sdperf(protocol="p", steps=5, height=32, width=32, warmup_steps=3, warmup=1,
                    rounds=2)
def test_gen(sdperf_measurement, sdperf_gate):
    sdperf_gate.check(sdperf_measurement)
""")
    model = make_fake_model(pytester.path / "fake-model")
    base = ["--sdperf", "--sdperf-model", str(model), "--sdperf-variants", "fake",
            "--sdperf-reference", "fake", "--sdperf-device", "cpu", "-p", "no:cacheprovider",
            "--sdperf-baselines", str(pytester.path / "b"), "--sdperf-json", "r.json", "test_p.py"]

    def steps_of_calls(*extra: str) -> list[int]:
        pytester.runpytest_subprocess(*base, *extra)
        record = json.loads((pytester.path / "r.json").read_text())["results"][0]
        return record["info"]["call_steps"]

    # first call + 1 warm-up at 3 steps, 2 timed rounds at 5, then the memory calls at 5
    calls = steps_of_calls()
    assert calls[:4] == [3, 3, 5, 5] and set(calls[4:]) == {5}
    calls = steps_of_calls("--sdperf-rounds", "3", "--sdperf-warmup", "0")
    assert calls[:4] == [3, 5, 5, 5]
