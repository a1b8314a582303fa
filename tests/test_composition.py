"""Composition (``a+b``), name patterns (``env-threads-N``) and their rejections.

Pure registry tests: nothing heavy is imported, except in the listing test (pytester).
"""

from __future__ import annotations

import pytest

from pytest_sdperf.variants.builtin import register_builtin
from pytest_sdperf.variants.registry import VariantError, VariantRegistry, VariantSpec

pytest_plugins = ["pytester"]

ISSUE_NAMES = (
    "torch-fp32", "torch-bf16", "torch-default-attn", "torch-compile", "ipex-bf16",
    "dpm-solver", "tome", "vae-slicing", "vae-tiling", "tiny-vae", "precomputed-embeds",
    "torch-fp16", "model-cpu-offload", "sequential-cpu-offload", "env-jemalloc",
    "env-tcmalloc", "env-threads-1", "env-pinned",
)


@pytest.fixture(scope="module")
def registry() -> VariantRegistry:
    """The built-in variants."""
    reg = VariantRegistry()
    register_builtin(reg)
    return reg


def test_every_issue_name_is_registered(registry: VariantRegistry) -> None:
    names = [spec.name for spec in registry]
    assert [n for n in ISSUE_NAMES if n not in names] == []
    assert [p.shown for p in registry.patterns()] == ["env-threads-N", "env-pinned-A-B"]


def test_composed_variant_stacks_transforms_in_stage_order(registry: VariantRegistry) -> None:
    spec = registry.get("tome+dpm-solver+torch-bf16")
    assert spec.parts == ("tome", "dpm-solver", "torch-bf16")
    assert spec.backend == "torch" and spec.family == "composed"
    # precision (10) before the scheduler swap (20) before token merging (30)
    assert [t.split(":")[1] for t in spec.transforms] == ["apply_bf16", "apply_dpm_solver",
                                                          "apply_tome"]
    assert "tomesd" in spec.requires


def test_composed_thresholds_take_the_loosest(registry: VariantRegistry) -> None:
    spec = registry.get("torch-bf16+tiny-vae+model-cpu-offload")
    assert spec.thresholds["latency_pct"] == 75.0  # from model-cpu-offload
    assert spec.thresholds["min_ssim"] == -1.0  # from tiny-vae


def test_environment_variant_stacks_on_a_pipeline_variant(registry: VariantRegistry) -> None:
    spec = registry.get("env-jemalloc+torch-bf16")
    assert spec.backend == "torch"
    assert spec.env["LD_PRELOAD"].endswith("libjemalloc.so.2")
    assert spec.env["MALLOC_CONF"] == registry.get("env-jemalloc").env["MALLOC_CONF"]
    assert spec.transforms == registry.get("torch-bf16").transforms


def test_preloads_join_in_the_written_order_and_scalars_must_agree() -> None:
    """Issue #16: two preloading parts (reference B's jemalloc + Intel OpenMP) compose."""
    reg = VariantRegistry()
    register_builtin(reg)
    reg.add(VariantSpec(name="env-my-omp", family="mine", description="x", backend="any",
                        env={"LD_PRELOAD": "/opt/intel/libiomp5.so", "OMP_NUM_THREADS": "32"}))
    jemalloc = reg.get("env-jemalloc").env["LD_PRELOAD"]
    iomp = reg.get("env-iomp").env["LD_PRELOAD"]
    spec = reg.get("env-jemalloc+env-iomp+torch-bf16")
    assert spec.env["LD_PRELOAD"] == f"{jemalloc}:{iomp}"
    assert reg.get("env-iomp+env-jemalloc").env["LD_PRELOAD"] == f"{iomp}:{jemalloc}"
    assert spec.env["MALLOC_CONF"] and spec.env["KMP_HW_SUBSET"] == "1t"
    assert VariantSpec.from_dict(spec.to_dict()) == spec
    assert reg.get("env-jemalloc+env-my-omp").env["LD_PRELOAD"] == f"{jemalloc}:/opt/intel/libiomp5.so"
    with pytest.raises(VariantError, match="OMP_NUM_THREADS is set to both '32' and '1'"):
        reg.get("env-my-omp+env-threads-1")
    with pytest.raises(VariantError, match="env-jemalloc and env-tcmalloc both decide the allocator"):
        reg.get("env-iomp+env-jemalloc+env-tcmalloc")  # one process, one malloc


