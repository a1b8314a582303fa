"""Shards' results into one run (``sdperf merge``), and what a CI page shows of a run: the step
summary (Markdown) and Bencher's metric format (BMF JSON).

A merge is all or nothing: every file is read and checked before the merged file is written
(atomically), and a refusal names the files and the value they disagree on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .results import Record

PASSING = frozenset({"pass", "updated", "recorded", "inconclusive"})
#: Bencher's published JSON schema of BMF (https://bencher.dev/docs/reference/bencher-metric-format).
BMF_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema", "type": "object",
    "patternProperties": {".+": {"type": "object", "patternProperties": {".+": {
        "type": "object", "required": ["value"],
        "properties": {"value": {"type": "number"}, "lower_value": {"type": "number"},
                       "upper_value": {"type": "number"}}}}}},
}


class MergeError(Exception):
    """Shards that cannot be merged; the message names the files and what differs."""


@dataclass(frozen=True)
class ResultsFile:
    """One ``--sdperf-json`` file: its header (everything but the results) and its records."""

    path: Path
    header: Mapping[str, Any]
    records: list[Record]

    @classmethod
    def read(cls, path: Path) -> ResultsFile:
        """Read and check a results file; MergeError naming it when it cannot be used."""
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
                raise ValueError("no 'results' list")
            records = [Record.from_dict(item) for item in doc["results"]]
        except OSError as exc:
            raise MergeError(f"{path}: cannot be read ({exc.strerror or exc}); nothing was merged") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise MergeError(f"{path}: not an sdperf results file (--sdperf-json): {exc}; "
                             "nothing was merged") from None
        header = {k: v for k, v in doc.items() if k not in ("results", "verdicts")}
        return cls(path, header, records)

    @property
    def shard(self) -> Mapping[str, Any] | None:
        """The ``shard`` header of a ``--sdperf-shard`` run, or None."""
        shard = self.header.get("shard")
        return shard if isinstance(shard, Mapping) else None


def _same(files: Sequence[ResultsFile], what: str, value: Any) -> list[str]:
    """A line for each file whose ``value(file)`` differs from the first file's."""
    first = value(files[0])
    return [f"{f.path} has {what} {value(f)!r}, {files[0].path} has {first!r}"
            for f in files[1:] if value(f) != first]


def merge_results(files: Sequence[ResultsFile], force: bool = False) -> tuple[dict[str, Any], list[Record], list[str]]:
    """(header, records, notes) of one run made of ``files``, the shards of one run.

    Refused (MergeError), unless ``force``: shards of different commits, machine keys or package
    sets, of different selections or shard counts, a shard given twice or missing, and a file
    that is not a shard. Always refused: a test in two files (each test must come once).
    With ``force`` each such problem becomes a note. The records come in the order the whole
    selection was collected, as one unsharded run would have run them.
    """
    if not files:
        raise MergeError("no results files to merge")
    problems = [
        *_same(files, "commit", lambda f: f.header.get("commit")),
        *_same(files, "machine key", lambda f: (f.header.get("machine") or {}).get("key")),
        *_same(files, "package set", lambda f: f.header.get("environment")),
        *_same(files, "reference variant", lambda f: f.header.get("reference_variant")),
    ]
    shards = [f.shard for f in files]
    problems += [f"{f.path} is not a shard (run with --sdperf-shard I/N)" for f in files if f.shard is None]
    sharded = [(f, s) for f, s in zip(files, shards, strict=True) if s is not None]
    if sharded:
        parts = [f for f, _ in sharded]
        problems += _same(parts, "shard count", lambda f: (f.shard or {}).get("count"))
        selection = (parts[0].shard or {}).get("collected")
        problems += [f"{f.path} was split from another selection of tests than {parts[0].path} "
                     f"({len((f.shard or {}).get('collected', ()))} tests, not {len(selection or ())})"
                     for f in parts[1:] if (f.shard or {}).get("collected") != selection]
        count = int(sharded[0][1]["count"])
        seen: dict[int, Path] = {}
        for f, s in sharded:
            if int(s["index"]) in seen:
                problems.append(f"shard {s['index']}/{count} is given twice: {seen[int(s['index'])]} and {f.path}")
            seen[int(s["index"])] = f.path
        missing = sorted(set(range(1, count + 1)) - set(seen))
        if missing:
            problems.append(f"shard{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(f'{i}/{count}' for i in missing)} missing")
    if problems and not force:
        raise MergeError("refusing to merge: " + "; ".join(problems) + " (--force merges anyway)")
    owner: dict[str, Path] = {}
    for f in files:
        for r in f.records:
            if r.test_id in owner:
                raise MergeError(f"{r.test_id} is in both {owner[r.test_id]} and {f.path}: each test "
                                 "must come from one shard; nothing was merged")
            owner[r.test_id] = f.path
    order = {t: n for n, t in enumerate(sharded[0][1]["collected"])} if sharded else {}
    records = sorted((r for f in files for r in f.records),
                     key=lambda r: order.get(r.test_id, len(order)))
    header = {k: v for k, v in files[0].header.items() if k != "shard"}
    header["merged"] = [{"file": str(f.path), "shard": f"{s['index']}/{s['count']}" if s else None,
                         "tests": len(f.records)} for f, s in zip(files, shards, strict=True)]
    notes = [f"merged despite: {p}" for p in problems]
    notes += [str(n) for f in files for n in f.header.get("notes", ())]
    if notes:
        header["notes"] = notes
    return header, records, notes


