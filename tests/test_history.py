"""The history store (SQLite and a real PostgreSQL server) and step detection over it."""

from __future__ import annotations

import datetime as dt
import glob
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import numpy as np
import pytest

from pytest_sdperf.changepoints import change_points, steps
from pytest_sdperf.history import HistoryError, HistoryStore, append_and_load, database_url
from pytest_sdperf.html_report import render
from pytest_sdperf.session import Record

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _header(key: str = "x86-test-4c") -> dict[str, object]:
    return {"machine": {"key": key, "cpu": "Test"}, "environment": {"torch": "2.14.1", "python": "3.11"}}


def _records(slow_p50: float = 0.3, rss: int = 300 * 2**20, ssim: float = 0.97) -> list[Record]:
    def rec(variant: str, p50: float, s: float) -> Record:
        return Record(f"suites/t.py::test_gen[{variant}]", variant, "m", "w", "pass", p50_s=p50,
                      p90_s=p50, memory={"peak_rss": rss, "cuda_peak": None}, ssim=s, psnr=float("inf"),
                      info={"images_per_s": 1 / p50, "stages": {"unet": 0.1}})
    return [rec("fake", 0.1, 1.0), rec("fake-slow", slow_p50, ssim)]


def _fill(store: HistoryStore, runs: int, step_at: int | None = None, key: str = "x86-test-4c") -> None:
    """``runs`` runs; from run index ``step_at`` on, fake-slow is 40% slower (a regression)."""
    noise = np.random.default_rng(3).normal(0, 0.01, runs)
    for i in range(runs):
        p50 = 0.3 * (1 + noise[i]) * (1.4 if step_at is not None and i >= step_at else 1.0)
        store.append(_header(key), _records(p50), when=T0 + dt.timedelta(days=i))


def test_database_url_takes_urls_paths_and_default(tmp_path: Path) -> None:
    assert database_url("postgresql+psycopg://u@h/db", tmp_path) == "postgresql+psycopg://u@h/db"
    assert database_url("default", tmp_path) == f"sqlite:///{tmp_path / 'history.sqlite'}"
    assert database_url(str(tmp_path / "a" / "h.db"), tmp_path).endswith("/a/h.db")
    assert (tmp_path / "a").is_dir()


def test_sqlite_store_appends_runs_and_reads_them_back(tmp_path: Path) -> None:
    store = HistoryStore(database_url("default", tmp_path))
    _fill(store, 3)
    store.append(_header("other-machine"), _records(9.9))
    points = store.points(machine_key="x86-test-4c", variant="fake-slow")
    assert [p.when for p in points] == [T0 + dt.timedelta(days=i) for i in range(3)]
    assert all(abs(p.p50_s - 0.3) < 0.02 for p in points if p.p50_s is not None)
    assert points[0].value("peak_memory") == 300.0 and points[0].ssim == 0.97
    assert store.machine_keys() == ["other-machine", "x86-test-4c"]
    assert len(store.points()) == 8
    store.close()


def test_unreachable_or_unknown_databases_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot open the history database nosuchdb://"):
        HistoryStore("nosuchdb://x/y")
    pytest.importorskip("psycopg")
    with pytest.raises(HistoryError, match=r"postgresql\+psycopg://sdperf:\*\*\*@127.0.0.1:1/x") as info:
        HistoryStore("postgresql+psycopg://sdperf:secret@127.0.0.1:1/x?connect_timeout=3")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)


def test_plugin_notes_a_history_failure_instead_of_crashing(tmp_path: Path) -> None:
    from pytest_sdperf.plugin import _record_history

    settings = SimpleNamespace(history="nosuchdb://x", baselines_dir=tmp_path)
    state = SimpleNamespace(settings=settings, header=_header, records=_records(), notes=[])
    assert _record_history(state) is None  # type: ignore[arg-type]
    assert state.notes and state.notes[0].startswith("history not recorded: cannot open")
    settings.history = "default"
    points = _record_history(state)  # type: ignore[arg-type]
    assert sorted(p.variant for p in points) == ["fake", "fake-slow"]


def test_a_step_injected_into_a_noisy_history_is_found() -> None:
    rng = np.random.default_rng(0)
    flat = list(0.25 * (1 + rng.normal(0, 0.02, 24)))
    stepped = flat[:15] + [v * 1.3 for v in flat[15:]]
    assert change_points(flat) == []
    assert change_points(stepped) == [15]
    (step,) = steps(stepped)
    assert step.index == 15 and 25 < step.change_pct < 35
    assert change_points([0.97] * 6 + [0.80] * 6) == [6]  # an SSIM drop
    assert change_points([1.0, 1.0, 5.0, 1.0, 1.0]) == []  # one odd run is not a step


