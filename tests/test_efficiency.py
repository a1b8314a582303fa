"""Issue #7: FLOPs of one UNet call, achieved FLOP/s, and the machine's peak beside them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_sdperf.html_report import render
from pytest_sdperf.measure.efficiency import (
    against_peak,
    step_efficiency,
    unet_batch,
    unet_config,
    unet_step_flops,
)
from pytest_sdperf.measure.peak import (
    CpuInfo,
    GemmPeak,
    MachinePeak,
    TheoreticalPeak,
    flops_per_cycle,
    gemm_peak,
    max_freq_khz,
    parse_cpuinfo,
    physical_cores,
    theoretical_peak,
)
from pytest_sdperf.models.tiny import UNET_CONFIG
from pytest_sdperf.report import peak_lines, table
from pytest_sdperf.session import Record
from pytest_sdperf.workload import Workload

INTEL_AVX512 = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
cpu MHz\t\t: 2900.000
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512bw amx_tile
"""
ZEN1 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
cpu MHz\t\t: 1996.248
flags\t\t: fpu sse sse2 fma avx avx2
processor\t: 1
cpu MHz\t\t: 1800.000
"""


@pytest.fixture(scope="module")
def diffusers_unet() -> None:
    """diffusers' UNet module, imported once (5-15 s on a small machine; the counts take ~1 s)."""
    pytest.importorskip("diffusers.models.unets.unet_2d_condition")


def _count(batch: int, side: int, cache_dir: Path | None = None) -> int:
    return unet_step_flops(UNET_CONFIG, batch, (side, side), cache_dir=cache_dir)


def test_unet_flops_scale_with_latent_area_and_batch(diffusers_unet: None) -> None:
    small, large, double = _count(2, 16), _count(2, 32), _count(4, 16)
    assert small > 1e9  # the tiny UNet at 128x128 px, CFG batch 2: ~1.7 GFLOP
    assert 3.8 < large / small < 6.0  # 4x the pixels; attention grows quadratically
    assert double / small == pytest.approx(2.0, rel=0.02)


def test_counts_are_cached_on_disk(diffusers_unet: None, tmp_path: Path) -> None:
    counted = _count(2, 16, tmp_path)
    (stored,) = (tmp_path / "flops").glob("*.json")
    assert json.loads(stored.read_text())["flops"] == counted
    stored.write_text(json.dumps({"flops": 123}))
    assert _count(2, 16, tmp_path) == 123  # read back, not counted again
    assert _count(2, 24, tmp_path) != 123  # another shape, another entry


def test_token_merging_lowers_the_count_and_is_labelled(diffusers_unet: None) -> None:
    pytest.importorskip("tomesd")
    pipe = SimpleNamespace(unet=SimpleNamespace(config=UNET_CONFIG), vae_scale_factor=8)
    wl = Workload(height=256, width=256)
    plain = step_efficiency(pipe, wl, {}, {"step": 0.5})
    merged = step_efficiency(pipe, wl, {"tome_ratio": 0.5}, {"step": 0.5})
    assert plain is not None and merged is not None
    assert merged.unet_step_gflops < plain.unet_step_gflops
    assert "merged" in merged.flops_basis and "merged" not in plain.flops_basis
    assert plain.achieved_gflops_per_s == pytest.approx(plain.unet_step_gflops / 0.5)
    assert plain.unet_batch == 2 and plain.latent_hw == (32, 32)


def test_unet_batch_follows_classifier_free_guidance() -> None:
    assert unet_batch(Workload(images_per_prompt=3), {}) == 6
    assert unet_batch(Workload(guidance_scale=1.0), {}) == 1
    assert unet_batch(Workload(), {"time_cond_proj_dim": 256}) == 1  # LCM: guidance embedded


def test_unet_config_from_pipeline_or_folder_else_none(tmp_path: Path) -> None:
    assert unet_config(SimpleNamespace()) is None  # the fake pipeline: nothing to count
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"block_out_channels": [8], "in_channels": 4}')
    assert unet_config(SimpleNamespace(), str(tmp_path)) == {"block_out_channels": [8], "in_channels": 4}
    other = SimpleNamespace(unet=SimpleNamespace(config={"_class_name": "UNet2DModel"}))
    assert unet_config(other) is None


@pytest.mark.parametrize(("text", "per_cycle"), [
    (INTEL_AVX512, 64),
    (ZEN1, 16),  # Zen 1 runs 256-bit FMA as two 128-bit halves
    (ZEN1.replace("model\t\t: 1\n", "model\t\t: 49\n"), 32),  # Zen 2
    ("vendor_id: GenuineIntel\nflags: sse sse2 avx avx2 fma\n", 32),
    ("flags: fpu sse sse2\n", 8),
    ("Features: fp asimd evtstrm\n", 16),
])
def test_flops_per_cycle_from_cpuinfo_flags(text: str, per_cycle: int) -> None:
    found = flops_per_cycle(parse_cpuinfo(text))
    assert found is not None and found[0] == per_cycle


