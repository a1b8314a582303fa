"""Small units: registry, composition, marker arguments, machine key, latency stats."""

from __future__ import annotations

import pytest

from pytest_sdperf.machine import Machine, isa_level
from pytest_sdperf.measure.latency import LatencyStats
from pytest_sdperf.variants.registry import VariantError, VariantRegistry, VariantSpec, compose
from pytest_sdperf.workload import Workload, parse_marker_kwargs


def spec(name: str, **kw: object) -> VariantSpec:
    return VariantSpec(name=name, family="t", description=name, **kw)  # type: ignore[arg-type]


def registry() -> VariantRegistry:
    reg = VariantRegistry()
    for s in (spec("a"), spec("b", transforms=("m:f",)), spec("ov", backend="openvino", loader="m:ov"),
              spec("e1", backend="any", env={"X": "1"}), spec("e2", backend="any", env={"X": "2"})):
        reg.add(s)
    return reg


def test_select_by_name_glob_and_composition() -> None:
    reg = registry()
    assert [s.name for s in reg.select(["e*", "a"])] == ["e1", "e2", "a"]
    composed = reg.get("a+b+e1")
    assert composed.transforms == ("m:f",) and composed.env == {"X": "1"}
    assert composed.parts == ("a", "b", "e1") and composed.backend == "torch"


@pytest.mark.parametrize("name, message", [
    ("a+ov", "cannot stack backends"),
    ("e1+e2", "X is set to both"),
    ("a+a", "appears twice"),
    ("a+zzz", "unknown variant 'zzz'"),
])
def test_bad_compositions(name: str, message: str) -> None:
    with pytest.raises(VariantError, match=message):
        registry().get(name)


def test_duplicate_and_bad_names() -> None:
    reg = registry()
    with pytest.raises(VariantError, match="registered twice"):
        reg.add(spec("a"))
    with pytest.raises(VariantError, match="may not"):
        spec("a+b")
    with pytest.raises(VariantError, match="module:function"):
        spec("c", transforms=("nocolon",))


def test_spec_round_trips_through_json() -> None:
    s = registry().get("b+e1")
    assert VariantSpec.from_dict(s.to_dict()) == s


def test_compose_takes_the_loosest_thresholds() -> None:
    c = compose([spec("x", thresholds={"min_ssim": 0.9, "latency_pct": 10}),
                 spec("y", thresholds={"min_ssim": 0.5, "latency_pct": 30})])
    assert c.thresholds == {"min_ssim": 0.5, "latency_pct": 30}


def test_marker_arguments() -> None:
    args = parse_marker_kwargs({"steps": 3, "min_ssim": 0.8}, "t")
    assert args.workload == {"steps": 3} and args.thresholds == {"min_ssim": 0.8}
    with pytest.raises(ValueError, match="multiple of 8"):
        parse_marker_kwargs({"height": 100}, "t")
    with pytest.raises(ValueError, match="positive int"):
        parse_marker_kwargs({"steps": 0}, "t")


def test_workload_key_is_stable_and_sensitive() -> None:
    assert Workload().key() == Workload().key()
    assert Workload(seed=1).key() != Workload().key()


def test_machine_key() -> None:
    m = Machine("x86_64", "AMD EPYC 7B13 64-Core Processor", "avx2", 2, None)
    assert m.key == "x86_64-amd-epyc-7b13-avx2-2c"
    assert isa_level({"avx2", "avx512f", "amx_tile"}) == "amx"
    assert isa_level({"sse2"}) == "base"
    assert m.legacy_key is None and m.legacy_note([m.key]) == ""


def test_machine_key_names_the_microarchitecture_where_the_model_name_does_not() -> None:
    zen1 = Machine("x86_64", "AMD EPYC", "avx2", 2, None, uarch="zen")
    zen2 = Machine("x86_64", "AMD EPYC", "avx2", 2, None, uarch="zen2")
    assert zen1.key == "x86_64-amd-epyc-zen-avx2-2c" != zen2.key == "x86_64-amd-epyc-zen2-avx2-2c"
    assert zen1.legacy_key == "x86_64-amd-epyc-avx2-2c"
    note = zen1.legacy_note(["x86_64-amd-epyc-avx2-2c", "x86_64-other-avx512-4c"])
    assert "x86_64-amd-epyc-avx2-2c.json" in note and "rename it to x86_64-amd-epyc-zen-avx2-2c.json" in note
    assert zen1.legacy_note(["x86_64-other-avx512-4c"]) == ""
    # a clock is not a model number; a name that already says the microarchitecture keeps its key
    clocked = Machine("x86_64", "Intel(R) Xeon(R) CPU @ 2.20GHz", "avx512", 4, None, uarch="skylake_avx512")
    assert clocked.key == "x86_64-intel-xeon-2-20ghz-skylake-avx512-avx512-4c"
    named = Machine("x86_64", "Intel Xeon Processor (Cascadelake)", "avx512", 4, None, uarch="cascadelake")
    assert named.key == "x86_64-intel-xeon-cascadelake-avx512-4c" and named.legacy_key is None
    unknown = Machine("x86_64", "AMD EPYC", "avx2", 2, None)
    assert unknown.key == "x86_64-amd-epyc-avx2-2c" and unknown.legacy_key is None


