"""The ``sdperf`` command: reports, comparisons, history, baselines and the tiny model.

    sdperf report RESULTS.json [--html OUT.html] [--bmf OUT.json] [--history DB]
    sdperf compare OLD.json NEW.json            # exit 1 when NEW regressed against OLD
    sdperf merge OUT.json SHARD.json... [--history DB]   # exit 1 when a merged test failed
    sdperf summary RESULTS.json                 # Markdown for $GITHUB_STEP_SUMMARY
    sdperf history [--db DB] [--variant V]
    sdperf baselines show [--dir baselines]
    sdperf baselines prune --keep-variants a,b | --older-than DAYS [--dry-run]
    sdperf baselines reach [--latency-pct P] [--rounds 10 30] [--sessions K]   # what each entry can see
    sdperf baselines merge [SHARD.json...]      # shards' baseline updates into the file
    sdperf model build tiny --out DIR
    sdperf sweep VARIANT --values 1,2,4 --cap-ms MS [-- PYTEST ARGS]   # the knee (sweep_run.py)

Exit status: 0 fine, 1 a regression (compare), 2 an error, told in one line on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .compare import FAIL, INCONCLUSIVE, Check
from .config import BASELINE_SESSIONS, DECIDE_MIN_ROUNDS, default_of, non_negative_float, positive_int
from .extras import HISTORY, HTML_REPORT, Feature
from .history import DEFAULT_FILE
from .judge import Figures, judge
from .measure.latency import LatencyStats
from .measure.memory import gated_figure
from .results import Record
from .workload import Thresholds

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2
DEFAULT_DIR = str(default_of("baselines_dir"))
DEFAULT_DB = f"{DEFAULT_DIR}/{DEFAULT_FILE}"


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def _require(feature: Feature) -> None:
    """A CliError naming the extra to install where ``feature``'s packages are missing."""
    problem = feature.problem()
    if problem:
        raise CliError(problem)


def _emit(lines: Sequence[Sequence[str]]) -> None:
    """Print rows of cells as aligned columns (the first row is the header)."""
    if not lines:
        return
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    for n, row in enumerate(lines):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


# --- report -------------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of a --sdperf-json file (with trends when --history is given)."""
    from .html_report import read_results, write_html

    if not args.html and not args.bmf:
        raise CliError("nothing to write: give --html OUT.html and/or --bmf OUT.json")
    if args.html:
        _require(HTML_REPORT)
    header, records, reference = read_results(Path(args.results))
    if args.bmf:
        _write_bmf(Path(args.bmf), records)
    if not args.html:
        return EXIT_OK
    history = None
    if args.history:
        key = (header.get("machine") or {}).get("key")
        history = _history_points(args.history, machine_key=str(key) if key and not args.all_keys else None)
    write_html(Path(args.html), header, records, args.reference or reference, history)
    print(f"written: {args.html}")
    return EXIT_OK


def _write_bmf(path: Path, records: Sequence[Record]) -> None:
    import json

    from .atomic import atomic_write_text
    from .merge import bmf

    atomic_write_text(path, json.dumps(bmf(records), indent=1, sort_keys=True) + "\n")
    print(f"written: {path}")


# --- merge and summary ----------------------------------------------------------------------

def cmd_merge(args: argparse.Namespace) -> int:
    """Merge shards' results files into one; exit 1 when a merged test failed."""
    from .merge import MergeError, ResultsFile, failing, merge_results, step_summary
    from .report import counts_line, noise_line, write_json

    out = Path(args.out)
    if any(Path(s).resolve() == out.resolve() for s in args.shards):
        raise CliError(f"{out} is also one of the shards: write the merged run to a new file")
    try:
        header, records, notes = merge_results([ResultsFile.read(Path(s)) for s in args.shards],
                                               force=args.force)
    except MergeError as exc:
        raise CliError(str(exc)) from None
    reference = str(header.get("reference_variant") or default_of("reference_variant"))
    write_json(out, header, records, reference)
    print(f"written: {out} ({len(args.shards)} files, {len(records)} tests)")
    for note in notes:
        print(f"note: {note}")
    if args.summary:
        Path(args.summary).write_text(step_summary(header, records))
        print(f"written: {args.summary}")
    if args.bmf:
        _write_bmf(Path(args.bmf), records)
    if args.history:
        _append_history(args.history, header, records)
    print(counts_line(records))
    if noise := noise_line(records):
        print(noise)
    return EXIT_REGRESSION if failing(records) else EXIT_OK


