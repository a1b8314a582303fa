"""The history store: every run's results appended to a database, for trends across runs.

SQLite by default (a file), or any SQLAlchemy URL for a server a team shares, e.g.
``postgresql+psycopg://user@host/sdperf`` when the suite runs on many machines (install
``psycopg[binary]``). Two tables: ``sdperf_runs`` (one row a run: machine key, UTC time,
machine facts and package versions) and ``sdperf_results`` (one row a test of that run: its
figures). Usage::

    store = HistoryStore(database_url("default", Path("baselines")))
    store.append(state.header(), state.records)
    points = store.points(machine_key="x86_64-amd-epyc-avx2-2c", variant="torch-fp32")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from .measure.memory import gated_figure

if TYPE_CHECKING:
    import sqlalchemy as sa

    from .results import Record

DEFAULT_FILE = "history.sqlite"
METRICS = {"p50_s": "latency p50 (s)", "peak_memory": "peak memory (MiB)", "ssim": "SSIM"}


class HistoryError(Exception):
    """The history database cannot be opened, written or read; the message says which."""


@dataclass(frozen=True)
class HistoryPoint:
    """One test's figures in one recorded run."""

    run_id: int
    when: dt.datetime
    machine_key: str
    test_id: str
    variant: str
    verdict: str
    p50_s: float | None
    peak_memory: int | None
    ssim: float | None

    def value(self, metric: str) -> float | None:
        """The figure named by a key of METRICS (memory in MiB)."""
        raw = getattr(self, metric)
        if raw is None:
            return None
        return float(raw) / 2**20 if metric == "peak_memory" else float(raw)


def database_url(target: str, baselines_dir: Path) -> str:
    """A SQLAlchemy URL from ``--sdperf-history``: a URL as is, a path or 'default' as SQLite."""
    if "://" in target:
        return target
    path = baselines_dir / DEFAULT_FILE if target == "default" else Path(target).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[sa.Table, sa.Table]:
    import sqlalchemy as sa

    meta = sa.MetaData()
    runs = sa.Table(
        "sdperf_runs", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("machine_key", sa.String(200), nullable=False, index=True),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("machine", sa.JSON), sa.Column("environment", sa.JSON),
    )
    results = sa.Table(
        "sdperf_results", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("sdperf_runs.id"), nullable=False, index=True),
        sa.Column("test_id", sa.String(500), nullable=False),
        sa.Column("variant", sa.String(200), nullable=False, index=True),
        sa.Column("model_key", sa.String(200)), sa.Column("workload_key", sa.String(200)),
        sa.Column("verdict", sa.String(40)),
        *(sa.Column(name, sa.Float) for name in ("p50_s", "p90_s", "first_call_s", "ssim", "psnr")),
        sa.Column("peak_memory", sa.BigInteger), sa.Column("images_per_s", sa.Float),
        sa.Column("memory", sa.JSON), sa.Column("info", sa.JSON),
    )
    return runs, results


def peak_memory(record: Record) -> int | None:
    """The gated memory figure (``measure.memory.gated_figure``)."""
    figure = gated_figure(record.memory)
    return figure[1] if figure else None


def _result_row(run_id: int, r: Record) -> dict[str, Any]:
    ips = r.info.get("images_per_s")
    return {
        "run_id": run_id, "test_id": r.test_id, "variant": r.variant, "model_key": r.model_key,
        "workload_key": r.workload_key, "verdict": r.verdict, "p50_s": r.p50_s, "p90_s": r.p90_s,
        "first_call_s": r.first_call_s, "ssim": r.ssim, "psnr": _finite(r.psnr),
        "peak_memory": peak_memory(r), "images_per_s": ips if isinstance(ips, (int, float)) else None,
        "memory": dict(r.memory), "info": _jsonable(r.info),
    }


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value or value in (float("inf"), float("-inf")) else value