def test_zen4_avx512_counts_two_256_bit_units() -> None:
    cpu = CpuInfo(vendor="AuthenticAMD", family=25, model=17, flags=frozenset({"avx512f", "avx2", "fma"}))
    found = flops_per_cycle(cpu)
    assert found is not None and found[0] == 32 and "Zen 4" in found[1]


def test_theoretical_peak_is_cores_by_clock_by_flops_per_cycle() -> None:
    cpu = parse_cpuinfo(ZEN1)
    assert cpu.mhz == pytest.approx(1996.248)  # the highest "cpu MHz" line
    from_mhz = theoretical_peak(cpu, cores=2)
    assert from_mhz is not None and from_mhz.gflops_per_s == pytest.approx(2 * 1.996248 * 16)
    assert "cpu MHz" in from_mhz.basis and "Zen 1" in from_mhz.basis
    from_sys = theoretical_peak(parse_cpuinfo(INTEL_AVX512), cores=4, max_khz=3_500_000)
    assert from_sys is not None and from_sys.gflops_per_s == pytest.approx(4 * 3.5 * 64)
    assert theoretical_peak(parse_cpuinfo("flags: sse\n"), cores=2) is None  # no clock known
    assert theoretical_peak(parse_cpuinfo("cpu MHz: 2000\n"), cores=2) is None  # no ISA known


