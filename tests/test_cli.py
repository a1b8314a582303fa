"""The ``sdperf`` command: report, compare, history, baselines, model build, and its errors."""

from __future__ import annotations

import datetime as dt
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_sdperf.baselines import BaselineStore, parse_baseline
from pytest_sdperf.cli import main
from pytest_sdperf.history import HistoryStore, database_url
from pytest_sdperf.report import write_json
from pytest_sdperf.session import Record

HEADER = {"machine": {"key": "cli-test-2c"}, "environment": {"python": "3.11"}}


def _record(variant: str, p50: float, rss: int = 200 * 2**20, ssim: float = 0.99) -> Record:
    samples = tuple(float(x) for x in p50 * (1 + np.random.default_rng(1).normal(0, 0.01, 7)))
    return Record(f"suites/t.py::test_gen[{variant}]", variant, "m", "w", "pass", p50_s=p50,
                  p90_s=p50, memory={"peak_rss": rss}, ssim=ssim, psnr=35.0, samples=samples)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results.json"
    write_json(path, HEADER, [_record("fake", 0.1, ssim=1.0), _record("fake-slow", 0.3)], "fake")
    return path


def _edited(path: Path, variant: str, edit: Any) -> Path:
    doc = json.loads(path.read_text())
    for item in doc["results"]:
        if item["variant"] == variant:
            edit(item)
    out = path.with_name(f"edited-{variant}.json")
    out.write_text(json.dumps(doc))
    return out


def _slower(item: dict[str, Any]) -> None:
    item["samples"] = [s * 2 for s in item["samples"]]
    item["p50_s"] *= 2


def test_console_script_is_declared() -> None:
    (script,) = entry_points(group="console_scripts", name="sdperf")
    assert script.value == "pytest_sdperf.cli:main"


def test_compare_passes_unchanged_results(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(results), str(results)]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "latency ratio" in out and "REGRESSION" not in out