def test_report_marks_the_step_in_the_trend_of_the_stored_history(tmp_path: Path) -> None:
    store = HistoryStore(database_url("default", tmp_path))
    _fill(store, 10, step_at=6)
    points = store.points(machine_key="x86-test-4c")
    html = render(_header(), _records(0.42), "fake", points)
    assert "10 recorded runs on this machine" in html
    trends = html.split("id='trends'")[1]
    assert trends.count("<img") >= 3
    assert "fake-slow latency p50 (s): step at run 7" in html and "(+4" in html
    assert "fake latency" not in html  # the flat variant has no change point


def _pg_ctl() -> Path | None:
    found = [shutil.which("pg_ctl"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)]
    return next((Path(p) for p in found if p), None)


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run as the 'postgres' user when we are root (the server refuses to run as root)."""
    if os.geteuid() != 0:
        return cmd
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a unix socket in a temporary folder (no TCP port)."""
    pg_ctl = _pg_ctl()
    if pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    root = Path(tempfile.mkdtemp(prefix="sdperf-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, log = root / "data", root / "server.log"
    try:
        subprocess.run(_as_postgres([str(pg_ctl.parent / "initdb"), "-D", str(data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True, timeout=180)
        options = f"-k {root} -c listen_addresses='' -c fsync=off -c shared_buffers=16MB"
        subprocess.run(_as_postgres([str(pg_ctl), "-D", str(data), "-l", str(log), "-w", "-t", "120",
                                     "-o", options, "start"]), check=True, capture_output=True, timeout=180)
        yield f"postgresql+psycopg://postgres@/postgres?host={root}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_postgres([str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_server_holds_the_history_of_several_machines(postgres_url: str) -> None:
    first, second = HistoryStore(postgres_url), HistoryStore(postgres_url)  # two machines, one server
    _fill(first, 4, step_at=2, key="machine-a")
    _fill(second, 2, key="machine-b")
    assert first.machine_keys() == ["machine-a", "machine-b"]
    points = second.points(machine_key="machine-a", variant="fake-slow")
    assert [p.when for p in points] == [T0 + dt.timedelta(days=i) for i in range(4)]
    assert points[0].when.tzinfo is not None and points[0].value("peak_memory") == 300.0
    assert change_points([p.p50_s or 0 for p in points]) == [2]
    loaded = append_and_load(postgres_url, Path("."), _header("machine-b"), _records())
    assert {p.machine_key for p in loaded} == {"machine-b"} and len({p.run_id for p in loaded}) == 3
    first.close()
    second.close()


def _write_runs(url: str, key: str, runs: int, start: Any) -> list[int]:
    """One writer (a process of its own): wait for the other, open the store (creating its
    tables where none exist) and append ``runs`` runs."""
    start.wait(timeout=120)
    store = HistoryStore(url)
    try:
        return [store.append(_header(key), _records(0.3 + i / 100)) for i in range(runs)]
    finally:
        store.close()


def _fresh_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a new SQLite file, or a new database on the PostgreSQL server."""
    if backend == "sqlite":
        return database_url(str(tmp_path / "race.sqlite"), tmp_path)
    import sqlalchemy as sa

    server: str = request.getfixturevalue("postgres_url")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS sdperf_race"))
        conn.execute(sa.text("CREATE DATABASE sdperf_race"))
    admin.dispose()
    return server.replace("/postgres?", "/sdperf_race?")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_concurrent_writers_to_one_history_lose_nothing(backend: str, request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    import concurrent.futures
    import multiprocessing

    url = _fresh_database(backend, request, tmp_path)  # both writers also race to create the tables
    runs = 15
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        start = manager.Barrier(2)
        jobs = [pool.submit(_write_runs, url, key, runs, start) for key in ("machine-a", "machine-b")]
        ids = [job.result(timeout=300) for job in jobs]
    assert len(set(ids[0]) | set(ids[1])) == 2 * runs  # every run got its own id
    store = HistoryStore(url)
    points = store.points()
    store.close()
    assert len({p.run_id for p in points}) == 2 * runs and len(points) == 2 * runs * 2
    for key, written in zip(("machine-a", "machine-b"), ids, strict=True):
        assert {p.run_id for p in points if p.machine_key == key} == set(written)


def test_history_keeps_each_machine_key_its_own_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_sdperf import cli

    db = tmp_path / "h.sqlite"
    store = HistoryStore(database_url(str(db), tmp_path))
    _fill(store, 10, step_at=6, key="x86-avx2-2c")  # a step on one machine
    _fill(store, 10, key="x86-avx512-2c")  # none on the other
    points = store.points(variant="fake-slow")
    store.close()
    html = render(_header("x86-avx2-2c"), _records(0.42), "fake", points)
    assert "20 recorded runs on 2 machine keys (x86-avx2-2c, x86-avx512-2c), each its own line" in html
    assert "fake-slow @ x86-avx2-2c latency p50 (s): step at run" in html
    assert "fake-slow @ x86-avx512-2c latency" not in html  # its flat line has no change point
    assert cli.main(["history", "--db", str(db), "--variant", "fake-slow"]) == 0
    out = capsys.readouterr().out
    assert "(fake-slow, machine x86-avx2-2c)" in out and "(fake-slow, machine x86-avx512-2c)" in out