def failing(records: Sequence[Record]) -> list[Record]:
    """The records whose verdict fails a run (a regression, an error, a hang, ...)."""
    return [r for r in records if r.verdict not in PASSING]


def _change(r: Record) -> float:
    """How far the latency moved from the baseline, as |log ratio| (0 without a ratio)."""
    return abs(math.log(r.ratio)) if r.ratio and r.ratio > 0 else 0.0


def step_summary(header: Mapping[str, Any], records: Sequence[Record], largest: int = 10) -> str:
    """A Markdown summary for ``$GITHUB_STEP_SUMMARY``: counts, the machine's noise beside the
    baselines' recordings (``report.noise_sentence``), every failing test, and the largest latency
    changes against the baseline with their intervals and what each could see."""
    from .report import noise_sentence, verdict_counts

    key = (header.get("machine") or {}).get("key", "unknown machine")
    counts = ", ".join(f"{n} {v}" for v, n in verdict_counts(records).items()) or "no tests"
    lines = [f"## sdperf on `{key}`", "", f"{len(records)} tests: {counts}.", ""]
    if noise := noise_sentence(records):  # a noisy night samples longer and sees less
        lines += [f"{noise}.", ""]
    bad = failing(records)
    if bad:
        lines += ["### Failing", "", "| test | verdict | reason |", "|---|---|---|"]
        lines += [f"| `{r.test_id}` | {r.verdict} | {_cell(r.reason.splitlines()[0] if r.reason else '')} |"
                  for r in bad]
        lines.append("")
    moved = sorted((r for r in records if r.ratio is not None), key=_change, reverse=True)[:largest]
    if moved:
        lines += ["### Largest latency changes", "",
                  "| test | vs baseline | interval (z for the session's checks) | sees | verdict |", "|---|---|---|---|---|"]
        for r in moved:
            low, high = r.ratio_interval or (None, None)
            interval = f"{low:.2f}-{high:.2f}" if low is not None and high is not None else "-"
            sees = f"{r.detectable_pct:.0f}%" if r.detectable_pct is not None else "-"
            lines.append(f"| `{r.test_id}` | {r.ratio:.3f}x | {interval} | {sees} | {r.verdict} |")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")[:300]


def bmf(records: Sequence[Record]) -> dict[str, dict[str, dict[str, float]]]:
    """The run in Bencher Metric Format: one benchmark a test (its id), with the measures
    ``latency`` (Bencher's built-in measure: nanoseconds; the median call, bounded by the
    fastest and slowest round), ``throughput`` (images per second: Bencher's operations per
    second), ``peak-memory`` (bytes, the gated figure), ``ssim`` and ``psnr`` (dB) where measured.
    """
    from .measure.memory import gated_figure

    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in records:
        measures: dict[str, dict[str, float]] = {}
        if r.p50_s:
            latency = {"value": r.p50_s * 1e9}
            if r.samples:
                latency |= {"lower_value": min(r.samples) * 1e9, "upper_value": max(r.samples) * 1e9}
            measures["latency"] = latency
        per_s = r.info.get("images_per_s")
        if isinstance(per_s, (int, float)) and per_s > 0:
            measures["throughput"] = {"value": float(per_s)}
        figure = gated_figure(r.memory)
        if figure is not None:
            measures["peak-memory"] = {"value": float(figure[1])}
        for name, value in (("ssim", r.ssim), ("psnr", r.psnr)):
            if value is not None and math.isfinite(value):
                measures[name] = {"value": float(value)}
        if measures:
            out[r.test_id] = measures
    return out