def test_this_machine_reads_the_microarchitecture() -> None:
    from pytest_sdperf.machine import microarchitecture, this_machine

    uarch = microarchitecture()
    assert uarch is None or (uarch and uarch != "x86_64")
    assert this_machine().uarch == uarch


def test_latency_stats() -> None:
    stats = LatencyStats.from_samples([1.0, 2.0, 3.0])
    assert (stats.p50, stats.mean, stats.stdev) == (2.0, 2.0, 1.0)
    assert LatencyStats.from_dict(stats.to_dict()) == stats
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])


def test_latency_ratios_over_calibration_and_paired_reference() -> None:
    stats = LatencyStats.from_samples([2.0, 4.0], calibration=[0.5, 1.0], calibration_kernel="k1",
                                      reference=[1.0, 2.0])
    assert stats.relative() == (4.0, 4.0) and stats.paired() == (2.0, 2.0)
    assert LatencyStats.from_dict(stats.to_dict()) == stats
    older = {"samples": [2.0, 4.0], "calibration": [0.5, 1.0]}  # written before kernels/pairs
    legacy = LatencyStats.from_dict(older)
    assert legacy.kernel() == "conv-matmul-v0" and stats.kernel() == "k1"
    assert legacy.paired() is None and LatencyStats.from_samples([1.0], reference=[0.0]).paired() is None


def test_gate_mode_option_names_the_choices() -> None:
    import argparse

    from pytest_sdperf.config import gate_mode

    assert gate_mode("paired") == "paired"
    with pytest.raises(argparse.ArgumentTypeError, match="relative, paired, absolute"):
        gate_mode("ratio")


@pytest.mark.parametrize("parse, text, message", [
    ("positive_int", "0", "'0' must be 1 or more"),
    ("positive_int", "1.5", "'1.5' is not an integer"),
    ("non_negative_int", "-1", "'-1' must be 0 or more"),
    ("positive_float", "0", "'0' must be a positive number"),
    ("positive_float", "nan", "'nan' must be a positive number"),
    ("non_negative_float", "-0.5", "'-0.5' must be 0 or more"),
    ("non_negative_float", "x", "'x' is not a number"),
])
def test_number_parsers_name_the_value(parse: str, text: str, message: str) -> None:
    import argparse

    from pytest_sdperf import config

    with pytest.raises(argparse.ArgumentTypeError, match=message):
        getattr(config, parse)(text)


def test_number_parsers_accept_their_range() -> None:
    from pytest_sdperf.config import bounded_number, non_negative_float, non_negative_int, positive_float

    assert non_negative_int("0") == 0 and positive_float("0.5") == 0.5 and non_negative_float("0") == 0.0
    assert bounded_number(int, 2, strict=True)("3") == 3


def test_each_option_is_declared_once_and_fills_a_settings_field() -> None:
    import dataclasses

    from pytest_sdperf.config import OPTIONS, Settings, default_of, ini_key, option_for

    assert ini_key("--sdperf-rounds") == "sdperf_rounds" == option_for("rounds").ini_key
    fields = [o.field for o in OPTIONS if o.field]
    assert len(fields) == len(set(fields)) and len({o.flag for o in OPTIONS}) == len(OPTIONS)
    assert {f.name for f in dataclasses.fields(Settings)} - set(fields) == {"rounds_given", "warmup_given"}
    assert all(getattr(Settings(), name) == default_of(name) for name in fields)
    assert "(default 900)" in option_for("timeout_s").help_text and Settings().timeout_s == 900.0


def test_speedup_is_per_image_counting_requests_in_flight_and_a_batch_knee() -> None:
    """The speedup column divides seconds per image: a call of 4 requests (images/s in its
    info) or a batch knee of 6 images compares per image with the reference's one image."""
    from pytest_sdperf.report import speedups
    from pytest_sdperf.results import Record

    ref = Record("t::a[torch-fp32]", "torch-fp32", "m", "w", "pass", p50_s=1.0, images=("r.png",))
    batch = Record("t::a[ov-static]", "ov-static", "m", "w", "pass", p50_s=3.0, images=("o.png",),
                   info={"images_per_s": 6 / 3.0})
    old = Record("t::a[tome]", "tome", "m", "w", "pass", p50_s=0.5, images=("t.png",))
    ups = speedups([ref, batch, old])
    assert ups["t::a[ov-static]"] == pytest.approx(2.0) and ups["t::a[tome]"] == pytest.approx(2.0)


def test_speedup_base_is_the_reference_row_of_the_same_test_function() -> None:
    """Two sweeps of one workload each have a torch-fp32 row: each row's base is its own
    function's reference row; a function without one falls back to any of the workload's."""
    from pytest_sdperf.report import speedups
    from pytest_sdperf.results import Record

    def rec(test: str, variant: str, ips: float) -> Record:
        return Record(f"s.py::{test}[{variant}]", variant, "m", "w", "pass", p50_s=1.0, images=("x.png",),
                      info={"images_per_s": ips})

    rows = [rec("batch", "torch-fp32", 3.0), rec("batch", "ov-static", 4.5),
            rec("inst", "torch-fp32", 2.0), rec("other", "ov-async", 6.0)]
    ups = speedups(rows)
    assert ups["s.py::batch[ov-static]"] == pytest.approx(1.5)
    assert ups["s.py::inst[torch-fp32]"] == pytest.approx(1.0)
    assert ups["s.py::other[ov-async]"] == pytest.approx(2.0)
