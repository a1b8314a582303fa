"""The judge and the gate, without a worker: verdicts from figures, and the record cycle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pytest_sdperf import glibc_malloc
from pytest_sdperf.config import Settings
from pytest_sdperf.gate import Gate
from pytest_sdperf.judge import Figures, Status, judge
from pytest_sdperf.measure.latency import LatencyStats
from pytest_sdperf.measure.memory import MemoryStats
from pytest_sdperf.measure.similarity import save_png
from pytest_sdperf.session import Measurement, SdperfState
from pytest_sdperf.variants.registry import VariantRegistry, VariantSpec
from pytest_sdperf.workload import Thresholds, Workload

MIB = 2**20
TIGHT = [1.0, 1.001, 0.999, 1.0005, 0.9995, 1.0, 1.0002, 0.9998]


def _fig(scale: float = 1.0, anon: int = 500 * MIB, ssim: float | None = None) -> Figures:
    return Figures(LatencyStats.from_samples([s * scale for s in TIGHT]),
                   {"peak_anon": anon, "peak_rss": anon}, ssim, 40.0 if ssim is not None else None)


def test_unchanged_passes_with_the_detectable_change_stated() -> None:
    verdict = judge(_fig(ssim=0.99), _fig(), Thresholds(latency_pct=10), "absolute")
    assert verdict.status is Status.PASS
    assert [c.metric for c in verdict.checks] == ["latency ratio", "memory (peak_anon)", "SSIM", "PSNR"]
    # a recording alone carries the prior between-session spread (3%, twice: this session's and
    # the recording's): tight samples see exp((1.96 + 1.645) * 0.03 * sqrt(2)) - 1 = 16.5%
    assert verdict.detectable_pct == pytest.approx(16.5, abs=0.2)
    # five steady sessions in the baseline see less
    stored = _fig()
    assert stored.latency is not None
    steady = LatencyStats.from_samples(TIGHT)
    for _ in range(4):
        stored = Figures(stored.latency.with_session(steady, 5), stored.memory)
    matured = judge(_fig(ssim=0.99), stored, Thresholds(latency_pct=10), "absolute")
    assert matured.detectable_pct is not None and matured.detectable_pct < 10


def test_each_metric_regresses_on_its_own() -> None:
    t = Thresholds(latency_pct=10, memory_pct=20, min_ssim=0.9)
    slow = judge(_fig(1.5, ssim=0.99), _fig(), t, "absolute")
    assert slow.status is Status.REGRESSION and [c.metric for c in slow.regressions()] == ["latency ratio"]
    hungry = judge(_fig(anon=700 * MIB, ssim=0.99), _fig(), t, "absolute")
    assert [c.metric for c in hungry.regressions()] == ["memory (peak_anon)"]
    ugly = judge(_fig(ssim=0.5), _fig(), t, "absolute")
    assert [c.metric for c in ugly.regressions()] == ["SSIM"]


def test_noise_that_cannot_decide_is_inconclusive() -> None:
    noisy = Figures(LatencyStats.from_samples([1.0, 1.6, 0.9, 1.5, 1.0, 1.4]))
    verdict = judge(noisy, Figures(LatencyStats.from_samples([1.0, 1.05, 0.95, 1.02, 0.98, 1.01])),
                    Thresholds(latency_pct=10), "absolute")
    assert verdict.status is Status.INCONCLUSIVE and verdict.inconclusive()


def _paired(ratios: list[float]) -> Figures:
    """The variant at ``ratios`` times the reference timed beside it (the reference at 1 s)."""
    return Figures(LatencyStats.from_samples(ratios, reference=[1.0] * len(ratios)))


def test_a_speedup_floor_is_checked_on_the_paired_rounds_alone() -> None:
    twice_as_fast = _paired([0.5 * r for r in TIGHT])
    floor = Thresholds(min_speedup=1.5)
    ok = judge(twice_as_fast, None, floor, "paired", "torch-fp32")  # a recording is held to it too
    assert ok.status is Status.PASS and ok.checks[0].metric == "speedup over torch-fp32"
    assert 1.99 < ok.checks[0].measured < 2.01
    lost = judge(_paired([0.9 * r for r in TIGHT]), None, floor, "paired", "torch-fp32")
    assert lost.status is Status.REGRESSION
    assert "speedup over torch-fp32: measured 1.111x, limit 1.500x" in lost.regressions()[0].message()
    noisy = judge(_paired([0.5, 0.9, 0.6, 0.8, 0.7, 0.75]), None, floor, "paired", "torch-fp32")
    assert noisy.status is Status.INCONCLUSIVE  # 1.38x, its interval reaching above 1.5x
    unpaired = judge(_fig(0.9), None, floor, "paired", "torch-fp32")
    assert unpaired.checks == ()  # no paired reference: nothing to hold the floor against
    assert judge(_paired([0.9] * 8), None, Thresholds(), "paired").checks == ()  # no floor


def test_a_session_speedup_floor_applies_to_the_variants_it_names() -> None:
    s = Settings(min_speedups=(("ov-*", 1.2), ("ov-static", 1.5)), latency_pct=20.0)
    assert s.threshold_overrides("ov-static") == {"latency_pct": 20.0, "min_speedup": 1.5}  # the last
    assert s.threshold_overrides("ov-fp32")["min_speedup"] == 1.2
    assert "min_speedup" not in s.threshold_overrides("torch-bf16")


def test_list_settings_are_swept_in_every_combination() -> None:
    s = Settings(sets=(("tome_ratio", "0.3,0.5"), ("ov_precision", "f32, bf16"), ("taesd", "x")))
    assert s.fixed_sets() == {"taesd": "x"}
    assert s.swept_sets() == [{"tome_ratio": a, "ov_precision": b}
                              for a in ("0.3", "0.5") for b in ("f32", "bf16")]
    assert Settings(sets=(("tome_ratio", "0.3,0.5"), ("tome_ratio", "0.4"))).swept_sets() == []


def test_nothing_stored_judges_similarity_alone() -> None:
    verdict = judge(_fig(ssim=0.95), None, Thresholds(), "relative")
    assert [c.metric for c in verdict.checks] == ["SSIM", "PSNR"] and verdict.detectable_pct is None


def _state(tmp_path: Path) -> SdperfState:
    settings = Settings(
        enabled=True, model="tiny", variants=None, baselines_dir=tmp_path / "baselines",
        update=False, update_all=False, rounds=5, warmup=0, cache_dir=tmp_path / "cache",
        json_path=None, timeout_s=60.0, allow_pickle=False, device="cpu", gate_mode="absolute",
        reference_variant="ref",
    )
    return SdperfState(settings, VariantRegistry(), tmp_path)


def _measurement(tmp_path: Path, scale: float) -> Measurement:
    image = tmp_path / f"img-{scale}.png"
    save_png(np.full((8, 8, 3), 128, dtype=np.uint8), image)
    return Measurement(
        variant="ref", model_key="tiny-abc", workload=Workload(), images=(image,),
        latency=LatencyStats.from_samples([s * scale for s in TIGHT]),
        memory=MemoryStats(500 * MIB, None, None, None, 400 * MIB, 100 * MIB),
        # the setting a worker started from this environment reports (glibc_malloc.py)
        info={glibc_malloc.INFO_KEY: glibc_malloc.mode_of(os.environ)}, environment={},
        build_s=1.0, latents_sha256="0", device="cpu",
    )


def test_gate_records_then_passes_then_fails_a_slowdown(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = VariantSpec(name="ref", family="t", description="t")

    def gate() -> Gate:
        return Gate(state, "suite::test[ref]", spec, {"latency_pct": 10.0}, tmp_path)

    with pytest.warns(UserWarning, match="no baseline entry"):  # a first recording passes
        gate().check(_measurement(tmp_path, 1.0))
    state.store.flush(state.header())
    assert gate().check(_measurement(tmp_path, 1.02)).verdict == "pass"
    with pytest.raises(pytest.fail.Exception, match="latency ratio: measured 1.5"):
        gate().check(_measurement(tmp_path, 1.5))
    assert [r.verdict for r in state.records] == ["recorded", "pass", "regression"]


def test_requests_in_flight_that_disagree_fail_the_test(tmp_path: Path) -> None:
    """Issue #17: only ov-async's first request is compared with the reference; the others
    must match it, or the test fails saying by how much."""
    import dataclasses

    state = _state(tmp_path)
    with pytest.warns(UserWarning, match="recorded now"):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.0))
    state.store.flush(state.header())
    first = _measurement(tmp_path, 1.0)
    agree = dataclasses.replace(first, info={**first.info, "requests_agree": True, "requests_max_diff": 0.0})
    assert _gate(state, tmp_path).check(agree).verdict == "pass"
    apart = dataclasses.replace(agree, info={**first.info, "requests_agree": False, "requests_max_diff": 0.25})
    with pytest.raises(pytest.fail.Exception, match="requests in flight disagree.*up to 0.25"):
        _gate(state, tmp_path).check(apart)
    assert state.records[-1].verdict == "regression"


def test_runs_that_do_not_regress_mature_the_baseline_up_to_its_sessions(tmp_path: Path) -> None:
    import json

    from pytest_sdperf.config import BASELINE_SESSIONS

    state = _state(tmp_path)

    def sessions() -> list[dict[str, float]]:
        entries = json.loads(state.store.path.read_text())["entries"]
        return list(next(iter(entries.values()))["latency"]["sessions"])

    with pytest.warns(UserWarning, match="recorded now"):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.0))
    state.store.flush(state.header())
    assert sessions() == []  # a recording is its own first session
    scales = [(1.01, 0.99, 1.02, 1.0)[i % 4] for i in range(BASELINE_SESSIONS)]
    for scale in scales:  # the recording and BASELINE_SESSIONS - 1 passes fill it; one more
        record = _gate(state, tmp_path).check(_measurement(tmp_path, scale))
        state.store.flush(state.header())
        assert record.verdict == "pass"
    medians = [round(x["seconds"], 2) for x in sessions()]
    assert medians == [1.0, *scales][:BASELINE_SESSIONS]  # then it stays
    assert state.records[-1].info["baseline_sessions"] == BASELINE_SESSIONS
    with pytest.raises(pytest.fail.Exception, match=rf"mean of {BASELINE_SESSIONS} sessions"):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.5))


def test_a_regression_adds_no_session(tmp_path: Path) -> None:
    import json

    state = _state(tmp_path)
    with pytest.warns(UserWarning, match="recorded now"):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.0))
    state.store.flush(state.header())
    with pytest.raises(pytest.fail.Exception):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.5))
    state.store.flush(state.header())
    entry = next(iter(json.loads(state.store.path.read_text())["entries"].values()))
    assert entry["latency"]["sessions"] == []


def test_gate_of_another_variant_needs_the_reference_made_by_the_fixture(tmp_path: Path) -> None:
    """The gate never runs a worker: a missing reference image is the fixture's to make."""
    state = _state(tmp_path)
    other = VariantSpec(name="other", family="t", description="t")
    m = _measurement(tmp_path, 1.0)
    from dataclasses import replace

    with pytest.raises(pytest.fail.Exception, match="no FP32 reference image"):
        Gate(state, "suite::test[other]", other, {}, tmp_path).check(replace(m, variant="other"))
    assert state.records == []  # nothing judged, nothing recorded