def test_composition_round_trips_through_the_worker_request(registry: VariantRegistry) -> None:
    spec = registry.get("env-threads-3+env-pinned-0+torch-bf16+dpm-solver")
    assert VariantSpec.from_dict(spec.to_dict()) == spec
    assert spec.cpus == "0" and spec.env["OMP_NUM_THREADS"] == "3"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("torch-bf16+torch-fp16", "torch-bf16 and torch-fp16 both decide the dtype"),
        ("torch-bf16+ipex-bf16", "both decide the dtype"),
        ("torch-compile+ipex-bf16", "both decide the graph"),
        ("model-cpu-offload+sequential-cpu-offload", "both decide the offload"),
        ("env-jemalloc+env-tcmalloc", "both decide the allocator"),
        ("env-threads-1+env-threads-2", "OMP_NUM_THREADS is set to both '1' and '2'"),
        ("env-pinned-0+env-pinned-1", "conflicting CPU pinning"),
        ("tome+tome", "a variant appears twice"),
        ("tome+no-such-thing", "unknown variant 'no-such-thing'"),
        ("ov-int8-weights+ov-int8-hybrid", "ov-int8-weights and ov-int8-hybrid both decide the ov-weights"),
        ("ov-tome+tome", "ov-tome and tome both decide the token-merging"),
    ],
)
def test_impossible_compositions_are_rejected(
    registry: VariantRegistry, name: str, message: str
) -> None:
    with pytest.raises(VariantError, match=message):
        registry.get(name)


def test_mixing_backends_is_rejected(registry: VariantRegistry) -> None:
    reg = VariantRegistry()
    register_builtin(reg)
    reg.add(VariantSpec(name="ov-fake", family="openvino", description="x", backend="openvino",
                        loader="mod:load"))
    with pytest.raises(VariantError, match=r"cannot stack backends \['openvino', 'torch'\]"):
        reg.get("ov-fake+tome")
    assert reg.get("ov-fake+env-jemalloc").backend == "openvino"


def test_openvino_recipe_comes_from_the_registry_composition(registry: VariantRegistry) -> None:
    [spec] = registry.select(["ov-int8-hybrid+ov-tome"])
    assert spec.loader == registry.get("ov-fp32").loader
    assert dict(spec.recipe) == {"weights": "hybrid", "tome": True}
    assert dict(registry.get("ov-async+ov-static").recipe) == {"async": True, "static": True}
    assert dict(registry.get("ov-fp32+env-jemalloc").recipe) == {}
    assert VariantSpec.from_dict(spec.to_dict()) == spec


def test_conflicting_openvino_recipes_are_rejected_with_the_reason() -> None:
    reg = VariantRegistry()
    register_builtin(reg)
    ov_static = reg.get("ov-static")
    reg.add(VariantSpec(name="ov-dynamic", family="mine", description="x", backend="openvino",
                        loader=ov_static.loader, recipe={"static": False}))
    with pytest.raises(VariantError, match="ov-static asks its loader for static=True and "
                                           "ov-dynamic for static=False; they cannot be stacked"):
        reg.get("ov-tome+ov-static+ov-dynamic")
    reg.add(VariantSpec(name="ov-static-too", family="mine", description="x", backend="openvino",
                        loader=ov_static.loader, recipe={"static": True}))
    assert dict(reg.get("ov-static+ov-static-too").recipe) == {"static": True}


def test_thread_pattern_makes_any_count(registry: VariantRegistry) -> None:
    spec = registry.get("env-threads-7")
    assert spec.env == {"OMP_NUM_THREADS": "7", "MKL_NUM_THREADS": "7"}
    assert "env-threads-7" not in registry  # made on demand, not registered
    with pytest.raises(VariantError, match="1 or more"):
        registry.get("env-threads-0")


def test_pinned_pattern_and_bad_range(registry: VariantRegistry) -> None:
    assert registry.get("env-pinned-0-1").cpus == "0-1"
    with pytest.raises(VariantError, match="is empty"):
        registry.get("env-pinned-3-1")


def test_unknown_name_lists_patterns_too(registry: VariantRegistry) -> None:
    with pytest.raises(VariantError, match="env-threads-N"):
        registry.get("env-thread-2")


def test_glob_selection_and_composed_names(registry: VariantRegistry) -> None:
    chosen = registry.select(["env-*", "torch-bf16+dpm-solver+tome"])
    names = [s.name for s in chosen]
    assert names[:5] == ["env-jemalloc", "env-tcmalloc", "env-iomp", "env-threads-1", "env-pinned"]
    assert names[-1] == "torch-bf16+dpm-solver+tome"


FP16_STACKS = [
    "torch-default-attn", "torch-compile", "dpm-solver", "tome", "vae-slicing", "vae-tiling",
    "precomputed-embeds", "model-cpu-offload", "sequential-cpu-offload", "tiny-vae",
    "env-jemalloc", "env-tcmalloc", "env-iomp", "env-threads-1", "env-pinned",
]


