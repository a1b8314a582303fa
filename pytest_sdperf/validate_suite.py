"""Measure the default suite's gates as a nightly job meets them: whole-suite false alarms and
detections, with the default options.

``python -m pytest_sdperf.validate_suite --runs 10`` records the suite once into a fresh
baseline folder (``pytest --sdperf suites/``, as the README's main job), or with ``--from DIR``
starts from a copy of a baseline folder (``--from baselines`` as committed: the baseline a nightly
job meets, its entries holding several sessions), then runs the whole suite ``runs`` times
against it, each run one condition, in a seeded shuffled order. Every run starts from the same
baseline (restored from a snapshot before it, as a nightly job checks out the same committed
file each night): a run's own session, faulted or not, never reaches the next run's baseline.

- ``A/A``: nothing changed; a run in which any test fails on latency is a false alarm;
- ``+10%`` / ``+25%``: one variant, chosen at random among those whose latency limit is at most
  that size (a variant registered with a wider limit passes it by design), does that much extra
  work in every call (``faults.py``); the run detects it when that test fails on latency, and
  cries wolf when any other test fails;
- ``quality`` / ``memory``: one PyTorch variant gets noise on its UNet weights, or holds
  400 MiB; that test must fail on that metric, with its latency gate quiet.

Every run is a separate ``pytest`` process with its own ``--sdperf-json``; the table counts
from those files. Extra pytest arguments follow ``--`` (e.g. ``-- --sdperf-variants 'torch-*'``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import interval_fit
from .atomic import atomic_write_text

FAULT_KINDS = ("quality", "memory")
RAN = ("recorded", "pass", "inconclusive", "regression")  # verdicts of a test that was measured


@dataclass
class Tally:
    """One condition's runs: how many flagged the target, how many flagged another test."""

    runs: int = 0
    target_failed: int = 0  # on the condition's own metric (A/A: any latency failure)
    others_failed: int = 0  # any other test failed on any metric
    strict_target: int = 0  # as target_failed, counting inconclusive and recorded as failed
    strict_others: int = 0  # as others_failed, likewise: what a --sdperf-strict nightly meets
    detectable: list[float] = field(default_factory=list)  # every test's smallest detectable slowdown
    seconds: list[float] = field(default_factory=list)  # the run's wall time


def _pytest(suite: str, args: Sequence[str], out: Path, env: dict[str, str]) -> tuple[list[dict[str, Any]], float]:
    """One suite run; its results records and wall time."""
    start = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", "--sdperf", suite, "-q", "-p", "no:cacheprovider",
           "-p", "pytest_sdperf.faults", "--sdperf-json", str(out), *args]
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    took = time.monotonic() - start
    if not out.exists():
        raise SystemExit(f"the suite run wrote no results ({' '.join(cmd)})")
    return json.loads(out.read_text())["results"], took


def _latency_failed(record: dict[str, Any]) -> bool:
    return record["verdict"] == "regression" and "latency" in record.get("reason", "")


def _strict_failed(record: dict[str, Any]) -> bool:
    """Whether ``--sdperf-strict`` fails this test: a regression, an inconclusive reading or a
    recording."""
    return record["verdict"] in ("regression", "inconclusive", "recorded")


def _metric_failed(record: dict[str, Any], kind: str) -> bool:
    words = {"quality": ("SSIM", "PSNR"), "memory": ("memory",)}[kind]
    return record["verdict"] == "regression" and any(w in record.get("reason", "") for w in words)


def _count(tally: Tally, condition: str, target: str, records: list[dict[str, Any]], took: float) -> None:
    tally.runs += 1
    tally.seconds.append(took)
    tally.detectable += [r["detectable_pct"] for r in records if r.get("detectable_pct") is not None]
    mine = [r for r in records if r["variant"] == target]
    others = [r for r in records if r["variant"] != target]
    if condition == "A/A":
        tally.target_failed += any(_latency_failed(r) for r in records)
        tally.others_failed += any(r["verdict"] == "regression" for r in records)
        tally.strict_target += any(_strict_failed(r) for r in records)
        return
    if condition in FAULT_KINDS:
        tally.target_failed += any(_metric_failed(r, condition) and not _latency_failed(r) for r in mine)
    else:
        tally.target_failed += any(_latency_failed(r) for r in mine)
        tally.strict_target += any(_strict_failed(r) for r in mine)
    tally.others_failed += any(r["verdict"] == "regression" for r in others)
    tally.strict_others += any(_strict_failed(r) for r in others)


def _restore(snapshot: Path, baselines: Path) -> None:
    """The baseline folder as the snapshot holds it (a run's writes undone)."""
    shutil.rmtree(baselines, ignore_errors=True)
    shutil.copytree(snapshot, baselines)


