"""Measure how good the gates are on this machine: false alarms and detections.

``python -m pytest_sdperf.validate --runs 20`` records a baseline of the reference variant on
the embedded model, then, ``runs`` times and interleaved, measures in fresh workers:

- the unchanged pipeline (A/A): every regression flagged is a false alarm;
- the pipeline with 5, 10 and 25% extra work in the denoising loop: each flag is a detection;
- a quality fault (noise on the UNet weights) and a memory fault (an extra allocation held
  during the call): the similarity and memory gates must fail, the latency gate stay quiet.

Each run is judged like a test (bootstrap CI of the ratio of medians), both relative to the
calibration workload and in absolute seconds, so the two modes are compared on the same data.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .compare import FAIL, INCONCLUSIVE, compare_latency, compare_memory
from .config import Settings
from .measure.latency import LatencyStats
from .measure.similarity import compare_images, load_png
from .session import SdperfState
from .variants.builtin import register_builtin
from .variants.registry import VariantRegistry, VariantSpec

FAULTS: dict[str, tuple[str, dict[str, str]]] = {
    "quality": ("pytest_sdperf.testing:perturb_unet", {}),
    "memory": ("pytest_sdperf.testing:hold_memory", {}),
}


@dataclass
class Tally:
    """Counts for one condition."""

    runs: int = 0
    flagged: dict[str, int] = field(default_factory=lambda: {"relative": 0, "absolute": 0})
    inconclusive: dict[str, int] = field(default_factory=lambda: {"relative": 0, "absolute": 0})
    similarity_failed: int = 0
    memory_failed: int = 0
    ratios: list[float] = field(default_factory=list)


def _state(args: argparse.Namespace, workdir: Path) -> SdperfState:
    registry = VariantRegistry()
    register_builtin(registry)
    for name, (ref, _) in FAULTS.items():
        registry.add(VariantSpec(name=f"fault-{name}", family="harness", description=name, transforms=(ref,)))
    registry.add(VariantSpec(name="fault-slow", family="harness", description="extra work",
                             transforms=("pytest_sdperf.testing:extra_work",)))
    settings = Settings(
        enabled=True, model=args.model, variants=None, baselines_dir=workdir / "baselines",
        update=False, update_all=False, rounds=args.rounds, warmup=1, cache_dir=args.cache_dir,
        json_path=None, timeout_s=900.0, allow_pickle=False, device="cpu",
    )
    return SdperfState(settings, registry, workdir)


def _measure(state: SdperfState, variant: str, workdir: Path, extra: Mapping[str, str]) -> Mapping[str, Any]:
    from .workload import Workload

    outcome = state.run(state.registry.get(variant), Workload(), workdir, extra_settings=extra)
    if outcome.status != "ok":
        raise SystemExit(outcome.failure_text(variant, 900.0))
    return outcome.result


def _judge(tally: Tally, base: Mapping[str, Any], res: Mapping[str, Any], pct: float) -> None:
    b, c = LatencyStats.from_dict(base["latency"]), LatencyStats.from_dict(res["latency"])
    tally.runs += 1
    for mode, (cur, ref) in {"relative": (c.relative(), b.relative()),
                             "absolute": (c.samples, b.samples)}.items():
        check = compare_latency(cur or c.samples, ref or b.samples, pct)
        tally.flagged[mode] += check.status == FAIL
        tally.inconclusive[mode] += check.status == INCONCLUSIVE
        if mode == "relative":
            tally.ratios.append(check.measured)
    sim = compare_images([load_png(Path(p)) for p in res["images"]],
                         [load_png(Path(p)) for p in base["images"]])
    tally.similarity_failed += sim.ssim < 0.9 or sim.psnr < 20.0
    mem = compare_memory(res["memory"]["peak_rss"], base["memory"]["peak_rss"], 20.0, "peak_rss")
    tally.memory_failed += mem.status == FAIL


def run(args: argparse.Namespace) -> dict[str, Tally]:
    """Record the baseline, then measure every condition ``args.runs`` times, interleaved."""
    workdir = Path(tempfile.mkdtemp(prefix="sdperf-validate-"))
    state = _state(args, workdir)
    base = _measure(state, "torch-fp32", workdir / "baseline", {})
    conditions: dict[str, tuple[str, dict[str, str]]] = {"A/A": ("torch-fp32", {})}
    for pct in args.slowdowns:
        conditions[f"+{pct:g}% work"] = ("fault-slow", {"extra_work_pct": str(pct)})
    conditions.update({f"{k} fault": (f"fault-{k}", v) for k, (_, v) in FAULTS.items()})
    tallies = {name: Tally() for name in conditions}
    for i in range(args.runs):
        for name, (variant, extra) in conditions.items():
            res = _measure(state, variant, workdir / f"{i}-{variant}", extra)
            _judge(tallies[name], base, res, args.latency_pct)
            print(f"run {i + 1}/{args.runs} {name}: ratio {tallies[name].ratios[-1]:.3f}",
                  file=sys.stderr, flush=True)
    return tallies


def table(tallies: Mapping[str, Tally], pct: float) -> list[str]:
    """Markdown table of the outcome."""
    lines = [f"latency limit +{pct:g}%; relative = over the calibration workload",
             "| condition | runs | latency flagged (relative) | latency flagged (absolute) | "
             "inconclusive (rel.) | median ratio | SSIM/PSNR gate failed | memory gate failed |",
             "|---|---|---|---|---|---|---|---|"]
    for name, t in tallies.items():
        median = sorted(t.ratios)[len(t.ratios) // 2] if t.ratios else float("nan")
        lines.append(f"| {name} | {t.runs} | {t.flagged['relative']} | {t.flagged['absolute']} | "
                     f"{t.inconclusive['relative']} | {median:.3f} | {t.similarity_failed} | {t.memory_failed} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m pytest_sdperf.validate", description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--latency-pct", type=float, default=5.0)
    parser.add_argument("--slowdowns", type=lambda t: [float(x) for x in t.split(",")], default=[5.0, 10.0, 25.0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "pytest-sdperf")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    tallies = run(args)
    print("\n".join(table(tallies, args.latency_pct)))
    if args.json:
        args.json.write_text(json.dumps({k: vars(v) for k, v in tallies.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