def test_latency_target_is_the_stored_entry_typed(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = VariantSpec(name="ref", family="t", description="t")
    gate = Gate(state, "suite::test[ref]", spec, {"latency_pct": 7.0}, tmp_path)
    m = _measurement(tmp_path, 1.0)
    assert gate.latency_target(m.model_key, m.workload) is None  # nothing stored yet
    with pytest.warns(UserWarning, match="recorded now"):
        gate.check(m)
    state.store.flush(state.header())
    target = gate.latency_target(m.model_key, m.workload)
    assert target is not None and target.mode == "absolute" and target.latency_pct == 7.0
    assert target.baseline.samples == m.latency.samples
    assert len(state.records) == 1  # looking the entry up recorded nothing


def _gate(state: SdperfState, tmp_path: Path, marker: dict[str, float] | None = None) -> Gate:
    spec = VariantSpec(name="ref", family="t", description="t")
    return Gate(state, "suite::test[ref]", spec, marker or {}, tmp_path)


def test_the_gate_widens_by_the_sessions_noise_so_far(tmp_path: Path) -> None:
    """noise.py through the gate: once MIN_TESTS tests of the session were judged at four times
    their recordings' round spread, the next check's between-session term is doubled (its
    detail says so), and its auto rounds' target carries the same factor to the worker."""
    from pytest_sdperf.noise import MIN_TESTS
    from pytest_sdperf.results import Record

    state = _state(tmp_path)
    with pytest.warns(UserWarning, match="recorded now"):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.0))
    state.store.flush(state.header())
    quiet = _gate(state, tmp_path).check(_measurement(tmp_path, 1.0))
    assert "in this session for its noise" not in quiet.reason + str(quiet.info)
    target = _gate(state, tmp_path).latency_target("tiny-abc", Workload())
    assert target is not None and target.noise_scale == 1.0
    state.records.extend(Record(f"t::test[{i}]", "v", "m", "w", "pass", round_spread_pct=8.0,
                                baseline_round_spread_pct=2.0) for i in range(MIN_TESTS))
    assert state.noise_scale() == pytest.approx(2.0)
    target = _gate(state, tmp_path).latency_target("tiny-abc", Workload())
    assert target is not None and target.noise_scale == pytest.approx(2.0)
    with pytest.raises(pytest.fail.Exception, match=r"x2\.00 in this session for its noise"):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.5))


