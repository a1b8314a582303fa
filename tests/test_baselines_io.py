"""Baseline files: validation errors name the file, writes are atomic and merged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_sdperf.baselines import SCHEMA_VERSION, BaselineError, BaselineStore, parse_baseline


def entry(samples: list[float] | None = None) -> dict:
    return {
        "variant": "torch-fp32", "model": "tiny-x", "workload": {},
        "latency": {"samples": samples or [1.0, 1.1]}, "memory": {"peak_rss": 100},
        "similarity": None, "thresholds": {"latency_pct": 50.0},
    }


def test_store_round_trip_and_merge(tmp_path: Path) -> None:
    a = BaselineStore(tmp_path, "m")
    a.queue("t1", entry())
    a.flush({"machine": {"key": "m"}})
    b = BaselineStore(tmp_path, "m")  # a second session adds an entry
    b.queue("t2", entry([2.0]))
    b.flush({})
    stored = json.loads((tmp_path / "m.json").read_text())
    assert set(stored["entries"]) == {"t1", "t2"}
    assert stored["schema_version"] == SCHEMA_VERSION
    assert not list(tmp_path.glob(".*tmp"))


def test_damaged_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("{broken")
    store = BaselineStore(tmp_path, "m")
    with pytest.raises(BaselineError, match=str(path)):
        store.get("t1")
    store.queue("t1", entry())
    with pytest.raises(BaselineError):
        store.flush({})
    assert path.read_text() == "{broken"
    store.flush({}, force=True)
    assert (tmp_path / "m.json.bak").read_text() == "{broken"
    assert "t1" in json.loads(path.read_text())["entries"]


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(tmp_path: Path, bad: str) -> None:
    text = json.dumps({"schema_version": 1, "entries": {"t": entry()}}).replace("1.1", bad)
    with pytest.raises(BaselineError, match="not valid JSON|non-finite"):
        parse_baseline(text, tmp_path / "x.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(doc=json_values)
def test_fuzzed_documents_are_accepted_or_named(doc: object) -> None:
    path = Path("/nonexistent/base.json")
    try:
        data = parse_baseline(json.dumps(doc), path)
    except BaselineError as exc:
        assert str(path) in str(exc)
        assert "--sdperf-update-all" in str(exc)
    else:
        assert data["schema_version"] == SCHEMA_VERSION


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60), samples=st.lists(st.floats(), min_size=0, max_size=4))
def test_fuzzed_text_and_entries(text: str, samples: list[float]) -> None:
    path = Path("/nonexistent/base.json")
    for candidate in (text, json.dumps({"schema_version": 1, "entries": {"t": entry(samples)}})):
        try:
            data = parse_baseline(candidate, path)
        except BaselineError as exc:
            assert str(path) in str(exc)
        else:
            for e in data["entries"].values():
                assert all(math.isfinite(s) and s > 0 for s in e["latency"]["samples"])