def _append_history(target: str, header: Mapping[str, Any], records: Sequence[Record]) -> None:
    """Append one run to a history database (a URL, a SQLite file, or 'default')."""
    from .history import HistoryStore, database_url

    _require(HISTORY)
    store = HistoryStore(database_url(target, Path(DEFAULT_DIR)))
    try:
        run_id = store.append(header, records)
    finally:
        store.close()
    print(f"history: run {run_id} appended to {store.safe_url}")


def cmd_summary(args: argparse.Namespace) -> int:
    """Print a results file's Markdown step summary; exit 1 when a test in it failed."""
    from .merge import MergeError, ResultsFile, failing, step_summary

    try:
        results = ResultsFile.read(Path(args.results))
    except MergeError as exc:
        raise CliError(str(exc).replace("; nothing was merged", "")) from None
    print(step_summary(results.header, results.records))
    return EXIT_REGRESSION if failing(results.records) else EXIT_OK


def _history_points(target: str, machine_key: str | None = None,
                    variant: str | None = None) -> list[Any]:
    """The recorded points of a history database that must already exist."""
    from .history import HistoryStore, database_url

    _require(HISTORY)
    if "://" not in target and not Path(target).expanduser().is_file():
        raise CliError(f"no history database at {target} (record one with --sdperf-history)")
    store = HistoryStore(database_url(target, Path(".")))
    try:
        return store.points(machine_key=machine_key, variant=variant)
    finally:
        store.close()


# --- compare ------------------------------------------------------------------------------

def compare_records(old: Record, new: Record, t: Thresholds) -> list[Check]:
    """The judge's checks of ``new`` against ``old``: latency samples in seconds (results files
    keep no calibration), memory, similarity."""
    def stats(samples: tuple[float, ...]) -> LatencyStats | None:
        return LatencyStats.from_samples(samples) if samples else None

    current = Figures(stats(new.samples), new.memory, new.ssim, new.psnr)
    return list(judge(current, Figures(stats(old.samples), old.memory), t, "absolute").checks)