def test_session_limit_ranks_above_the_default_and_below_the_marker(tmp_path: Path) -> None:
    from dataclasses import replace

    state = _state(tmp_path)
    with pytest.warns(UserWarning, match="recorded now"):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.0))  # a first recording passes
    state.store.flush(state.header())
    assert state.records[-1].verdict == "recorded"
    with pytest.raises(pytest.fail.Exception, match="limit 1.100x"):  # the default, 10%
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.2))
    state.settings = replace(state.settings, latency_pct=50.0)
    assert _gate(state, tmp_path).check(_measurement(tmp_path, 1.2)).verdict == "pass"
    with pytest.raises(pytest.fail.Exception, match="limit 1.100x"):  # the marker ranks above
        _gate(state, tmp_path, {"latency_pct": 10.0}).check(_measurement(tmp_path, 1.2))


def test_entries_of_the_old_rules_keep_their_hand_edits_only(tmp_path: Path) -> None:
    """Entries written before entry rules stored every limit; those equal to what the old
    defaults gave are not the entry's own, so the session's limit reaches them."""
    import json
    from dataclasses import replace

    state = _state(tmp_path)
    with pytest.warns(UserWarning):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.0))
    state.store.flush(state.header())
    path = state.store.path
    doc = json.loads(path.read_text())
    (entry,) = doc["entries"].values()
    del entry["rules"]
    entry["thresholds"] = {"latency_pct": 50.0, "memory_pct": 20.0, "min_ssim": 0.9, "min_psnr": 20.0}
    path.write_text(json.dumps(doc))
    state = _state(tmp_path)
    state.settings = replace(state.settings, latency_pct=5.0)
    with pytest.raises(pytest.fail.Exception, match="limit 1.050x"):
        _gate(state, tmp_path).check(_measurement(tmp_path, 1.2))
    entry["thresholds"]["latency_pct"] = 60.0  # a hand edit: it ranks above the session's limit
    path.write_text(json.dumps(doc))
    state = _state(tmp_path)
    state.settings = replace(state.settings, latency_pct=5.0)
    assert _gate(state, tmp_path).check(_measurement(tmp_path, 1.2)).verdict == "pass"