def _jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the plain values of ``info`` (JSON columns reject arbitrary objects)."""
    return {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool, type(None)))}


CREATE_LOCK = 0x5D9E5F  # the PostgreSQL advisory lock that serializes creating the tables


class HistoryStore:
    """A history database, opened (and its tables created) on construction."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        with self._errors("open"):
            self.engine = sa.create_engine(url)
            self._create_tables()

    def _create_tables(self, attempts: int = 5) -> None:
        """Create the tables where they do not exist. Two runs opening a new database at once
        would both create them (PostgreSQL: a unique violation in pg_type; SQLite: "table
        already exists"): on PostgreSQL the first to take an advisory lock creates them; on
        SQLite the one that lost finds them on its next try."""
        import time

        import sqlalchemy as sa

        runs, _ = _tables()
        for attempt in range(attempts):
            try:
                with self.engine.begin() as conn:
                    if self.engine.dialect.name == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK})
                    runs.metadata.create_all(conn, checkfirst=True)
                return
            except sa.exc.DBAPIError as exc:
                if attempt == attempts - 1 or "already exists" not in str(exc):
                    raise
                time.sleep(0.05 * (attempt + 1))

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages."""
        import sqlalchemy as sa

        try:
            return sa.make_url(self.url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return self.url

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn database and driver errors into a one-line HistoryError naming the URL."""
        import sqlalchemy as sa

        try:
            yield
        except (sa.exc.SQLAlchemyError, ImportError, OSError) as exc:
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise HistoryError(f"cannot {action} the history database {self.safe_url}: {first}") from None

    def append(self, header: Mapping[str, Any], records: Sequence[Record],
               when: dt.datetime | None = None) -> int:
        """Store one run (machine key, time, versions, each record's figures); its run id."""
        runs, results = _tables()
        machine = dict(header.get("machine") or {})
        row = {
            "machine_key": str(machine.get("key", "unknown")),
            "recorded": when or dt.datetime.now(dt.timezone.utc),
            "machine": machine, "environment": dict(header.get("environment") or {}),
        }
        with self._errors("write to"), self.engine.begin() as conn:
            key = conn.execute(runs.insert().values(**row)).inserted_primary_key
            assert key is not None
            run_id = int(key[0])
            if records:
                conn.execute(results.insert(), [_result_row(run_id, r) for r in records])
        return run_id

    def points(self, machine_key: str | None = None, variant: str | None = None,
               test_id: str | None = None) -> list[HistoryPoint]:
        """Recorded figures, oldest run first, optionally for one machine, variant or test."""
        import sqlalchemy as sa

        runs, results = _tables()
        query = sa.select(runs.c.id, runs.c.recorded, runs.c.machine_key, results.c.test_id,
                          results.c.variant, results.c.verdict, results.c.p50_s,
                          results.c.peak_memory, results.c.ssim).join(
            results, results.c.run_id == runs.c.id)
        for column, wanted in ((runs.c.machine_key, machine_key), (results.c.variant, variant),
                               (results.c.test_id, test_id)):
            if wanted is not None:
                query = query.where(column == wanted)
        query = query.order_by(runs.c.recorded, runs.c.id, results.c.test_id)
        with self._errors("read"), self.engine.connect() as conn:
            return [_point(row) for row in conn.execute(query)]

    def machine_keys(self) -> list[str]:
        """The machine keys that have runs recorded."""
        import sqlalchemy as sa

        runs, _ = _tables()
        with self._errors("read"), self.engine.connect() as conn:
            return sorted(str(k) for k in conn.execute(sa.select(runs.c.machine_key).distinct()).scalars())

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


def _point(row: Any) -> HistoryPoint:
    when = row.recorded
    if when.tzinfo is None:  # SQLite keeps no zone; everything is stored in UTC
        when = when.replace(tzinfo=dt.timezone.utc)
    return HistoryPoint(int(row.id), when, row.machine_key, row.test_id, row.variant,
                        row.verdict or "", row.p50_s, row.peak_memory, row.ssim)


def by_test(points: Sequence[HistoryPoint]) -> dict[tuple[str, str], list[HistoryPoint]]:
    """(test id, machine key) -> its points in order: one series a test on each machine (the same
    test on an avx2 and an avx512 machine are two lines, never one with a false step)."""
    out: dict[tuple[str, str], list[HistoryPoint]] = {}
    for p in points:
        out.setdefault((p.test_id, p.machine_key), []).append(p)
    return out


def series(points: Sequence[HistoryPoint], metric: str) -> Iterator[tuple[tuple[str, str], list[HistoryPoint]]]:
    """((test id, machine key), points that have ``metric``), per series, for trend lines."""
    for key, group in by_test(points).items():
        kept = [p for p in group if p.value(metric) is not None]
        if kept:
            yield key, kept


def append_and_load(target: str, baselines_dir: Path, header: Mapping[str, Any],
                    records: Sequence[Record]) -> list[HistoryPoint]:
    """Append this run, then return this machine's history (this run included)."""
    store = HistoryStore(database_url(target, baselines_dir))
    try:
        store.append(header, records)
        return store.points(machine_key=str((header.get("machine") or {}).get("key", "unknown")))
    finally:
        store.close()