def _check_row(test_id: str, old: Record, new: Record, c: Check) -> list[str]:
    if c.metric.startswith("latency"):
        before, after = f"{old.p50_s or 0:.4f} s", f"{new.p50_s or 0:.4f} s"
        change = f"{(c.measured - 1) * 100:+.1f}% (limit {(c.limit - 1) * 100:+.0f}%)"
    elif c.unit == "B":
        before, after = f"{(c.baseline or 0) / 2**20:.1f} MiB", f"{c.measured / 2**20:.1f} MiB"
        change = f"{(c.measured / (c.baseline or 1) - 1) * 100:+.1f}% (limit {c.limit / 2**20:.1f} MiB)"
    else:
        prior = old.ssim if c.metric == "SSIM" else old.psnr
        before = f"{prior:.4g}" if prior is not None else "-"
        after, change = f"{c.measured:.4g}", f"min {c.limit:g}"
    verdict = {FAIL: "REGRESSION", INCONCLUSIVE: "inconclusive"}.get(c.status, "ok")
    return [test_id, c.metric, before, after, change, verdict]


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two --sdperf-json files test by test; exit 1 on any regression."""
    from .html_report import read_results

    _, old_records, _ = read_results(Path(args.old))
    _, new_records, _ = read_results(Path(args.new))
    t = Thresholds(args.latency_pct, args.memory_pct, args.min_ssim, args.min_psnr)
    old = {r.test_id: r for r in old_records}
    new = {r.test_id: r for r in new_records}
    rows: list[list[str]] = [["test", "metric", "old", "new", "change", "verdict"]]
    failed = 0
    for test_id in [k for k in new if k in old]:
        for c in compare_records(old[test_id], new[test_id], t):
            rows.append(_check_row(test_id, old[test_id], new[test_id], c))
            failed += c.status == FAIL
    _emit(rows if len(rows) > 1 else [])
    for test_id in old.keys() - new.keys():
        print(f"only in {args.old}: {test_id}")
    for test_id in new.keys() - old.keys():
        print(f"only in {args.new}: {test_id}")
    if not old.keys() & new.keys():
        raise CliError(f"{args.old} and {args.new} have no test in common")
    print(f"{failed} regression(s)" if failed else "no regression")
    return EXIT_REGRESSION if failed else EXIT_OK


# --- history ------------------------------------------------------------------------------

def cmd_history(args: argparse.Namespace) -> int:
    """Print the recorded runs per test, marking change points (steps) in each metric."""
    from .changepoints import change_points
    from .history import METRICS, by_test

    points = _history_points(args.db, args.machine_key, args.variant)
    if not points:
        raise CliError(f"no runs recorded in {args.db}" + (f" for variant {args.variant}" if args.variant else ""))
    for (test_id, _), group in by_test(points).items():
        group = group[-args.last:]
        marks = {m: set(change_points([p.value(m) or 0.0 for p in group])) for m in METRICS}
        print(f"{test_id} ({group[0].variant}, machine {group[0].machine_key})")
        rows = [["run", "recorded (UTC)", "p50", "peak mem", "SSIM", "verdict"]]
        for i, p in enumerate(group):
            step = {m: "^" if i in marks[m] else "" for m in METRICS}
            rows.append([str(p.run_id), f"{p.when:%Y-%m-%d %H:%M}",
                         _fmt(p.p50_s, "{:.4f} s") + step["p50_s"],
                         _fmt(p.value("peak_memory"), "{:.1f} MiB") + step["peak_memory"],
                         _fmt(p.ssim, "{:.4f}") + step["ssim"], p.verdict])
        _emit(rows)
        print()
    print("^ marks a change point: the first run at a new level (PELT step detection)")
    return EXIT_OK


def _fmt(value: float | None, fmt: str) -> str:
    return fmt.format(value) if value is not None else "-"


# --- baselines ----------------------------------------------------------------------------

def _baseline_path(args: argparse.Namespace) -> Path:
    from .machine import this_machine

    key = args.machine_key or this_machine().key
    path = Path(args.dir) / f"{key}.json"
    if not path.is_file():
        known = sorted(p.stem for p in Path(args.dir).glob("*.json")
                       if ".obtained" not in p.name and ".shard-" not in p.name)
        raise CliError(f"no baseline file {path} (machine keys there: {', '.join(known) or 'none'})")
    return path


def _load_baseline(path: Path) -> dict[str, Any]:
    from .baselines import BaselineError, parse_baseline

    try:
        return parse_baseline(path.read_text(), path)
    except BaselineError as exc:
        raise CliError(str(exc)) from None


def cmd_baselines_show(args: argparse.Namespace) -> int:
    """List the entries of one machine key's baseline file."""
    import numpy as np

    path = _baseline_path(args)
    doc = _load_baseline(path)
    print(f"{path}: {len(doc['entries'])} entries")
    rows = [["test", "variant", "p50", "peak mem", "SSIM", "recorded"]]
    for test_id, e in doc["entries"].items():
        mem = gated_figure(e["memory"])
        sim = e.get("similarity") or {}
        rows.append([test_id, e["variant"], f"{float(np.median(e['latency']['samples'])):.4f} s",
                     _fmt(mem[1] / 2**20 if mem else None, "{:.1f} MiB"), _fmt(sim.get("ssim"), "{:.4f}"),
                     str(e.get("recorded", "-"))])
    _emit(rows)
    return EXIT_OK