def test_a_scenarios_throughput_is_judged_per_image_by_the_latency_rule() -> None:
    """Seconds per image 30% over the baseline's fail as throughput, naming both images/s;
    the same figures pass; a side without a scenario run makes no throughput check."""
    rng = np.random.default_rng(3)
    base = LatencyStats.from_samples(list(0.5 * (1 + 0.01 * rng.standard_normal(30))))
    slow = LatencyStats.from_samples(list(0.65 * (1 + 0.01 * rng.standard_normal(30))))
    lat = LatencyStats.from_samples([1.0, 1.0, 1.0])
    t = Thresholds()
    verdict = judge(Figures(lat, throughput=slow), Figures(lat, throughput=base), t, "absolute")
    bad = verdict.regressions()
    assert [c.metric for c in bad] == ["throughput: seconds-per-image ratio"]
    assert "1.54 vs 2 images/s" in bad[0].detail and "fall to 90.9%" in bad[0].detail
    assert verdict.latency is not None and verdict.latency.metric == "latency ratio"
    same = judge(Figures(lat, throughput=base), Figures(lat, throughput=base), t, "absolute")
    assert not same.regressions()
    assert [c.metric for c in judge(Figures(lat, throughput=slow), Figures(lat), t, "absolute").checks] \
        == ["latency ratio"]


