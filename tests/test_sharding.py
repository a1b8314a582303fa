"""--sdperf-shard: the split (deterministic, complete, balanced within its bound), and a run in
shards that merges into what one unsharded run gives, through pytest with the fake pipeline."""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import jsonschema
import pytest

from pytest_sdperf import cli
from pytest_sdperf.merge import BMF_SCHEMA
from pytest_sdperf.sharding import Shard, balance_bound, recorded_durations, shard_value, split
from pytest_sdperf.testing import SUITE, SdperfRun


@pytest.mark.parametrize("text, shard", [("1/3", Shard(1, 3)), ("3/3", Shard(3, 3)), (" 2/5 ", Shard(2, 5)),
                                         ("1/1", Shard(1, 1))])
def test_shard_values(text: str, shard: Shard) -> None:
    assert shard_value(text) == shard
    assert shard.tag == f"shard-{shard.index}-of-{shard.count}"


@pytest.mark.parametrize("text", ["3/2", "0/0", "0/3", "1/0", "x", "2", "1/x", "-1/3", ""])
def test_bad_shard_values_name_the_value_and_the_range(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"I/N"):
        shard_value(text)


def test_bad_shard_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    done = pytester.runpytest("--sdperf-shard", "3/2")
    assert done.ret == pytest.ExitCode.USAGE_ERROR
    done.stderr.fnmatch_lines(["*--sdperf-shard*'3/2'*I from 1 to N*"])