def cmd_baselines_reach(args: argparse.Namespace) -> int:
    """What each entry lets the latency gate see, by rounds, and its floor (reach.py)."""
    from .baselines import BaselineEntry, limits_for
    from .reach import MOST_ROUNDS, reach_of_file, table
    from .variants.builtin import register_builtin
    from .variants.registry import VariantError, VariantRegistry

    path = _baseline_path(args)
    entries = {key: BaselineEntry.from_dict(e) for key, e in _load_baseline(path)["entries"].items()}
    registry = VariantRegistry()
    register_builtin(registry)

    def variant_limits(name: str) -> Mapping[str, float]:
        try:
            return registry.get(name).thresholds
        except VariantError:
            return {}

    def limit_of(entry: BaselineEntry) -> float:
        option = {} if args.latency_pct is None else {"latency_pct": args.latency_pct}
        return limits_for(entry, variant_limits(entry.variant), option).latency_pct

    rounds = tuple(sorted({int(n) for n in args.rounds}))
    reaches = reach_of_file(entries, registry.family_of, limit_of, args.checks, rounds,
                            sessions=args.sessions)
    print(f"{path}: {len(entries)} entries; the smallest slowdown the paired gate flags 19 times "
          f"in 20 after N rounds (sees@N), with any number (floor), among "
          f"{args.checks or len(entries)} latency checks")
    _emit(table(reaches))
    short = sum(not r.reachable for r in reaches)
    over = sum(r.floor_over_limit for r in reaches)
    print(f"{len(reaches) - short} of {len(reaches)} entries can see a slowdown of their limit's size; "
          f"{short} cannot in {MOST_ROUNDS} rounds, {over} with any number (the floor: the baseline's "
          f"between-session spread, and its sessions' own noise over their number)")
    if args.sessions is not None:
        matured = sum(r.matured_reachable for r in reaches)
        print(f"with {args.sessions} sessions an entry (the spreads as they are), {matured} of "
              f"{len(reaches)} could (their floor with K sessions)")
    return EXIT_OK


def _prune_rule(args: argparse.Namespace) -> Callable[[Mapping[str, Any]], bool]:
    """Which entries prune removes: variants not kept, or recorded more than N days ago."""
    if args.keep_variants is None and args.older_than is None:
        raise CliError("baselines prune needs --keep-variants LIST or --older-than DAYS")
    keep = [v.strip() for v in (args.keep_variants or "").split(",") if v.strip()]
    cutoff = None
    if args.older_than is not None:
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=args.older_than)

    def remove(entry: Mapping[str, Any]) -> bool:
        if keep and not any(fnmatch.fnmatchcase(entry["variant"], pat) for pat in keep):
            return True
        if cutoff is not None and "recorded" in entry:
            return _recorded(entry) < cutoff
        return False
    return remove


