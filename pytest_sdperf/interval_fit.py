"""Whether each test's latency interval is as wide as its unchanged readings move.

The gate's interval for a test's ratio is r * exp(+-z SE), SE its modelled standard error (this
run's rounds, the recording's, the between-session spread: ``compare``). Over repeated runs of
unchanged code (the suite harness's A/A runs, and the untouched tests of its fault runs), log r
should then move with a root mean square of about SE. ``fit`` says, per test, how it did:

- ``spread``: the root mean square of log r over the readings (about 0: no change; it includes a
  test's shared offset against its baseline, which a repeated run cannot average away);
- ``se``: the median modelled SE of those readings;
- ``z_rms``: the root mean square of log r / SE: about 1 where the model fits, well below 1
  where the interval is wider than the readings move (a slowdown it could have seen is missed),
  above 1 where it is narrower (unchanged readings fall outside it: false first readings, which
  the gate's confirmation in fresh workers has to discard).

``python -m pytest_sdperf.interval_fit DIR_OR_FILE...`` prints the table for a harness's runs'
folder (``run*.json``, ``first.json``: ``--sdperf-json`` files; ``faulted.json`` names each run's
faulted variant, whose readings are left out) or for a committed per-run summary
(``baselines/runs/KEY/validate-suite-*.json``, whose readings carry no z: ``--z`` gives it).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

#: In a harness's runs' folder: which variant each run file's run faulted (``{"run3.json": "tome"}``).
FAULTED = "faulted.json"
_Z = re.compile(r"\bz=([0-9.]+)")
_VARIANT = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True)
class Reading:
    """One test's latency ratio to its baseline in one run, with its interval and z."""

    test: str
    ratio: float
    low: float
    high: float
    z: float

    @property
    def se(self) -> float:
        """The modelled standard error of log ratio, from the interval."""
        return math.log(self.high / self.low) / (2.0 * self.z)


@dataclass(frozen=True)
class Fit:
    """One test's readings against its intervals (see the module docstring)."""

    test: str
    readings: int
    spread: float
    se: float
    z_rms: float
    worst: float  # the reading farthest from 1, as a ratio


def fit(readings: Iterable[Reading]) -> list[Fit]:
    """Per test, in first-seen order, how its readings moved against their modelled SE."""
    by_test: dict[str, list[Reading]] = {}
    for r in readings:
        by_test.setdefault(r.test, []).append(r)
    out = []
    for test, rows in by_test.items():
        logs = [math.log(r.ratio) for r in rows]
        out.append(Fit(
            test, len(rows), math.sqrt(statistics.fmean(x * x for x in logs)),
            statistics.median(r.se for r in rows),
            math.sqrt(statistics.fmean((x / r.se) ** 2 for x, r in zip(logs, rows, strict=True))),
            max((r.ratio for r in rows), key=lambda x: abs(math.log(x))),
        ))
    return out


def table(fits: Sequence[Fit]) -> list[str]:
    """Markdown table of ``fit``'s result, with a line over all tests."""
    lines = ["| test | readings | spread of log r (rms) | modelled SE (median) | z rms | farthest reading |",
             "|---|---|---|---|---|---|"]
    for f in fits:
        lines.append(f"| {f.test} | {f.readings} | {f.spread:.1%} | {f.se:.1%} | {f.z_rms:.2f} | {f.worst:.3f}x |")
    if fits:
        z = sorted(f.z_rms for f in fits)
        lines.append(f"| all {len(fits)} tests | {sum(f.readings for f in fits)} | - | - | median {statistics.median(z):.2f}, "
                     f"{sum(x < 0.8 for x in z)} under 0.8, {sum(x > 1.25 for x in z)} over 1.25 | - |")
    return lines


def from_records(records: Iterable[dict[str, Any]], skip_variant: str = "") -> list[Reading]:
    """Readings from ``--sdperf-json`` result records (a ratio, its interval and its z: the
    record's ``ratio_z``, else as its reason states it), leaving out ``skip_variant``'s (a harness
    run's faulted variant) and those paired with it or timed over it as their yardstick (a
    faulted paired reference moves every ratio taken against it: made 10% slower, it read every
    steady test about 0.90x)."""
    out = []
    for rec in records:
        interval, z = rec.get("ratio_interval"), rec.get("ratio_z")
        if z is None:
            found = _Z.search(str(rec.get("reason", "")))
            z = float(found.group(1)) if found else None
        paired = (rec.get("info") or {}).get("paired_with")
        partner = paired.get("variant") if isinstance(paired, dict) else None
        yardstick = (rec.get("info") or {}).get("yardstick")
        if skip_variant and skip_variant in (rec.get("variant"), partner, yardstick):
            continue
        if rec.get("ratio") is None or not interval or z is None:
            continue
        test = str(rec["test_id"]).split("::")[-1]
        out.append(Reading(test, float(rec["ratio"]), float(interval[0]), float(interval[1]), float(z)))
    return out


def from_summary(doc: dict[str, Any], z: float) -> list[Reading]:
    """Readings from a committed per-run summary (``runs`` of ``tests`` with ratio and interval),
    leaving out each run's faulted target, and the whole of a run whose target is the paired
    reference (the summary's ``reference_variant``: a summary of paired runs, see
    ``from_records``); ``z``: the runs' z where a test does not keep its own."""
    out = []
    for run in doc["runs"]:
        reference = doc.get("reference_variant")
        if reference is not None and run.get("condition") != "A/A" and run.get("target") == reference:
            continue
        for t in run["tests"]:
            found = _VARIANT.search(t["test"])
            if t.get("ratio") is None or not t.get("interval") or (found and found.group(1) == run.get("target")):
                continue
            out.append(Reading(t["test"], float(t["ratio"]), float(t["interval"][0]), float(t["interval"][1]),
                               float(t.get("z") or z)))
    return out


def from_folder(path: Path) -> list[Reading]:
    """Readings from a suite harness's runs' folder, each run's faulted variant left out, and
    the readings paired with it (``from_records``)."""
    faulted = json.loads((path / FAULTED).read_text()) if (path / FAULTED).exists() else {}
    readings: list[Reading] = []
    for run in sorted(path.glob("first.json")) + sorted(path.glob("run*.json")):
        records = json.loads(run.read_text()).get("results", [])
        readings += from_records(records, str(faulted.get(run.name, "")))
    return readings


def _load(path: Path, z: float | None) -> list[Reading]:
    if path.is_dir():
        return from_folder(path)
    doc = json.loads(path.read_text())
    if "runs" in doc:
        if z is None:
            raise SystemExit(f"{path}: a per-run summary keeps no z; give the runs' z with --z "
                             "(their reasons state it, e.g. 2.94 for 30 latency checks)")
        return from_summary(doc, z)
    return from_records(doc.get("results", []))


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m pytest_sdperf.interval_fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="DIR_OR_FILE")
    parser.add_argument("--z", type=float, default=None, help="the runs' z, for per-run summaries")
    args = parser.parse_args(argv)
    readings: list[Reading] = []
    for path in args.paths:
        if not path.exists():
            parser.error(f"{path}: no such file or folder; give a harness's runs' folder or a "
                         "per-run summary JSON")
        readings += _load(path, args.z)
    if not readings:
        parser.error("no latency readings with an interval in " + ", ".join(map(str, args.paths)))
    print("\n".join(table(fit(readings))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
