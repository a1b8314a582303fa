"""sdperf merge (results of shards), sdperf baselines merge (their baseline updates), the step
summary and the Bencher Metric Format export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_sdperf import cli
from pytest_sdperf.baselines import BaselineError, BaselineStore
from pytest_sdperf.merge import BMF_SCHEMA, bmf, step_summary
from pytest_sdperf.results import Record

KEY = "x86_64-test-avx2-2c"
ALL = [f"suites/t.py::test_gen[v{i}]" for i in range(4)]


def _record(test_id: str, verdict: str = "pass", ratio: float = 1.0) -> dict[str, Any]:
    return {**Record(test_id, test_id[-3:-1], "tiny-0123456789ab", "128x128", verdict, p50_s=0.2,
                     samples=(0.19, 0.2, 0.23), memory={"peak_anon": 2**28}, ssim=0.99, psnr=40.0,
                     ratio=ratio, ratio_interval=(ratio * 0.95, ratio * 1.05), detectable_pct=12.0,
                     info={"images_per_s": 5.0}).to_dict(), "speedup_vs_fp32": None}


def _shard(path: Path, index: int, count: int, tests: list[str], **header: Any) -> Path:
    doc = {"machine": {"key": KEY}, "environment": {"torch": "2.9.0"}, "commit": "a" * 40,
           "reference_variant": "torch-fp32",
           "shard": {"index": index, "count": count, "collected": ALL, "tests": tests},
           "results": [_record(t) for t in tests]}
    doc.update(header)
    path.write_text(json.dumps(doc))
    return path


def _three(tmp_path: Path) -> list[Path]:
    return [_shard(tmp_path / "s1.json", 1, 3, [ALL[0], ALL[3]]), _shard(tmp_path / "s2.json", 2, 3, [ALL[1]]),
            _shard(tmp_path / "s3.json", 3, 3, [ALL[2]])]


def _merge(tmp_path: Path, *args: str) -> int:
    return cli.main(["merge", str(tmp_path / "merged.json"), *args])


def test_merge_orders_results_as_one_run_and_drops_the_shard_header(tmp_path: Path) -> None:
    assert _merge(tmp_path, *map(str, reversed(_three(tmp_path)))) == 0
    doc = json.loads((tmp_path / "merged.json").read_text())
    assert [r["test_id"] for r in doc["results"]] == ALL
    assert "shard" not in doc and doc["commit"] == "a" * 40 and doc["verdicts"] == {"pass": 4}
    assert sorted(m["shard"] for m in doc["merged"]) == ["1/3", "2/3", "3/3"]


@pytest.mark.parametrize("change, said", [
    ({"commit": "b" * 40}, "commit"),
    ({"machine": {"key": "other-key"}}, "machine key"),
    ({"environment": {"torch": "2.8.0"}}, "package set"),
])
def test_merge_refuses_shards_of_other_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            change: dict[str, Any], said: str) -> None:
    files = _three(tmp_path)
    _shard(files[2], 3, 3, [ALL[2]], **change)
    assert _merge(tmp_path, *map(str, files)) == 2
    err = capsys.readouterr().err
    assert said in err and str(files[2]) in err and "--force" in err
    assert not (tmp_path / "merged.json").exists()
    assert _merge(tmp_path, "--force", *map(str, files)) == 0  # forced: merged, with a note
    assert said in capsys.readouterr().out


def test_merge_refuses_a_missing_or_repeated_shard_and_a_test_twice(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    s1, s2, _ = _three(tmp_path)
    assert _merge(tmp_path, str(s1), str(s2)) == 2
    assert "shard 3/3 missing" in capsys.readouterr().err
    twice = _shard(tmp_path / "again.json", 2, 3, [ALL[2]])
    assert _merge(tmp_path, str(s1), str(s2), str(twice)) == 2
    assert "shard 2/3 is given twice" in capsys.readouterr().err
    dup = _shard(tmp_path / "dup.json", 3, 3, [ALL[1], ALL[2]])
    assert _merge(tmp_path, "--force", str(s1), str(s2), str(dup)) == 2  # never forced
    assert f"{ALL[1]} is in both" in capsys.readouterr().err


def test_merge_names_a_damaged_file_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _three(tmp_path)
    files[1].write_text('{"results": [')
    assert _merge(tmp_path, *map(str, files)) == 2
    assert f"{files[1]}: not an sdperf results file" in capsys.readouterr().err
    assert not (tmp_path / "merged.json").exists()


def test_merge_exits_1_when_a_shard_regressed(tmp_path: Path) -> None:
    files = _three(tmp_path)
    doc = json.loads(files[1].read_text())
    doc["results"][0]["verdict"] = "regression"
    files[1].write_text(json.dumps(doc))
    assert _merge(tmp_path, *map(str, files)) == 1


# --- baselines merge ------------------------------------------------------------------------

def _entry(variant: str, p50: float = 0.2) -> dict[str, Any]:
    return {"variant": variant, "model": "tiny", "workload": {}, "latency": {"samples": [p50]},
            "memory": {"peak_anon": 1}, "thresholds": {}}


def _update_file(folder: Path, tag: str, entries: dict[str, Any], key: str = KEY, **extra: Any) -> Path:
    path = folder / f"{KEY}.{tag}.json"
    path.write_text(json.dumps({"schema_version": 1, "machine": {"key": key}, "entries": entries,
                                "shard": tag, **extra}))
    return path


def test_baselines_merge_applies_shards_copies_references_and_consumes_its_files(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path, KEY)
    store.queue("a@tiny/w", _entry("a"))
    store.queue("old@tiny/w", _entry("old"))
    store.flush({})
    one = _update_file(tmp_path, "shard-1-of-2", {"b@tiny/w": _entry("b")}, retired=["old@tiny/w"])
    elsewhere = tmp_path / "artifact"
    (elsewhere / "references" / "tiny-x").mkdir(parents=True)
    (elsewhere / "references" / "tiny-x" / "w-0.png").write_bytes(b"png")
    two = _update_file(elsewhere, "shard-2-of-2", {"a@tiny/w": _entry("a", 0.3)})
    done = BaselineStore(tmp_path, KEY).merge_shards([one, two])
    entries = json.loads(store.path.read_text())["entries"]
    assert sorted(entries) == ["a@tiny/w", "b@tiny/w"] and entries["a@tiny/w"]["latency"]["samples"] == [0.3]
    assert (done.entries, done.retired, done.images) == (2, 1, 1)
    assert (tmp_path / "references" / "tiny-x" / "w-0.png").read_bytes() == b"png"
    assert not one.exists() and two.exists()  # consumed in the folder, left elsewhere


def test_baselines_merge_refuses_without_writing(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path, KEY)
    store.queue("a@tiny/w", _entry("a"))
    store.flush({})
    before = store.path.read_bytes()
    good = _update_file(tmp_path, "shard-1-of-2", {"b@tiny/w": _entry("b")})
    other = _update_file(tmp_path, "shard-2-of-2", {"c@tiny/w": _entry("c")}, key="another-key")
    with pytest.raises(BaselineError, match="another-key"):
        store.merge_shards([good, other])
    clash = _update_file(tmp_path, "shard-2-of-2", {"b@tiny/w": _entry("b", 0.5)})
    with pytest.raises(BaselineError, match="both write 'b@tiny/w'"):
        store.merge_shards([good, clash])
    clash.write_text("{damaged")
    with pytest.raises(BaselineError, match=f"{clash}.*nothing was merged"):
        store.merge_shards([good, clash])
    assert store.path.read_bytes() == before and good.exists()


def test_baselines_merge_command_finds_the_folders_shard_files(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = ["baselines", "merge", "--dir", str(tmp_path), "--machine-key", KEY]
    assert cli.main(args) == 2
    assert "no shard files to merge" in capsys.readouterr().err
    _update_file(tmp_path, "shard-1-of-1", {"b@tiny/w": _entry("b")})
    assert cli.main(args) == 0
    assert "1 entries written" in capsys.readouterr().out
    assert "b@tiny/w" in json.loads((tmp_path / f"{KEY}.json").read_text())["entries"]


# --- summary and BMF ------------------------------------------------------------------------

def test_bmf_matches_bencher_schema_with_its_units() -> None:
    records = [Record.from_dict(_record(t)) for t in ALL[:2]]
    out = bmf(records)
    jsonschema.validate(out, BMF_SCHEMA)
    m = out[ALL[0]]
    assert m["latency"] == {"value": pytest.approx(0.2e9), "lower_value": pytest.approx(0.19e9),
                            "upper_value": pytest.approx(0.23e9)}  # Bencher's latency is in ns
    assert m["throughput"]["value"] == 5.0 and m["peak-memory"]["value"] == 2**28
    assert set(m) == {"latency", "throughput", "peak-memory", "ssim", "psnr"}


def test_report_writes_bmf(tmp_path: Path) -> None:
    results = _three(tmp_path)[0]
    assert cli.main(["report", str(results), "--bmf", str(tmp_path / "bmf.json")]) == 0
    jsonschema.validate(json.loads((tmp_path / "bmf.json").read_text()), BMF_SCHEMA)
    assert cli.main(["report", str(results)]) == 2  # nothing asked for


def test_step_summary_lists_failures_and_the_largest_changes() -> None:
    records = [Record.from_dict(_record(ALL[0], ratio=1.02)),
               Record.from_dict({**_record(ALL[1], "regression", ratio=1.4), "reason": "latency | 1.4x"}),
               Record.from_dict(_record(ALL[2], ratio=0.9))]
    text = step_summary({"machine": {"key": KEY}}, records)
    assert f"## sdperf on `{KEY}`" in text and "3 tests: 2 pass, 1 regression." in text
    failing = text.split("### Failing")[1].split("###")[0]
    assert ALL[1] in failing and ALL[0] not in failing and "latency \\| 1.4x" in failing
    changes = text.split("### Largest latency changes")[1]
    assert changes.index(ALL[1]) < changes.index(ALL[2]) < changes.index(ALL[0])  # by size of change
    assert "noise" not in text  # no round spreads in these records
    noisy = [Record.from_dict({**_record(name, ratio=1.0), "round_spread_pct": 9.0 + i,
                               "baseline_round_spread_pct": 2.0}) for i, name in enumerate(ALL[:3])]
    text = step_summary({"machine": {"key": KEY}}, noisy)
    assert "\nRound-to-round noise (a robust SD of each round's gated ratio, median of 3 tests): 10.0% this run, " \
           "2.0% in their baselines' recordings; this machine was noisier than" in text