def _recorded(entry: Mapping[str, Any]) -> dt.datetime:
    """An entry's 'recorded' time, in UTC where it names no zone."""
    try:
        when = dt.datetime.fromisoformat(str(entry["recorded"]))
    except ValueError:
        raise CliError(f"entry of {entry.get('variant')} has a 'recorded' time that is not "
                       f"ISO 8601: {entry['recorded']!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def cmd_baselines_prune(args: argparse.Namespace) -> int:
    """Remove entries by variant or age through the baseline store (its lock, its atomic write)."""
    from .baselines import BaselineError, BaselineStore

    remove = _prune_rule(args)
    path = _baseline_path(args)
    store = BaselineStore(path.parent, path.name.removesuffix(".json"))
    try:
        gone, total = store.remove(remove, dry_run=args.dry_run)
    except BaselineError as exc:
        raise CliError(str(exc)) from None
    verb = "would remove" if args.dry_run else "removed"
    for test_id in gone:
        print(f"{verb}: {test_id}")
    print(f"{verb} {len(gone)} of {total} entries from {path}")
    return EXIT_OK


# --- model --------------------------------------------------------------------------------

def cmd_baselines_merge(args: argparse.Namespace) -> int:
    """Apply shards' baseline update files to a machine key's baseline file."""
    from .baselines import BaselineStore
    from .machine import this_machine

    store = BaselineStore(Path(args.dir), args.machine_key or this_machine().key)
    files = [Path(f) for f in args.shards] or store.shard_files()
    if not files:
        raise CliError(f"no shard files to merge: none given, and no {store.machine_key}.shard-*-of-*.json "
                       f"in {args.dir}")
    done = store.merge_shards(files, force=args.force)
    print(f"merged {len(files)} shard file(s) into {store.path}: {done.entries} entries written, "
          f"{done.retired} removed, {done.images} reference image(s) copied")
    for note in done.notes:
        print(f"note: {note}")
    return EXIT_OK


def cmd_model_build(args: argparse.Namespace) -> int:
    """Build the embedded tiny model or a profile into --out, with its sha256 manifest."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise CliError(f"{out} exists and is not empty; give a new or empty folder")
    try:
        from functools import partial

        from .models.profiles import build_profile
        from .models.source import write_manifest
        from .models.tiny import build_tiny
    except ImportError as exc:
        raise CliError(f"building a model needs torch, diffusers and transformers "
                       f"(pip install 'pytest-sdperf[torch]'): {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    build = build_tiny if args.name == "tiny" else partial(build_profile, args.name)
    build(out)
    write_manifest(out)
    print(f"built {args.name} into {out}")
    return EXIT_OK


# --- parser -------------------------------------------------------------------------------

def _add_compare(sub: Any) -> None:
    t = Thresholds()
    p = sub.add_parser("compare", help="compare two --sdperf-json files; exit 1 on a regression",
                       description="Judge NEW against OLD test by test with the gates' rules: "
                       "latency by the ratio of medians of the raw samples with an interval that carries "
                       "the between-session spread (README: the latency rule), "
                       "peak memory, and the SSIM/PSNR minimums.")
    p.add_argument("old", metavar="OLD.json")
    p.add_argument("new", metavar="NEW.json")
    p.add_argument("--latency-pct", type=non_negative_float, default=t.latency_pct,
                   help=f"allowed slowdown in %% (default {t.latency_pct:g})")
    p.add_argument("--memory-pct", type=non_negative_float, default=t.memory_pct,
                   help=f"allowed peak memory growth in %% (default {t.memory_pct:g})")
    p.add_argument("--min-ssim", type=float, default=t.min_ssim, help=f"default {t.min_ssim:g}")
    p.add_argument("--min-psnr", type=float, default=t.min_psnr, help=f"default {t.min_psnr:g}")
    p.set_defaults(func=cmd_compare)


def _add_baselines(sub: Any) -> None:
    p = sub.add_parser("baselines", help="show, prune or merge into a machine's baseline file")
    bsub = p.add_subparsers(dest="action", required=True, metavar="show|prune|reach|merge")
    for name, func, text in (("show", cmd_baselines_show, "list the entries"),
                             ("prune", cmd_baselines_prune, "remove entries by variant or age"),
                             ("reach", cmd_baselines_reach, "what slowdown each entry lets the "
                              "latency gate see, by rounds, and its floor")):
        q = bsub.add_parser(name, help=text, description=text + ". prune removes the entries whose "
                            "variant matches none of --keep-variants (names or globs), and/or whose "
                            "'recorded' time is more than --older-than DAYS ago." if name == "prune" else text)
        q.add_argument("--dir", default=DEFAULT_DIR, help=f"baseline folder (default: {DEFAULT_DIR})")
        q.add_argument("--machine-key", help="whose file (default: this machine's key)")
        q.set_defaults(func=func)
    merge = bsub.add_parser(
        "merge", help="apply shards' baseline updates (<key>.shard-I-of-N.json) to the baseline file",
        description="Apply the baseline updates --sdperf-shard runs wrote (<key>.shard-I-of-N.json) to "
        "<dir>/<key>.json in one locked, atomic rewrite, with the reference images found in "
        "references/ beside each file. Every file is checked first; a damaged one, one of another "
        "machine key, or two writing one entry differently merges nothing. Merged files in --dir "
        "are removed.")
    merge.add_argument("shards", nargs="*", metavar="SHARD.json",
                       help="update files (default: every <key>.shard-*-of-*.json in --dir)")
    merge.add_argument("--dir", default=DEFAULT_DIR, help=f"baseline folder (default: {DEFAULT_DIR})")
    merge.add_argument("--machine-key", help="whose file (default: this machine's key)")
    merge.add_argument("--force", action="store_true", help="merge files of another machine key too")
    merge.set_defaults(func=cmd_baselines_merge)
    reach = bsub.choices["reach"]
    reach.add_argument("--latency-pct", type=non_negative_float, default=None,
                       help="the limit, as --sdperf-latency-pct gives it (default: each test's)")
    reach.add_argument("--checks", type=positive_int, default=None,
                       help="latency checks in the session (default: one per entry)")
    reach.add_argument("--rounds", type=positive_int, nargs="+", default=[DECIDE_MIN_ROUNDS, 30],
                       metavar="N", help=f"rounds to project (default {DECIDE_MIN_ROUNDS} 30)")
    reach.add_argument("--sessions", type=positive_int, default=None, metavar="K",
                       help=f"also each floor were its entry to hold K sessions, the spread between "
                            f"them as it is (entries keep up to {BASELINE_SESSIONS})")
    prune = bsub.choices["prune"]
    prune.add_argument("--keep-variants", metavar="LIST", help="comma list of variant names or globs to keep")
    prune.add_argument("--older-than", metavar="DAYS", type=non_negative_float,
                       help="remove entries recorded more than DAYS ago")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed, change nothing")


def build_parser() -> argparse.ArgumentParser:
    """The ``sdperf`` argument parser (subcommands set ``func``)."""
    parser = argparse.ArgumentParser(
        prog="sdperf", description="pytest-sdperf's reports, comparisons, history, baselines and "
        "models. Exit status: 0 fine, 1 a regression (compare), 2 an error.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("report", help="write the HTML report (or Bencher's BMF) of a --sdperf-json file")
    p.add_argument("results", metavar="RESULTS.json")
    p.add_argument("--html", metavar="OUT.html")
    p.add_argument("--bmf", metavar="OUT.json", help="the results in Bencher Metric Format")
    p.add_argument("--history", metavar="DB", help="history database URL or SQLite file, for trends")
    p.add_argument("--reference", metavar="VARIANT", help="speedups' base (default: as in the run)")
    p.add_argument("--all-keys", action="store_true",
                   help="trends of every machine key in the history (each key its own line), not only the run's")
    p.set_defaults(func=cmd_report)
    _add_compare(sub)
    from .sweep_run import add_parser as add_sweep

    add_sweep(sub)
    p = sub.add_parser("merge", help="merge the results files of a run's shards; exit 1 on a failing test",
                       description="One results file from the --sdperf-json files of one run's shards "
                       "(--sdperf-shard I/N), in the order one unsharded run would have: refused, naming "
                       "the files, for shards of different commits, machine keys or package sets, or "
                       "with a shard missing or given twice, unless --force; a test in two files is "
                       "always refused. Exit 1 when a merged test failed (regression, error, hang).")
    p.add_argument("out", metavar="OUT.json")
    p.add_argument("shards", nargs="+", metavar="SHARD.json")
    p.add_argument("--force", action="store_true", help="merge despite differences (each is noted)")
    p.add_argument("--history", metavar="DB", help="append the merged run to this history database once")
    p.add_argument("--summary", metavar="PATH", help="write the Markdown step summary here too")
    p.add_argument("--bmf", metavar="OUT.json", help="write the merged run in Bencher Metric Format too")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("summary", help="a results file as Markdown (for $GITHUB_STEP_SUMMARY)")
    p.add_argument("results", metavar="RESULTS.json")
    p.set_defaults(func=cmd_summary)
    p = sub.add_parser("history", help="recorded runs with change points")
    p.add_argument("--db", default=DEFAULT_DB, help=f"URL or SQLite file (default {DEFAULT_DB})")
    p.add_argument("--variant", help="only this variant")
    p.add_argument("--machine-key", help="only this machine key")
    p.add_argument("--last", type=int, default=30, metavar="N", help="the last N runs of each test (default 30)")
    p.set_defaults(func=cmd_history)
    _add_baselines(sub)
    p = sub.add_parser("model", help="build the embedded tiny model or a full-size profile")
    msub = p.add_subparsers(dest="action", required=True, metavar="build")
    q = msub.add_parser("build", help="build a model into a folder (random weights, no download)")
    q.add_argument("name", choices=["tiny", *_profile_names()])
    q.add_argument("--out", required=True, metavar="DIR")
    q.set_defaults(func=cmd_model_build)
    return parser


def _profile_names() -> list[str]:
    from .models.profiles import profile_names

    return profile_names()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdperf`` console script; returns the exit status."""
    from .baselines import BaselineError
    from .history import HistoryError

    given = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in given:  # what follows goes to pytest (sdperf sweep)
        cut = given.index("--")
        given, passthrough = given[:cut], given[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(given)
    if passthrough and args.command != "sweep":
        parser.error(f"arguments after -- are for 'sdperf sweep' only: {' '.join(passthrough)}")
    args.passthrough = passthrough
    try:
        result: int = args.func(args)
        return result
    except (CliError, HistoryError, BaselineError, ValueError, OSError) as exc:
        print(f"sdperf: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