def test_a_reading_its_rounds_left_undecided_is_measured_again_in_fresh_workers(tmp_path: Path) -> None:
    """A noisy first reading above half the limit, its rounds over while more would have
    narrowed it, is inconclusive (``--sdperf-strict`` fails that): it is measured again, as a
    suspect is, and the second reading decides; the first rides in the info and the notes."""
    import dataclasses

    from pytest_sdperf.confirm import confirmed

    state = _state(tmp_path)
    spec = VariantSpec(name="ref", family="t", description="t")

    def gate() -> Gate:
        return Gate(state, "suite::test[ref]", spec, {"latency_pct": 10.0}, tmp_path)

    with pytest.warns(UserWarning, match="no baseline entry"):
        gate().check(_measurement(tmp_path, 1.0))
    state.store.flush(state.header())
    noisy = 1.07 * np.exp(np.random.default_rng(2).normal(0, 0.05, 6))
    first = dataclasses.replace(_measurement(tmp_path, 1.0), latency=LatencyStats.from_samples(list(noisy)))
    check = gate().latency_again(first)
    assert check is not None and not check.suspect and check.status == "inconclusive" and not check.settled
    assert gate().latency_suspect(first) is None
    asked: list[tuple[LatencyStats, ...]] = []

    def measure(workdir: Path, earlier: tuple[LatencyStats, ...]) -> Measurement:
        asked.append(earlier)
        return _measurement(tmp_path, 1.0)

    again = confirmed(first, gate(), state, measure, tmp_path / "confirmation")
    assert isinstance(again, Measurement) and asked == [(first.latency,)]
    assert "too noisy to decide" in again.info["first_measurement"]
    assert any("left undecided, so fresh workers measured it again" in n for n in state.notes)
    assert gate().check(again).verdict == "pass"
    # A decided reading is not measured again.
    assert confirmed(_measurement(tmp_path, 1.0), gate(), state, measure, tmp_path / "c2") is not None
    assert len(asked) == 1


def test_only_an_inconclusive_check_more_rounds_would_narrow_is_undecided() -> None:
    from pytest_sdperf.compare import INCONCLUSIVE, Check
    from pytest_sdperf.judge import Verdict

    def check(settled: bool, status: str = INCONCLUSIVE) -> Check:
        return Check("latency ratio", status, 1.07, 1.0, 1.1, "x", interval=(0.9, 1.3), settled=settled)

    assert Verdict(Status.INCONCLUSIVE, (check(False),)).undecided() is not None
    # the baseline's recording too noisy to decide against: a fresh reading would not help
    assert Verdict(Status.INCONCLUSIVE, (check(True),)).undecided() is None
    assert Verdict(Status.PASS, (check(False, "pass"),)).undecided() is None


def test_the_session_withdraws_the_malloc_variables_it_set_when_it_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers inherit the thresholds through the session's environment; a process that goes on
    after the session (an in-process pytest run) gets its own back, a user's own value kept."""
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "123")
    state = _state(tmp_path)
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(1 << 30)
    assert glibc_malloc.mode_of(os.environ) == "fixed"
    state.close()
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ and os.environ["MALLOC_TRIM_THRESHOLD_"] == "123"
