"""Measure the default suite's gates as a nightly job meets them: whole-suite false alarms and
detections, with the default options.

``python -m pytest_sdperf.validate_suite --runs 10`` records the suite once into a fresh
baseline folder (``pytest --sdperf suites/``, as the README's main job), then runs the whole
suite ``runs`` times against it, each run one condition, in a seeded shuffled order:

- ``A/A``: nothing changed; a run in which any test fails on latency is a false alarm;
- ``+10%`` / ``+25%``: one variant, chosen at random, does that much extra work in every call
  (``faults.py``); the run detects it when that test fails on latency, and cries wolf when any
  other test fails;
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
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

FAULT_KINDS = ("quality", "memory")


@dataclass
class Tally:
    """One condition's runs: how many flagged the target, how many flagged another test."""

    runs: int = 0
    target_failed: int = 0  # on the condition's own metric (A/A: any latency failure)
    others_failed: int = 0  # any other test failed on any metric
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
        return
    if condition in FAULT_KINDS:
        tally.target_failed += any(_metric_failed(r, condition) and not _latency_failed(r) for r in mine)
    else:
        tally.target_failed += any(_latency_failed(r) for r in mine)
    tally.others_failed += any(r["verdict"] == "regression" for r in others)


def run(args: argparse.Namespace, extra: Sequence[str]) -> dict[str, Tally]:
    """Record once, then ``args.runs`` runs of shuffled conditions; the tallies by condition."""
    work = Path(tempfile.mkdtemp(prefix="sdperf-validate-suite-"))
    env = dict(os.environ)
    common = ["--sdperf-baselines", str(work / "baselines"), *extra]
    records, took = _pytest(args.suite, common, work / "record.json", env)
    print(f"recorded: {len(records)} tests in {took:.0f} s", file=sys.stderr, flush=True)
    variants = sorted({r["variant"] for r in records if r["verdict"] in ("recorded", "pass")})
    torch_variants = [v for v in variants if v.startswith("torch-") and v != "torch-fp32"] or variants
    conditions = [args.conditions[i % len(args.conditions)] for i in range(args.runs)]
    rng = random.Random(args.seed)
    rng.shuffle(conditions)
    tallies: dict[str, Tally] = {}
    for i, condition in enumerate(conditions):
        target = rng.choice(torch_variants if condition in FAULT_KINDS else variants)
        run_env, run_args = dict(env), list(common)
        if condition != "A/A":
            fault = condition if condition in FAULT_KINDS else "slow"
            run_env["SDPERF_FAULT"] = f"{target}:{fault}"
            if fault == "slow":
                run_args += ["--sdperf-set", f"extra_work_pct={condition.strip('+%')}"]
        records, took = _pytest(args.suite, run_args, work / f"run{i}.json", run_env)
        _count(tallies.setdefault(condition, Tally()), condition, target, records, took)
        failed = [r["variant"] for r in records if r["verdict"] == "regression"]
        print(f"run {i + 1}/{len(conditions)} {condition} on {target}: {took:.0f} s, failed: "
              f"{', '.join(failed) or 'none'}", file=sys.stderr, flush=True)
    return tallies


def table(tallies: dict[str, Tally]) -> list[str]:
    """Markdown table of the outcome."""
    import statistics

    lines = ["| condition | runs | target test failed (A/A: any latency failure) | another test "
             "failed | median smallest detectable | median run time |", "|---|---|---|---|---|---|"]
    for name, t in tallies.items():
        det = f"{statistics.median(t.detectable):.0f}%" if t.detectable else "-"
        secs = f"{statistics.median(t.seconds):.0f} s" if t.seconds else "-"
        lines.append(f"| {name} | {t.runs} | {t.target_failed} | {t.others_failed} | {det} | {secs} |")
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    tallies = run(args, extra)
    print("\n".join(table(tallies)))
    if args.json:
        args.json.write_text(json.dumps({k: vars(v) for k, v in tallies.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