def _tests(n: int) -> list[str]:
    return [f"suites/test_a.py::test_gen[v{i:02d}]" for i in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_split_is_complete_deterministic_and_balanced(seed: int) -> None:
    rng = random.Random(seed)
    tests = _tests(rng.randint(1, 40))
    durations = {t: rng.lognormvariate(2.5, 0.8) for t in tests if rng.random() < 0.8}
    count = rng.randint(1, 6)
    shards = split(tests, durations, count)
    assert len(shards) == count
    assert sorted(t for s in shards for t in s) == sorted(tests)  # every test in exactly one shard
    assert split(list(tests), dict(durations), count) == shards  # the same on every runner
    for shard in shards:
        assert shard == [t for t in tests if t in shard]  # collection order kept
        timed = sum(durations.get(t, 0.0) for t in shard)
        assert timed <= balance_bound(list(durations.values()), count) + 1e-9


def test_untimed_tests_are_dealt_round_robin_and_move_no_timed_test() -> None:
    tests = _tests(8)
    assert split(tests, {}, 3) == [tests[0::3], tests[1::3], tests[2::3]]
    durations = {t: float(n + 1) for n, t in enumerate(tests)}
    before = split(tests, durations, 3)
    grown = split([*tests, "suites/test_a.py::test_new"], durations, 3)
    for old, new in zip(before, grown, strict=True):
        assert [t for t in new if t != "suites/test_a.py::test_new"] == old


def test_recorded_durations_prefer_the_sessions_model() -> None:
    entries = {
        "t.py::a@tiny/128x128": {"duration_s": 10.0},
        "t.py::a@sd15-arch/256x256": {"duration_s": 300.0},
        "t.py::b@sd15-arch/256x256": {"duration_s": 200.0},
        "t.py::c@tiny/128x128": {"duration_s": None},
    }
    assert recorded_durations(entries, "tiny") == {"t.py::a": 10.0, "t.py::b": 200.0}
    assert recorded_durations(entries, "sd15-arch") == {"t.py::a": 300.0, "t.py::b": 200.0}


# --- through pytest: record, run in three shards, merge; against one unsharded run ----------

VARIANTS = "fake,fake-slow,fake-hungry"


def _results(path: Path) -> dict[str, str]:
    return {r["test_id"]: r["verdict"] for r in json.loads(path.read_text())["results"]}


@pytest.mark.slow
def test_three_shards_merge_into_what_one_run_gives(pytester: pytest.Pytester, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = SdperfRun(pytester, options=("--sdperf-gate", "absolute", "--sdperf-variants", VARIANTS,
                                       "--sdperf-latency-pct", "300", "--sdperf-memory-pct", "300"))
    run.write_suite()
    pytester.makepyfile(test_more=SUITE.format(extra="").replace("steps=5", "steps=3"))
    base = run.root / "baselines"
    run.run().assert_outcomes(passed=6)  # the recording, unsharded
    recorded = json.loads(run.baseline_file().read_text())["entries"]
    assert all(e["duration_s"] > 0 for e in recorded.values()), "entries record their test's duration"
    # inside the rootdir: pytest takes an unknown option's path value into its rootdir search
    sharded = run.root / "sharded-baselines"
    shutil.copytree(base, sharded)

    out = run.root / "out"
    for i in (1, 2, 3):
        done = run.run("--sdperf-shard", f"{i}/3", "--sdperf-baselines", str(sharded),
                       "--sdperf-json", str(out / f"shard-{i}" / "results.json"))
        assert done.ret == 0, done.stdout.str()
    whole = run.run("--sdperf-json", str(out / "whole.json"), "--sdperf-bmf", str(out / "bmf.json"))
    assert whole.ret == 0
    jsonschema.validate(json.loads((out / "bmf.json").read_text()), BMF_SCHEMA)

    shard_files = sorted(sharded.glob("*.shard-*-of-3.json"))
    assert shard_files, "the shards' baseline updates (their sessions) went to shard files"
    merged = out / "merged.json"
    assert cli.main(["merge", str(merged), *(str(out / f"shard-{i}" / "results.json") for i in (1, 2, 3)),
                     "--history", str(tmp_path / "history.sqlite"), "--summary", str(out / "summary.md")]) == 0
    doc = json.loads(merged.read_text())
    ids = [r["test_id"] for r in doc["results"]]
    assert len(ids) == len(set(ids)) == 6  # each test once
    # same tests, same verdicts (an undecided reading of these noisy fakes may be either)
    assert {t: v.replace("inconclusive", "pass") for t, v in _results(merged).items()} == \
        {t: v.replace("inconclusive", "pass") for t, v in _results(out / "whole.json").items()}
    assert ids == [r["test_id"] for r in json.loads((out / "whole.json").read_text())["results"]]
    assert [m["shard"] for m in doc["merged"]] == ["1/3", "2/3", "3/3"]
    for i in (1, 2, 3):  # each shard judged with the whole selection's suite-level z
        assert json.loads((out / f"shard-{i}" / "results.json").read_text())["shard"]["latency_checks"] == 6
    assert "## sdperf on" in (out / "summary.md").read_text()

    assert cli.main(["baselines", "merge", "--dir", str(sharded),
                     "--machine-key", run.baseline_file().stem]) == 0
    assert not list(sharded.glob("*.shard-*")), "merged shard files in the folder are consumed"
    after_shards = json.loads((sharded / run.baseline_file().name).read_text())["entries"]
    after_whole = json.loads(run.baseline_file().read_text())["entries"]
    assert after_shards.keys() == after_whole.keys()
    assert {k: len(e["latency"]["sessions"]) for k, e in after_shards.items()} == \
        {k: len(e["latency"]["sessions"]) for k, e in after_whole.items()}
    capsys.readouterr()
    assert cli.main(["history", "--db", str(tmp_path / "history.sqlite")]) == 0
    assert capsys.readouterr().out.count("test_gen[") >= 6  # the merged run, appended once


def test_an_empty_shard_exits_0_saying_so(pytester: pytest.Pytester) -> None:
    run = SdperfRun(pytester, options=("--sdperf-variants", "fake"))
    run.write_suite()
    done = run.run("--sdperf-shard", "2/2")
    assert done.ret == 0, done.stdout.str()
    done.stdout.fnmatch_lines(["*shard 2/2 has no tests (of 1 selected)*"])