def test_compare_flags_an_edited_results_file(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slower = _edited(results, "fake-slow", _slower)
    assert main(["compare", str(results), str(slower)]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "fake-slow" in line and "latency" in line)
    assert "+100" in row and "REGRESSION" in row
    assert "1 regression(s)" in out
    assert main(["compare", str(results), str(slower), "--latency-pct", "250"]) == 0  # a looser limit


def test_compare_flags_memory_and_similarity(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def hungrier_and_worse(item: dict[str, Any]) -> None:
        item["memory"]["peak_rss"] = int(item["memory"]["peak_rss"] * 1.5)
        item["ssim"] = 0.5
    edited = _edited(results, "fake", hungrier_and_worse)
    assert main(["compare", str(results), str(edited)]) == 1
    out = capsys.readouterr().out
    assert "memory (peak_rss)" in out and "+50.0%" in out and "2 regression(s)" in out
    assert any("SSIM" in line and "REGRESSION" in line for line in out.splitlines())


def test_errors_are_one_line_and_exit_2(results: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.json").write_text("{not json")
    other = tmp_path / "other.json"
    write_json(other, HEADER, [_record("unrelated", 0.2)], "fake")
    cases = [
        (["compare", str(results), str(tmp_path / "missing.json")], "missing.json: cannot be read"),
        (["compare", str(results), str(tmp_path / "junk.json")], "not an sdperf results file"),
        (["compare", str(results), str(other)], "no test in common"),
        (["history", "--db", str(tmp_path / "none.sqlite")], "no history database at"),
        (["baselines", "show", "--dir", str(tmp_path), "--machine-key", "k"], "no baseline file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("sdperf: error: ") and message in err and err.count("\n") == 1, err


def test_report_writes_the_html_with_history_trends(results: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    store = HistoryStore(database_url(str(db), tmp_path))
    for _ in range(3):
        store.append(HEADER, [_record("fake", 0.1), _record("fake-slow", 0.3)])
    store.close()
    out = tmp_path / "report.html"
    assert main(["report", str(results), "--html", str(out), "--history", str(db)]) == 0
    html = out.read_text()
    assert "id='results'" in html and "3.00x" not in html and "0.33x" in html  # base: fake
    assert "3 recorded runs on this machine" in html
    assert f"written: {out}" in capsys.readouterr().out


def test_history_lists_runs_and_marks_the_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.sqlite"
    store = HistoryStore(database_url(str(db), tmp_path))
    for i in range(8):
        when = dt.datetime(2026, 1, 1 + i, tzinfo=dt.timezone.utc)
        store.append(HEADER, [_record("fake", 0.1), _record("fake-slow", 0.3 if i < 5 else 0.45)], when)
    store.close()
    assert main(["history", "--db", str(db), "--variant", "fake-slow"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7 ", "8 "))]
    assert len(lines) == 8 and "test_gen[fake]" not in out
    assert "0.4500 s^" in lines[5] and "^" not in "".join(lines[:5] + lines[6:])
    assert main(["history", "--db", str(db), "--variant", "nope"]) == 2


def _baselines(tmp_path: Path) -> Path:
    store = BaselineStore(tmp_path / "baselines", "cli-test-2c")
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=90)).isoformat(timespec="seconds")
    for variant, recorded in (("torch-fp32", None), ("ov-int8", None), ("torch-old", old)):
        store.queue(f"suites/t.py::test_gen[{variant}]", {
            "variant": variant, "model": "m", "workload": {}, "latency": {"samples": [0.2, 0.3]},
            "memory": {"peak_rss": 2**20 * 100}, "similarity": {"ssim": 0.99, "psnr": 30.0, "max_abs": 3.0},
            "thresholds": {}, "recorded": recorded or dt.datetime.now(dt.timezone.utc).isoformat()})
    store.flush(HEADER)
    return store.path


def test_baselines_show_and_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _baselines(tmp_path)
    base = ["--dir", str(path.parent), "--machine-key", "cli-test-2c"]
    assert main(["baselines", "show", *base]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "0.2500 s" in out and "100.0 MiB" in out
    before = path.read_bytes()
    assert main(["baselines", "prune", *base, "--keep-variants", "torch-*", "--dry-run"]) == 0
    assert "would remove: suites/t.py::test_gen[ov-int8]" in capsys.readouterr().out
    assert path.read_bytes() == before
    assert main(["baselines", "prune", *base, "--older-than", "30"]) == 0
    assert "removed 1 of 3 entries" in capsys.readouterr().out
    assert main(["baselines", "prune", *base, "--keep-variants", "torch-*"]) == 0
    entries = json.loads(path.read_text())["entries"]
    assert list(entries) == ["suites/t.py::test_gen[torch-fp32]"]
    assert main(["baselines", "prune", *base]) == 2  # no rule given
    assert "needs --keep-variants LIST or --older-than DAYS" in capsys.readouterr().err


def test_prune_waits_for_the_baseline_lock_and_removes_only_what_it_names(tmp_path: Path) -> None:
    """Prune is the store's locked read-modify-write: a session flushing holds it off."""
    import threading

    from filelock import FileLock

    path = _baselines(tmp_path)
    before = path.read_bytes()
    codes: list[int] = []
    prune = threading.Thread(target=lambda: codes.append(main([
        "baselines", "prune", "--dir", str(path.parent), "--machine-key", "cli-test-2c",
        "--keep-variants", "torch-*"])))
    with FileLock(str(path) + ".lock"):
        prune.start()
        prune.join(0.5)
        assert prune.is_alive() and path.read_bytes() == before  # waiting for the lock
    prune.join(30)
    assert codes == [0]
    doc = parse_baseline(path.read_text(), path)
    assert list(doc["entries"]) == ["suites/t.py::test_gen[torch-fp32]", "suites/t.py::test_gen[torch-old]"]
    assert doc["machine"] == HEADER["machine"] and doc["environment"] == HEADER["environment"]


def test_model_build_writes_the_model_and_its_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import pytest_sdperf.models.tiny as tiny
    from pytest_sdperf.models.source import MANIFEST

    monkeypatch.setattr(tiny, "build_tiny", lambda out: (out / "model_index.json").write_text("{}"))
    out = tmp_path / "tiny"
    assert main(["model", "build", "tiny", "--out", str(out)]) == 0
    assert "model_index.json" in json.loads((out / MANIFEST).read_text())["files"]
    assert main(["model", "build", "tiny", "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
