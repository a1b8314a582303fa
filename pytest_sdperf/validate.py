"""Measure how good the gates are on this machine: false alarms and detections.

``python -m pytest_sdperf.validate --runs 20`` repeats ``runs`` independent trials on the
embedded model. Each trial records a fresh baseline (so the baseline's own noise is part of
every trial, as it is when a nightly job compares with a file recorded on another day), then
measures, in fresh workers and in a shuffled order:

- the unchanged pipeline (A/A): every regression flagged is a false alarm;
- the pipeline with 5, 10 and 25% extra work in every call: each flag is a detection;
- a quality fault (noise on the UNet weights) and a memory fault (an extra allocation held
  during the call): the similarity and memory gates must fail, the latency gate stay quiet.

The pipeline under test is a harness variant (``fault-*``): torch-fp32 plus the fault, timed
beside torch-fp32 itself in its worker, so every measurement carries all three latency
figures and each run is judged in each gate mode on the same data: ``paired`` (over the
reference's rounds beside it), ``relative`` (over the calibration workload), ``absolute``.
With ``--rounds auto`` a worker is given its trial's baseline, as the gate gives a test's, and
times rounds until the comparison in the ``--gate`` mode (default paired) is decided.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .compare import FAIL, INCONCLUSIVE, Check, latency_figures
from .config import GATE_MODES, Settings, default_of, positive_float, rounds_value
from .faults import FAULTS
from .judge import Figures, judge
from .measure.similarity import compare_images, load_png
from .protocol import AutoTarget, WorkerResult
from .session import SdperfState
from .variants.builtin import register_builtin
from .variants.registry import VariantRegistry, VariantSpec
from .workload import Thresholds

# Unchanged: the slow fault with no extra work (same variant name, so the same code path).
UNCHANGED = ("fault-slow", {"extra_work_pct": "0"})


def _per_mode() -> dict[str, Any]:
    return {mode: 0 for mode in GATE_MODES}


@dataclass
class Tally:
    """Counts for one condition, per gate mode where latency is concerned."""

    runs: int = 0
    flagged: dict[str, int] = field(default_factory=_per_mode)
    inconclusive: dict[str, int] = field(default_factory=_per_mode)
    ratios: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in GATE_MODES})
    detectable: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in GATE_MODES})
    similarity_failed: int = 0
    memory_failed: int = 0
    rounds: list[int] = field(default_factory=list)  # timed rounds the run took


def _state(args: argparse.Namespace, workdir: Path) -> SdperfState:
    registry = VariantRegistry()
    register_builtin(registry)
    for name, ref in FAULTS.items():
        registry.add(VariantSpec(name=f"fault-{name}", family="harness", description=name,
                                 transforms=(ref,)))
    settings = Settings(
        enabled=True, model=args.model, variants=None, baselines_dir=workdir / "baselines",
        update=False, update_all=False, rounds=args.rounds, warmup=1, cache_dir=args.cache_dir,
        json_path=None, allow_pickle=False, device="cpu", gate_mode="paired",
        time_budget_s=args.time_budget,
    )
    state = SdperfState(settings, registry, workdir)
    state.calibrate_paired = True  # every run is judged in every gate mode, on the same rounds
    return state


def _measure(state: SdperfState, variant: str, workdir: Path, extra: Mapping[str, str],
             target: AutoTarget | None = None) -> WorkerResult:
    from .workload import Workload

    outcome = state.run(state.registry.get(variant), Workload(), workdir, extra_settings=extra, target=target)
    if outcome.measured is None:
        raise SystemExit(outcome.failure_text(variant, state.settings.timeout_s))
    return outcome.measured


def _target(state: SdperfState, base: WorkerResult, args: argparse.Namespace) -> AutoTarget:
    """The trial's baseline as the gate gives it to a worker (auto rounds sample towards it).

    The workers run in paired mode (the reference timed beside them, so every mode can be
    judged); ``args.gate`` is the mode whose comparison auto rounds decide."""
    assert base.latency is not None
    return AutoTarget(args.gate, base.latency, args.latency_pct, state.settings.reference_variant)


def _judge(tally: Tally, base: WorkerResult, res: WorkerResult, pct: float) -> dict[str, str]:
    """Count one run into ``tally``; the latency verdict per gate mode."""
    assert base.latency and res.latency and base.memory and res.memory  # status ok
    b, c = base.latency, res.latency
    tally.runs += 1
    tally.rounds.append(len(c.samples))
    sim = compare_images([load_png(p) for p in res.images], [load_png(p) for p in base.images])
    current = Figures(c, res.memory.to_dict(), sim.ssim, sim.psnr)
    stored = Figures(b, base.memory.to_dict())
    limits = Thresholds(latency_pct=pct)  # memory and similarity: the gate's defaults
    verdicts = {}
    others: list[Check] = []
    for mode in GATE_MODES:
        if latency_figures(mode, c, b).mode != mode:
            raise SystemExit(f"the harness measured no {mode} latency figures")
        checks = judge(current, stored, limits, mode).checks
        check, others = checks[0], list(checks[1:])
        tally.flagged[mode] += check.status == FAIL
        tally.inconclusive[mode] += check.status == INCONCLUSIVE
        tally.ratios[mode].append(check.measured)
        verdicts[mode] = f"{check.measured:.3f} {check.status}"
        if check.detectable_pct is not None:
            tally.detectable[mode].append(check.detectable_pct)
    if not any(o.unit == "B" for o in others):
        raise SystemExit("the harness measured no memory figure (not Linux?)")
    tally.similarity_failed += any(o.status == FAIL for o in others if o.metric in ("SSIM", "PSNR"))
    tally.memory_failed += any(o.status == FAIL for o in others if o.unit == "B")
    return verdicts


def _conditions(args: argparse.Namespace, trial: int) -> dict[str, tuple[str, dict[str, str]]]:
    conditions: dict[str, tuple[str, dict[str, str]]] = {"A/A": UNCHANGED}
    for pct in args.slowdowns:
        conditions[f"+{pct:g}% work"] = ("fault-slow", {"extra_work_pct": str(pct)})
    if trial < args.fault_runs:
        conditions.update({f"{k} fault": (f"fault-{k}", {}) for k in ("quality", "memory")})
    return conditions


def run(args: argparse.Namespace) -> dict[str, Tally]:
    """``args.runs`` trials: a fresh baseline, then every condition in a shuffled order."""
    workdir = Path(tempfile.mkdtemp(prefix="sdperf-validate-"))
    state = _state(args, workdir)
    tallies: dict[str, Tally] = {name: Tally() for name in _conditions(args, 0)}
    order = random.Random(args.seed)
    try:
        for i in range(args.runs):
            base = _measure(state, UNCHANGED[0], workdir / f"{i}-baseline", UNCHANGED[1])
            conditions = list(_conditions(args, i).items())
            order.shuffle(conditions)
            for name, (variant, extra) in conditions:
                res = _measure(state, variant, workdir / f"{i}-{name.replace('/', '')}".replace(" ", "-"),
                               extra, _target(state, base, args))
                verdicts = _judge(tallies[name], base, res, args.latency_pct)
                print(f"trial {i + 1}/{args.runs} {name}: {len(res.latency.samples if res.latency else ())} "
                      f"rounds, {verdicts}", file=sys.stderr, flush=True)
    finally:
        state.close()  # the reference workers and the fork server
    return tallies


def _median(values: list[float], fmt: str) -> str:
    return fmt.format(statistics.median(values)) if values else "-"


def table(tallies: Mapping[str, Tally], pct: float) -> list[str]:
    """Markdown table of the outcome: per gate mode, flags (inconclusive) and median ratio."""
    modes = " / ".join(GATE_MODES)
    lines = [f"latency limit +{pct:g}%; figures per gate mode: {modes}",
             f"| condition | runs | latency flagged ({modes}) | inconclusive | median ratio | "
             "median smallest detectable | SSIM/PSNR gate failed | memory gate failed | "
             "timed rounds (median, max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, t in tallies.items():
        flagged = " / ".join(str(t.flagged[m]) for m in GATE_MODES)
        unsure = " / ".join(str(t.inconclusive[m]) for m in GATE_MODES)
        ratios = " / ".join(_median(t.ratios[m], "{:.3f}") for m in GATE_MODES)
        detectable = " / ".join(_median(t.detectable[m], "{:.0f}%") for m in GATE_MODES)
        lines.append(f"| {name} | {t.runs} | {flagged} | {unsure} | {ratios} | {detectable} | "
                     f"{t.similarity_failed} | {t.memory_failed} | "
                     f"{_median([float(r) for r in t.rounds], '{:.0f}')}, {max(t.rounds, default=0)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m pytest_sdperf.validate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="independent trials (default 20)")
    parser.add_argument("--rounds", type=rounds_value, default=10,
                        help="timed rounds per worker (default 10), or 'auto': as --sdperf-rounds auto, "
                             "until the paired ratio's median is known to +-2%% or the time budget")
    budget = default_of("time_budget_s")
    parser.add_argument("--time-budget", type=positive_float, default=budget,
                        help=f"seconds of timed rounds per worker with --rounds auto (default {budget:g})")
    parser.add_argument("--gate", choices=GATE_MODES, default="paired",
                        help="the gate mode auto rounds decide in (default paired; every mode is judged)")
    parser.add_argument("--latency-pct", type=float, default=5.0,
                        help="the latency gate's limit in percent (default 5)")
    parser.add_argument("--slowdowns", type=lambda t: [float(x) for x in t.split(",")],
                        default=[5.0, 10.0, 25.0], help="injected slowdowns in percent (default 5,10,25)")
    parser.add_argument("--fault-runs", type=int, default=None,
                        help="trials that also run the quality and memory faults (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the condition order")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "pytest-sdperf")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.fault_runs is None:
        args.fault_runs = args.runs
    tallies = run(args)
    print("\n".join(table(tallies, args.latency_pct)))
    if args.json:
        args.json.write_text(json.dumps({k: vars(v) for k, v in tallies.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