def _start(args: argparse.Namespace, common: Sequence[str], work: Path,
           env: dict[str, str]) -> tuple[list[dict[str, Any]], float | None]:
    """The baseline the runs meet, in ``work/baselines``: recorded now, or copied from ``--from``.
    The records of the recording, or of a first run against the copy, and that run's wall time
    where it was an A/A run to count (it recorded nothing: the copy held every test)."""
    baselines = work / "baselines"
    if args.baselines_from is None:
        records, took = _pytest(args.suite, common, work / "record.json", env)
        print(f"recorded: {len(records)} tests in {took:.0f} s", file=sys.stderr, flush=True)
        return records, None
    shutil.copytree(args.baselines_from, baselines, ignore=shutil.ignore_patterns("runs"))
    records, took = _pytest(args.suite, common, work / "first.json", env)
    recorded = sum(r["verdict"] == "recorded" for r in records)
    print(f"first run against {args.baselines_from}: {len(records)} tests in {took:.0f} s, "
          f"{recorded} recorded (no entry)", file=sys.stderr, flush=True)
    _restore_keep_recorded(baselines, args.baselines_from)
    return records, (took if recorded == 0 else None)


def _restore_keep_recorded(baselines: Path, source: Path) -> None:
    """After the first run against a copied baseline: entries it recorded (the copy had none for
    them) stay; every entry the copy had is put back as it was."""
    for path in baselines.glob("*.json"):
        original = source / path.name
        if not original.exists():
            continue
        now, before = json.loads(path.read_text()), json.loads(original.read_text())
        now["entries"] = {**now.get("entries", {}), **before.get("entries", {})}
        atomic_write_text(path, json.dumps(now, indent=1, sort_keys=True) + "\n")


def run(args: argparse.Namespace, extra: Sequence[str]) -> tuple[dict[str, Tally], Path]:
    """Record once (or copy ``--from``), then ``args.runs`` runs of shuffled conditions, each
    from the same baseline; the tallies by condition, and the folder holding the runs' results."""
    work = Path(tempfile.mkdtemp(prefix="sdperf-validate-suite-"))
    print(f"runs' results: {work}", file=sys.stderr, flush=True)
    env = dict(os.environ)
    # one argument: a separate path argument would count in pytest's rootdir (the common
    # ancestor of the path arguments that exist), and the test ids would change once it exists
    common = [f"--sdperf-baselines={work / 'baselines'}", *extra]
    records, first_aa = _start(args, common, work, env)
    shutil.copytree(work / "baselines", work / "snapshot")
    tallies: dict[str, Tally] = {}
    if first_aa is not None:
        _count(tallies.setdefault("A/A", Tally()), "A/A", "", records, first_aa)
        print(f"run 0 A/A (the first run against the copy): {first_aa:.0f} s, "
              f"{_outcome(records, '')}", file=sys.stderr, flush=True)
    variants = sorted({r["variant"] for r in records if r["verdict"] in RAN})
    if args.targets:
        missing = sorted(set(args.targets) - set(variants))
        if missing:
            raise SystemExit(f"--targets: {', '.join(missing)} did not run in the suite (ran: "
                             f"{', '.join(variants)}); name variants of its tests")
        variants = sorted(args.targets)
    torch_variants = [v for v in variants if v.startswith("torch-") and v != "torch-fp32"] or variants
    within = {c: fault_targets(records, variants, float(c.strip("+%"))) for c in set(args.conditions)
              if c.startswith("+")}
    for condition, (_, beyond) in sorted(within.items()):
        if beyond:
            print(f"{condition} is drawn from the variants whose latency limit is at most {condition.strip('+')}; "
                  f"not {', '.join(beyond)} (their limit is wider: that slowdown passes them by design)",
                  file=sys.stderr, flush=True)
    conditions = [args.conditions[i % len(args.conditions)] for i in range(args.runs)]
    rng = random.Random(args.seed)
    rng.shuffle(conditions)
    faulted: dict[str, str] = {}
    for i, condition in enumerate(conditions):
        target = rng.choice(torch_variants if condition in FAULT_KINDS
                            else within.get(condition, (variants, []))[0])
        run_env, run_args = dict(env), list(common)
        if condition != "A/A":
            fault = condition if condition in FAULT_KINDS else "slow"
            run_env["SDPERF_FAULT"] = f"{target}:{fault}"
            if fault == "slow":
                run_args += ["--sdperf-set", f"extra_work_pct={condition.strip('+%')}"]
        _restore(work / "snapshot", work / "baselines")
        if condition != "A/A":
            faulted[f"run{i}.json"] = target
            atomic_write_text(work / interval_fit.FAULTED, json.dumps(faulted, indent=1, sort_keys=True) + "\n")
        records, took = _pytest(args.suite, run_args, work / f"run{i}.json", run_env)
        _count(tallies.setdefault(condition, Tally()), condition, target, records, took)
        print(f"run {i + 1}/{len(conditions)} {condition} on {target}: {took:.0f} s, "
              f"{_outcome(records, target)}", file=sys.stderr, flush=True)
    return tallies, work