def test_composed_glob_expands_to_every_valid_composition(registry: VariantRegistry) -> None:
    """Issue #16: 'torch-fp16+*' is torch-fp16 stacked on each variant it can stack with, in
    registry order: no other dtype (torch-fp32 included), no OpenVINO, no torch-fp16+torch-fp16."""
    names = [s.name for s in registry.expand(["torch-fp16+*"])]
    assert names == [f"torch-fp16+{n}" for n in FP16_STACKS]
    assert [s.name for s in registry.select(["torch-fp16+*"])] == names
    with pytest.raises(VariantError, match="both decide the dtype"):
        registry.get("torch-fp16+torch-fp32")  # what left torch-fp32 out


def test_reference_d_selection_expands_without_duplicates(registry: VariantRegistry) -> None:
    patterns = ["torch-fp32", "torch-default-attn", "torch-fp16", "torch-fp16+*", "torch-fp16"]
    names = [s.name for s in registry.expand(patterns)]
    assert names == ["torch-fp32", "torch-default-attn", "torch-fp16",
                     *(f"torch-fp16+{n}" for n in FP16_STACKS)]


def test_composed_globs_match_part_by_part_and_skip_mirror_images(
    registry: VariantRegistry
) -> None:
    names = [s.name for s in registry.expand(["env-t*+torch-bf16", "torch-bf16+env-*", "*+*"])]
    assert names[:7] == ["env-tcmalloc+torch-bf16", "env-threads-1+torch-bf16",
                         "torch-bf16+env-jemalloc", "torch-bf16+env-iomp", "torch-bf16+env-pinned",
                         "torch-fp32+torch-default-attn", "torch-fp32+torch-compile"]
    parts = [frozenset(s.parts) for s in registry.expand(["*+*"])]
    assert len(parts) == len(set(parts))  # tome+dpm-solver or dpm-solver+tome, not both
    assert all(len(p) == 2 for p in parts)  # never a variant composed with itself
    assert [s.name for s in registry.expand(["env-threads-3+env-p*"])] == [
        "env-threads-3+env-pinned"]  # a plain part may be a name pattern's


@pytest.mark.parametrize(("pattern", "message"), [
    ("torch-fp16+ov-*", r"pattern 'torch-fp16\+ov-\*' matches no variant it can compose"),
    ("tome+nothing-*", r"pattern 'tome\+nothing-\*' matches no variant it can compose"),
    ("nothing+*", "unknown variant 'nothing'"),
    ("nothing-*", "pattern 'nothing-\\*' matches no variant; known variants: torch-fp32"),
])
def test_a_glob_that_yields_nothing_is_an_error_naming_it(
    registry: VariantRegistry, pattern: str, message: str
) -> None:
    with pytest.raises(VariantError, match=message):
        registry.expand([pattern])


def test_cli_runs_a_composed_glob(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_v="def test_v(sdperf_variant):\n    pass\n")
    result = pytester.runpytest("--sdperf", "--sdperf-variants", "torch-fp32,torch-fp16+*",
                                "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["test_v.py::test_v[[]torch-fp32[]]",
                                 "test_v.py::test_v[[]torch-fp16+torch-default-attn[]]", "*",
                                 "test_v.py::test_v[[]torch-fp16+env-pinned[]]"])


def test_cli_rejects_a_bad_composition_with_the_reason(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--sdperf", "--sdperf-variants", "torch-bf16+torch-fp16")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*torch-bf16 and torch-fp16 both decide the dtype*"])


def test_list_variants_names_every_variant_and_why_not(pytester: pytest.Pytester) -> None:
    from pytest_sdperf.variants.availability import cuda_available
    from pytest_sdperf.variants.torch_precision import ipex_unusable_reason

    result = pytester.runpytest("--sdperf", "--sdperf-list-variants")
    out = result.stdout.str()
    for name in ISSUE_NAMES:
        assert f"\n{name} " in out, name
    if not cuda_available():
        result.stdout.fnmatch_lines(["torch-fp16 * cannot run", "*needs a CUDA GPU*"])
    ipex_reason = ipex_unusable_reason()
    if ipex_reason:
        assert ipex_reason in out
    result.stdout.fnmatch_lines(["env-threads-1 * runs here", "*any env-threads-N works*"])


def test_the_openvino_variants_built_on_ov_fp32_are_judged_over_it(registry: VariantRegistry) -> None:
    yardsticks = {name: registry.get(name).yardstick for name in
                  ("ov-fp32", "ov-static", "ov-int8-weights", "ov-int8-hybrid", "ov-tome", "ov-async")}
    assert yardsticks == {"ov-fp32": "", "ov-static": "ov-fp32", "ov-int8-weights": "ov-fp32",
                          "ov-int8-hybrid": "ov-fp32", "ov-tome": "ov-fp32", "ov-async": ""}
    # a composition has one where every part names the same one
    assert registry.get("ov-int8-hybrid+ov-tome").yardstick == "ov-fp32"
    assert registry.get("ov-async+ov-int8-hybrid").yardstick == ""
    spec = registry.get("ov-static")
    assert VariantSpec.from_dict(spec.to_dict()) == spec  # through the worker request
