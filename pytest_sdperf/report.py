"""Terminal summary table and the machine-readable JSON results. Only this module prints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from .baselines import atomic_write_text
from .session import REFERENCE_VARIANT, Record

COLUMNS = ("variant", "p50", "speedup", "img/s", "peak mem", "size", "SSIM", "PSNR", "verdict")


def speedups(records: Sequence[Record], reference: str = REFERENCE_VARIANT) -> dict[str, float | None]:
    """test_id -> p50 of the reference variant (same model and workload, this session) / own p50."""
    ref = {
        (r.model_key, r.workload_key): r.p50_s
        for r in records
        if r.variant == reference and r.p50_s
    }
    out: dict[str, float | None] = {}
    for r in records:
        base = ref.get((r.model_key, r.workload_key))
        out[r.test_id] = base / r.p50_s if base and r.p50_s else None
    return out


def _mib(value: Any) -> str:
    return f"{value / 2**20:.0f} MiB" if isinstance(value, (int, float)) else "-"


def _num(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "-"


def rows(records: Sequence[Record], reference: str = REFERENCE_VARIANT) -> list[tuple[str, ...]]:
    """One row of strings per record, in COLUMNS order."""
    ups = speedups(records, reference)
    out: list[tuple[str, ...]] = []
    for r in records:
        mem = r.memory.get("cuda_peak") or r.memory.get("peak_rss")
        ips = r.info.get("images_per_s")
        out.append((
            r.variant,
            _num(r.p50_s, ".3f") + (" s" if r.p50_s is not None else ""),
            _num(ups.get(r.test_id), ".2f") + ("x" if ups.get(r.test_id) else ""),
            _num(ips, ".2f"),
            _mib(mem),
            _mib(r.info.get("model_size_bytes")),
            _num(r.ssim, ".4f"),
            _num(r.psnr, ".1f"),
            r.verdict,
        ))
    return out


def table(records: Sequence[Record], reference: str = REFERENCE_VARIANT) -> list[str]:
    """The summary table as lines of text."""
    body = rows(records, reference)
    widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(COLUMNS)]
    def fmt(cells: Iterable[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()
    return [fmt(COLUMNS), fmt("-" * w for w in widths), *(fmt(row) for row in body)]


def write_terminal_summary(terminalreporter: Any, records: Sequence[Record], notes: Sequence[str],
                           written: Sequence[Path], reference: str = REFERENCE_VARIANT) -> None:
    """The end-of-session section."""
    if not records and not notes:
        return
    tr = terminalreporter
    tr.section("sdperf summary")
    for line in table(records, reference):
        tr.write_line(line)
    ups = [r for r in records if r.reason]
    for r in ups:
        tr.write_line(f"{r.variant}: {r.reason}")
    for note in dict.fromkeys(notes):
        tr.write_line(note)
    for path in written:
        tr.write_line(f"written: {path}")


def write_json(path: Path, header: dict[str, Any], records: Sequence[Record],
               reference: str = REFERENCE_VARIANT) -> None:
    """The run's results as JSON (machine, environment, one object per test)."""
    ups = speedups(records, reference)
    doc = {
        **header,
        "results": [
            {**dataclasses.asdict(r), "speedup_vs_fp32": ups.get(r.test_id)} for r in records
        ],
    }
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