def fault_targets(records: list[dict[str, Any]], variants: Sequence[str],
                  pct: float) -> tuple[list[str], list[str]]:
    """Of ``variants``, those a ``pct`` percent slowdown must fail (every test of theirs has a
    latency limit of at most ``pct``: a variant registered with a wider one, torch-compile's
    40%, passes it by design), and the others; all of them where none qualifies."""
    limit: dict[str, float] = {}
    for r in records:
        if r["variant"] in variants and r.get("latency_limit_pct") is not None:
            limit[r["variant"]] = max(limit.get(r["variant"], 0.0), float(r["latency_limit_pct"]))
    inside = [v for v in variants if limit.get(v, 0.0) <= pct]
    return (inside, [v for v in variants if v not in inside]) if inside else (list(variants), [])


def _outcome(records: list[dict[str, Any]], target: str) -> str:
    """A run in one line: the failed tests, the inconclusive count, the target's readings."""
    failed = [f"{r['variant']} ({_failed_on(r)})" for r in records if r["verdict"] == "regression"]
    inconclusive = sum(r["verdict"] == "inconclusive" for r in records)
    mine = [f"{r['verdict']} {r['ratio']:.3f}x" for r in records
            if r["variant"] == target and r.get("ratio") is not None]
    return (f"failed: {', '.join(failed) or 'none'}; {inconclusive} inconclusive"
            + (f"; {target}: {', '.join(mine)}" if mine else ""))


def _failed_on(record: dict[str, Any]) -> str:
    """What a failed test failed on, for the progress line: its latency ratio, else its reason."""
    if _latency_failed(record) and record.get("ratio") is not None:
        return f"latency {record['ratio']:.3f}x"
    reason = str(record.get("reason", ""))
    return reason[:100] + ("..." if len(reason) > 100 else "")


def table(tallies: dict[str, Tally]) -> list[str]:
    """Markdown table of the outcome."""
    import statistics

    lines = ["| condition | runs | target test failed (A/A: any latency failure) | another test "
             "failed | under --sdperf-strict (inconclusive and recorded fail too): target / another "
             "| median smallest detectable | median run time |", "|---|---|---|---|---|---|---|"]
    for name, t in tallies.items():
        det = f"{statistics.median(t.detectable):.0f}%" if t.detectable else "-"
        secs = f"{statistics.median(t.seconds):.0f} s" if t.seconds else "-"
        strict = f"{t.strict_target} / {'-' if name == 'A/A' else t.strict_others}"
        lines.append(f"| {name} | {t.runs} | {t.target_failed} | {t.others_failed} | {strict} | {det} "
                     f"| {secs} |")
    return lines


def _conditions(text: str) -> list[str]:
    items = [c.strip() for c in text.split(",")]
    for c in items:
        ok = c == "A/A" or c in FAULT_KINDS or (c.startswith("+") and c.endswith("%")
                                                and c[1:-1].replace(".", "", 1).isdigit())
        if not ok:
            raise argparse.ArgumentTypeError(f"{c!r} is not A/A, +P% (e.g. +10%), quality or memory")
    return items


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    parser = argparse.ArgumentParser(prog="python -m pytest_sdperf.validate_suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="suite runs after the recording (default 10)")
    parser.add_argument("--conditions", type=_conditions, default=["A/A"],
                        help="comma list cycled over the runs, of A/A, +P%% (one variant P%% slower), "
                             "quality, memory (default A/A)")
    parser.add_argument("--suite", default="suites/", help="the suite to run (default suites/)")
    parser.add_argument("--targets", type=lambda v: [x for x in v.split(",") if x], default=[],
                        metavar="A,B", help="the variants a faulted run picks its target from "
                        "(default: every variant that ran in the suite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--from", dest="baselines_from", type=Path, default=None, metavar="DIR",
                        help="start from a copy of this baseline folder (e.g. baselines, as "
                             "committed) instead of recording one")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.baselines_from is not None and not args.baselines_from.is_dir():
        parser.error(f"--from {args.baselines_from}: not a folder; give a baseline folder such as "
                     "baselines")
    tallies, work = run(args, extra)
    print("\n".join(table(tallies)))
    readings = interval_fit.from_folder(work)
    if readings:
        print("\nHow far each test's unchanged readings moved against its interval "
              f"(python -m pytest_sdperf.interval_fit {work}):")
        print("\n".join(interval_fit.table(interval_fit.fit(readings))))
    if args.json:
        args.json.write_text(json.dumps({k: vars(v) for k, v in tallies.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