def test_physical_cores_and_max_freq_from_sysfs(tmp_path: Path) -> None:
    for cpu, siblings, khz in ((0, "0,2", 3_000_000), (1, "1,3", 3_100_000), (2, "0,2", 3_000_000)):
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "core_cpus_list").write_text(siblings + "\n")
        (tmp_path / f"cpu{cpu}" / "cpufreq").mkdir()
        (tmp_path / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq").write_text(f"{khz}\n")
    assert physical_cores({0, 1, 2}, tmp_path) == 2  # cpu2 is cpu0's SMT sibling
    assert physical_cores({0, 2}, tmp_path) == 1
    assert physical_cores({7}, tmp_path) == 1  # no topology: one core per CPU
    assert max_freq_khz({0, 1}, tmp_path) == 3_100_000
    assert max_freq_khz({7}, tmp_path) is None


def test_gemm_peak_is_positive_and_finite() -> None:
    pytest.importorskip("torch")
    found = gemm_peak(n=128, budget_s=0.05)
    assert found.gflops_per_s > 0 and math.isfinite(found.gflops_per_s)
    assert found.dtype == "float32" and "128x128" in found.basis


PEAK = MachinePeak(
    TheoreticalPeak(64.0, 2, 2.0, 16, "2 cores x 2.00 GHz x 16"),
    {"float32": GemmPeak(40.0, "cpu", "float32", "torch.mm float32 1024x1024")},
)


def test_percent_of_peak_prefers_the_measured_gemm_and_keeps_the_theoretical() -> None:
    out = against_peak({"achieved_gflops_per_s": 10.0}, PEAK, "cpu")
    assert out["pct_of_peak"] == pytest.approx(25.0) and "measured GEMM" in out["peak_basis"]
    assert out["pct_of_theoretical"] == pytest.approx(15.625)
    theo_only = against_peak({"achieved_gflops_per_s": 10.0}, MachinePeak(PEAK.theoretical), "cpu")
    assert theo_only["pct_of_peak"] == pytest.approx(15.625) and "theoretical" in theo_only["peak_basis"]
    assert "pct_of_peak" not in against_peak({"achieved_gflops_per_s": 1.0}, MachinePeak(), "cpu")


def test_gpu_variants_are_held_to_their_dtypes_gemm() -> None:
    gpu = MachinePeak(None, {d: GemmPeak(g, "cuda", d, "x") for d, g in (("float32", 50e3), ("bfloat16", 700e3))})
    assert gpu.limit_for("cuda", "bfloat16") == (700e3, "measured GEMM (x)")
    assert gpu.limit_for("cuda", "float16") == (  # not measured: fp32's, saying so
        50e3, "measured GEMM (x); float16 held to the float32 peak: its peak was not measured here")
    assert gpu.limit_for("cpu") is None  # a GPU's GEMM is no limit for CPU work
    tf32 = MachinePeak(None, {**gpu.measured, "tfloat32": GemmPeak(400e3, "cuda", "tfloat32", "t")})
    assert tf32.limit_for("cuda", "tfloat32") == (400e3, "measured GEMM (t)")
    assert MachinePeak.from_dict(PEAK.to_dict()) == PEAK


def _record(variant: str, achieved: float | None, pct: float | None) -> Record:
    eff = {"unet_step_gflops": 1.7, "achieved_gflops_per_s": achieved, "pct_of_peak": pct,
           "peak_gflops_per_s": 40.0, "peak_basis": "measured GEMM (torch.mm float32 1024x1024)"}
    return Record(test_id=f"t::test[{variant}]", variant=variant, model_key="m", workload_key="w",
                  verdict="pass", p50_s=1.0, efficiency=eff if achieved else {})


def test_report_shows_flops_and_percent_of_peak() -> None:
    records = [_record("torch-fp32", 12.345, 30.86), _record("ov-fp32", 3.21, 8.025), _record("x", None, None)]
    lines = table(records)
    assert "GFLOP/s" in lines[0] and "%peak" in lines[0]
    assert "12.3" in lines[2] and "31%" in lines[2]
    assert "3.21" in lines[3] and "8.0%" in lines[3]
    assert peak_lines(records) == [
        "%peak: achieved UNet FLOP/s over 40.0 GFLOP/s, measured GEMM (torch.mm float32 1024x1024)"]
    header = {"machine": {"key": "k"}, "peak": PEAK.to_dict()}
    html = render(header, records, "torch-fp32")
    results = html.split("id='results'")[1].split("</table>")[0]
    assert "GFLOP/s</th>" in results and "% peak</th>" in results and "<td>31%</td>" in results
    machine = html.split("id='environment'")[1]
    assert "peak FLOP/s" in machine and "64.0 GFLOP/s (2 cores x 2.00 GHz x 16)" in machine
    assert "measured GEMM (cpu, float32)" in machine


# --- issue #19: each variant against the peak of the type it computes in -------------------


def test_native_types_and_their_theoretical_peaks_come_from_the_flags() -> None:
    from pytest_sdperf.measure.peak import native_types

    bf16 = parse_cpuinfo(INTEL_AVX512.replace("flags\t\t:", "flags\t\t: avx512_bf16 avx512_vnni"))
    assert native_types(bf16) == ("float32", "bfloat16", "int8")
    # AVX2 without VNNI: 8-bit products through VPMADDUBSW, at most twice fp32's rate
    assert native_types(parse_cpuinfo(ZEN1)) == ("float32", "int8")
    zen1 = theoretical_peak(parse_cpuinfo(ZEN1), cores=2, max_khz=2_000_000)
    assert zen1 is not None and zen1.for_type("int8") == pytest.approx(2 * zen1.gflops_per_s)
    peak = theoretical_peak(bf16, cores=4, max_khz=3_500_000)
    assert peak is not None and peak.for_type("float32") == pytest.approx(4 * 3.5 * 64)
    assert peak.for_type("bfloat16") == pytest.approx(2 * 4 * 3.5 * 64)  # VDPBF16PS: 2x fp32
    assert peak.for_type("int8") == pytest.approx(4 * 4 * 3.5 * 64)  # VNNI: 4x
    plain = theoretical_peak(parse_cpuinfo(INTEL_AVX512), cores=4, max_khz=3_500_000)
    assert plain is not None and plain.for_type("bfloat16") == plain.gflops_per_s


def test_a_variant_is_held_to_the_peak_of_its_compute_type() -> None:
    theo = TheoreticalPeak(64.0, 2, 2.0, 16, "t", {"float32": 64.0, "bfloat16": 128.0})
    peak = MachinePeak(theo, {"float32": GemmPeak(40.0, "cpu", "float32", "torch.mm float32"),
                              "bfloat16": GemmPeak(90.0, "cpu", "bfloat16", "torch.mm bfloat16")})
    out = against_peak({"achieved_gflops_per_s": 45.0}, peak, "cpu", "bfloat16")
    assert out["pct_of_peak"] == pytest.approx(50.0) and "torch.mm bfloat16" in out["peak_basis"]
    assert out["compute_type"] == "bfloat16" and out["theoretical_gflops_per_s"] == 128.0
    assert out["pct_of_theoretical"] == pytest.approx(45.0 / 128.0 * 100)
    # a machine without native bf16 says so and uses float32's peak
    plain = MachinePeak(TheoreticalPeak(64.0, 2, 2.0, 16, "t", {"float32": 64.0}),
                        {"float32": GemmPeak(40.0, "cpu", "float32", "torch.mm float32")})
    limit = plain.limit_for("cpu", "bfloat16")
    assert limit == (40.0, "measured GEMM (torch.mm float32); bfloat16 held to the float32 "
                           "peak: this CPU does not compute it natively")
    assert MachinePeak.from_dict(peak.to_dict()) == peak


@pytest.mark.parametrize(("info", "expected"), [
    ({"dtype": "float32"}, "float32"),
    ({"dtype": "bfloat16", "bf16_mode": "autocast"}, "bfloat16"),
    ({}, "float32"),
    ({"ov_precision": "bf16", "weights": "fp32"}, "bfloat16"),
    ({"ov_precision": "f32", "weights": "int8"}, "float32"),  # weights decompressed: not int8
    # ... unless the plugin runs its FullyConnected layers in u8 (dynamic quantization on VNNI:
    # ov-int8-weights read 107% of the float32 peak on sd15-arch here, 2026-12-05)
    ({"ov_precision": "f32", "weights": "int8",
      "ov_unet_layers": {"Convolution": "f32", "FullyConnected": "u8"}}, "int8"),
    ({"ov_precision": "bf16", "ov_unet_layers": {"Convolution": "bf16", "FullyConnected": "bf16"}},
     "bfloat16"),
    ({"ov_precision": "text_encoder=f32 unet=bf16 vae_decoder=f32"}, "bfloat16"),
    ({"ov_precision": "bf16", "weights": "hybrid"}, "int8"),
    ({"dtype": "float32", "tf32": "convolutions"}, "tfloat32"),  # CUDA's default for convs
    ({"dtype": "float16", "tf32": "convolutions"}, "float16"),
])
def test_compute_type_is_what_the_build_recorded(info: dict[str, str], expected: str) -> None:
    from pytest_sdperf.measure.efficiency import compute_type

    assert compute_type(info) == expected


def test_int8_gemm_peak_where_torch_has_the_kernel() -> None:
    pytest.importorskip("torch")
    from pytest_sdperf.measure.peak import int8_gemm_peak

    found = int8_gemm_peak(n=128, budget_s=0.05)
    if found is None:
        pytest.skip("this torch has no CPU kernel for torch._int_mm")
    assert found.gflops_per_s > 0 and found.dtype == "int8" and "_int_mm" in found.basis


def test_cuda_float32_builds_record_where_tf32_may_be_used() -> None:
    """Seen on an H200: torch-fp32 on SDXL read 101% of the strict float32 GEMM peak, because
    PyTorch lets cuDNN convolutions use TF32 by default. The build records it (read from
    torch's flags), so the variant is held to the TF32 peak; CPU and non-float32 builds not."""
    torch = pytest.importorskip("torch")
    from pytest_sdperf.variants.build import record_tf32

    def recorded(device: str, **info: str) -> object:
        pipeline = SimpleNamespace(info=dict(info))
        record_tf32(pipeline, SimpleNamespace(device=device))  # type: ignore[arg-type]
        return pipeline.info.get("tf32")

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
        assert recorded("cuda", dtype="float32") == "convolutions"
        assert recorded("cuda:1") == "convolutions"
        assert recorded("cpu", dtype="float32") is None
        assert recorded("cuda", dtype="float16") is None
        torch.backends.cuda.matmul.allow_tf32 = True
        assert recorded("cuda", dtype="float32") == "convolutions and matmuls"
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = False, False
        assert recorded("cuda", dtype="float32") is None
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_int8_without_vnni_is_held_to_twice_the_float32_gemm() -> None:
    """On AVX2 alone, torch._int_mm is a slow reference loop (2 GOP/s against 180 GFLOP/s in
    float32 here), and OpenVINO's int8 UNet reached 104% of the float32 GEMM peak: int8 is
    held to the measured float32 GEMM times int8's theoretical factor, saying so."""
    theo = TheoreticalPeak(64.0, 2, 2.0, 16, "t", {"float32": 64.0, "int8": 128.0})
    slow = MachinePeak(theo, {"float32": GemmPeak(40.0, "cpu", "float32", "torch.mm float32"),
                              "int8": GemmPeak(2.0, "cpu", "int8", "torch._int_mm int8")})
    limit = slow.limit_for("cpu", "int8")
    assert limit is not None and limit[0] == pytest.approx(80.0)
    assert limit[1].startswith("measured GEMM (torch.mm float32) x 2, int8's theoretical rate")
    fast = MachinePeak(theo, {"float32": GemmPeak(40.0, "cpu", "float32", "torch.mm float32"),
                              "int8": GemmPeak(150.0, "cpu", "int8", "torch._int_mm int8")})
    assert fast.limit_for("cpu", "int8") == (150.0, "measured GEMM (torch._int_mm int8)")
