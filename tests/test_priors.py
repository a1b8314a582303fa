"""The between-session spread a test's interval assumes, learnt from its baseline file
(priors.py): per variant family and gate figure, the median of the file's tests' spreads, only
where enough tests and sessions say it; the latency check uses it with its weight."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_sdperf import priors
from pytest_sdperf.compare import (
    BETWEEN_PRIOR,
    LEARNT_PRIOR_WEIGHT,
    between_spread,
    check_latency,
)
from pytest_sdperf.measure.latency import LatencyStats
from pytest_sdperf.protocol import AutoTarget


def _entry(variant: str, paired: list[float], relative: list[float] | None = None) -> dict[str, Any]:
    sessions = [{"seconds": 1.0, "paired": p} for p in paired]
    for session, rel in zip(sessions, relative or [], strict=False):
        session["relative"] = rel
    return {"variant": variant, "latency": {"samples": [1.0], "sessions": sessions}}


def _family(name: str) -> str:
    return "openvino" if name.startswith("ov-") else "torch"


STEADY = [[1.0, 1.01, 0.99, 1.0], [1.0, 1.02, 1.0, 0.99], [1.0, 0.985, 1.0, 1.01]]
WIDE = [[1.0, 1.08, 0.95, 1.03], [1.0, 0.9, 1.05, 1.0], [1.0, 1.1, 0.97, 1.02]]


def _file() -> dict[str, Any]:
    entries = {f"t{i}": _entry(f"torch-{i}", s) for i, s in enumerate(STEADY)}
    entries.update({f"o{i}": _entry(f"ov-{i}", s) for i, s in enumerate(WIDE)})
    return entries


def test_each_family_learns_the_median_spread_of_its_tests() -> None:
    learnt = priors.learn(_file(), _family)
    torch = np.median([priors.spread_of(s) for s in STEADY])
    ov = np.median([priors.spread_of(s) for s in WIDE])
    assert learnt[("torch", "paired")] == pytest.approx(torch)
    assert learnt[("openvino", "paired")] == pytest.approx(ov)
    assert learnt[("openvino", "paired")] > 2 * learnt[("torch", "paired")]
    # every session's seconds are 1.0: a spread of 0, held up by the floor
    assert learnt[("torch", "seconds")] == priors.FLOOR
    assert priors.for_family(learnt, "openvino") == {"paired": pytest.approx(ov), "seconds": priors.FLOOR}


def test_too_few_tests_or_sessions_learn_nothing() -> None:
    entries = _file()
    del entries["o2"]  # two OpenVINO tests left
    entries["t0"] = _entry("torch-0", [1.0, 1.01])  # two sessions: not counted
    learnt = priors.learn(entries, _family)
    assert ("openvino", "paired") not in learnt
    assert ("torch", "paired") not in learnt
    assert priors.learn({}, _family) == {}


def test_the_latency_check_weighs_a_learnt_prior_and_says_so() -> None:
    sessions = [1.0, 1.01, 0.99, 1.0]
    own = np.var(np.log(sessions), ddof=1) * 3
    learnt = between_spread(sessions, 0.015)
    assert learnt == pytest.approx(math.sqrt((LEARNT_PRIOR_WEIGHT * 0.015**2 + own) / (LEARNT_PRIOR_WEIGHT + 3)))
    assert between_spread(sessions) > learnt  # the default prior (3%) is wider than this family's

    rounds = [1.0 + 0.004 * (i % 5 - 2) for i in range(20)]
    base = LatencyStats.from_samples(rounds, reference=[1.0] * 20)
    base = LatencyStats(**{**base.__dict__, "sessions": tuple({"paired": s} for s in sessions)})
    slower = LatencyStats.from_samples([1.065 * r for r in rounds], reference=[1.0] * 20)
    default = check_latency("paired", slower, base, 10.0, "ref", checks=30)
    steady = check_latency("paired", slower, base, 10.0, "ref", checks=30, priors={"paired": 0.015})
    assert "its prior 1.5% learnt from this baseline file" in steady.detail
    assert "learnt" not in default.detail
    assert steady.detectable_pct is not None and default.detectable_pct is not None
    assert steady.detectable_pct < default.detectable_pct
    assert steady.status == "fail" and default.status != "fail"  # 6.5% slower: seen only with it
    # a prior for another figure does not apply
    other = check_latency("paired", slower, base, 10.0, "ref", checks=30, priors={"relative": 0.015})
    assert other.detectable_pct == pytest.approx(default.detectable_pct)


def test_auto_rounds_carry_the_priors() -> None:
    stats = LatencyStats.from_samples([1.0, 1.1], reference=[1.0, 1.0])
    target = AutoTarget("paired", stats, 10.0, "ref", 30, {"paired": 0.02})
    back = AutoTarget.from_dict(target.to_dict())
    assert back.priors == {"paired": 0.02}
    assert AutoTarget.from_dict({**target.to_dict(), "priors": None}).priors == {}
    assert BETWEEN_PRIOR == 0.03  # the default where nothing is learnt


def test_the_session_learns_from_its_baseline_file_once_by_each_variants_family(tmp_path: Path) -> None:
    from pytest_sdperf.baselines import BaselineEntry
    from pytest_sdperf.config import Settings
    from pytest_sdperf.session import SdperfState
    from pytest_sdperf.variants.registry import VariantRegistry, VariantSpec
    from pytest_sdperf.workload import Workload

    registry = VariantRegistry()
    for name, family in (("a", "steady"), ("b", "steady"), ("c", "steady"), ("w", "wide")):
        registry.add(VariantSpec(name=name, family=family, description=name))
    state = SdperfState(Settings(baselines_dir=tmp_path, machine_key="key"), registry, tmp_path)
    # "gone" is no longer registered: a family of its own, which does not join "steady"
    for i, (name, medians) in enumerate(zip(["a", "b", "c", "w", "gone"], [*STEADY, *WIDE[:2]], strict=True)):
        stats = LatencyStats.from_samples([1.0, 1.0], reference=[1.0, 1.0])
        stats = LatencyStats(**{**stats.__dict__, "sessions": tuple({"paired": m} for m in medians)})
        state.store.queue(f"t{i}", BaselineEntry(variant=name, model="m", workload=Workload().to_dict(),
                                                 latency=stats, memory={}, thresholds={}))
    state.store.flush({})
    steady = state.priors(registry.get("a"))
    assert steady["paired"] == pytest.approx(np.median([priors.spread_of(s) for s in STEADY]))
    assert state.priors(registry.get("w")) == {}  # one test of its family: nothing learnt
    (tmp_path / "key.json").write_text("{damaged")
    assert state.priors(registry.get("a")) == steady  # learnt once, from the file as first read
