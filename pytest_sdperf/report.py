"""Terminal summary table and the machine-readable JSON results. Only this module prints."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from .atomic import atomic_write_text
from .config import BASELINE_SESSIONS
from .measure.memory import gated_figure
from .noise import medians, scale_of
from .results import Record
from .session import REFERENCE_VARIANT

#: A run whose rounds moved this many times as much as its baselines' recordings (or as little)
#: is called noisier (quieter) in ``noise_line``.
NOISIER = 1.5

COLUMNS = ("variant", "p50", "speedup", "img/s", "GFLOP/s", "%peak", "peak mem", "size", "SSIM", "PSNR",
           "vs baseline (interval)", "sees", "verdict")


def speedups(records: Sequence[Record], reference: str = REFERENCE_VARIANT) -> dict[str, float | None]:
    """test_id -> the reference variant's seconds per image (same model and workload, this
    session; the same test function's where there is one) / this test's: per image, so a call
    that makes several images (ov-async's requests in flight, a batch) compares like with like."""
    ref: dict[tuple[str, ...], float] = {}
    for r in records:
        if r.variant == reference and (per_image := _seconds_per_image(r)):
            ref[(r.model_key, r.workload_key, _function(r.test_id))] = per_image
            ref.setdefault((r.model_key, r.workload_key), per_image)
    out: dict[str, float | None] = {}
    for r in records:
        base = ref.get((r.model_key, r.workload_key, _function(r.test_id)), ref.get((r.model_key, r.workload_key)))
        own = _seconds_per_image(r)
        out[r.test_id] = base / own if base and own else None
    return out


def _function(test_id: str) -> str:
    """The test function of a parametrized id: 'suites/t.py::test_x[ov-static]' -> '...::test_x'
    (the reference's row of the same function is a row's base: two sweeps of one workload)."""
    return test_id.split("[", 1)[0]


def _seconds_per_image(r: Record) -> float | None:
    """The median call's seconds over the images it made: the record's images/s where it has
    them (requests in flight and a batch knee's images counted), else its saved images."""
    ips = r.info.get("images_per_s")
    if isinstance(ips, (int, float)) and ips > 0:
        return 1.0 / float(ips)
    return r.p50_s / max(len(r.images), 1) if r.p50_s else None


def _mib(value: Any) -> str:
    return f"{value / 2**20:.0f} MiB" if isinstance(value, (int, float)) else "-"


def _num(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "-"


def _flops(value: Any) -> str:
    """About three significant figures, never an exponent: 5.12, 51.2, 512, 5120."""
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _pct(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"


def _vs_baseline(r: Record) -> str:
    """``1.03x (0.99-1.06)``: latency now over the baseline and its interval; ``-`` where none."""
    if r.ratio is None:
        return "-"
    if r.ratio_interval is None:
        return f"{r.ratio:.2f}x"
    low, high = r.ratio_interval
    return f"{r.ratio:.2f}x ({low:.2f}-{high:.2f})"


def peak_lines(records: Sequence[Record]) -> list[str]:
    """What %peak is relative to: one line per distinct peak the records were held to."""
    limits = dict.fromkeys(
        (r.efficiency["peak_gflops_per_s"], r.efficiency.get("peak_basis", ""))
        for r in records if r.efficiency.get("peak_gflops_per_s")
    )
    return [f"%peak: achieved UNet FLOP/s over {_flops(g)} GFLOP/s, {basis}" for g, basis in limits]


def labels(records: Sequence[Record]) -> list[str]:
    """Each record's row name: its variant and swept settings, and, where several tests
    measured that (the batch test, an image-to-image test), the test's function too:
    ``torch-fp32 (test_image_to_image)``."""
    def own(r: Record) -> str:
        swept = r.info.get("swept") or {}
        return " ".join([r.variant, *(f"{k}={v}" for k, v in swept.items())])

    names = [own(r) for r in records]
    tests = [r.test_id.split("::")[-1].split("[")[0] for r in records]
    tests_of: dict[str, set[str]] = {}
    for name, test in zip(names, tests, strict=True):
        tests_of.setdefault(name, set()).add(test)
    return [f"{n} ({t})" if len(tests_of[n]) > 1 else n for n, t in zip(names, tests, strict=True)]


def rows(records: Sequence[Record], reference: str = REFERENCE_VARIANT) -> list[tuple[str, ...]]:
    """One row of strings per record, in COLUMNS order."""
    ups = speedups(records, reference)
    names = labels(records)
    out: list[tuple[str, ...]] = []
    for r, name in zip(records, names, strict=True):
        mem = gated_figure(r.memory)
        ips = r.info.get("images_per_s")
        out.append((
            name,
            _num(r.p50_s, ".3f") + (" s" if r.p50_s is not None else ""),
            _num(ups.get(r.test_id), ".2f") + ("x" if ups.get(r.test_id) else ""),
            _num(ips, ".2f"),
            _flops(r.efficiency.get("achieved_gflops_per_s")),
            _pct(r.efficiency.get("pct_of_peak")),
            _mib(mem[1] if mem else None),
            _mib(r.info.get("model_size_bytes")),
            _num(r.ssim, ".4f"),
            _num(r.psnr, ".1f"),
            _vs_baseline(r),
            f">{r.detectable_pct:.0f}%" if r.detectable_pct is not None else "-",
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


def verdict_counts(records: Sequence[Record]) -> dict[str, int]:
    """How many tests ended in each verdict (pass, recorded, inconclusive, regression, ...)."""
    return dict(Counter(r.verdict for r in records))


def counts_line(records: Sequence[Record]) -> str:
    """``sdperf: 18 pass (3 noted), 2 recorded, 1 regression`` (recorded: a baseline written this
    run; noted: a pass with a line below, e.g. a reading above half the latency limit)."""
    noted = sum(r.verdict == "pass" and bool(r.reason) for r in records)
    return "sdperf: " + ", ".join(
        f"{n} {verdict}{f' ({noted} noted)' if verdict == 'pass' and noted else ''}"
        for verdict, n in verdict_counts(records).items())


def floor_line(records: Sequence[Record]) -> str:
    """How many latency checks cannot see a slowdown of their limit's size with any number of
    rounds against their baseline (their floor is over it), or "" where every one can; and how
    many of those were judged against fewer than ``BASELINE_SESSIONS`` sessions (later passing
    runs add sessions: the recording's noise and the spread's estimate weigh less)."""
    judged = sum(r.detectable_floor_pct is not None and r.latency_limit_pct is not None for r in records)
    over = [r for r in records if r.floor_over_limit]
    if not over:
        return ""
    floors = [r.detectable_floor_pct or 0.0 for r in over]  # every one set: over its limit
    young = sum(int(r.info.get("baseline_sessions", BASELINE_SESSIONS)) < BASELINE_SESSIONS for r in over)
    more = (f"; {young} of them against fewer than {BASELINE_SESSIONS} sessions: each passing run "
            f"adds one, which lowers the floor where the sessions agree" if young else "")
    return (f"sdperf: {len(over)} of {judged} latency checks cannot see a slowdown of their "
            f"limit's size against their baseline with any number of rounds (their floor, "
            f"{min(floors):.0f}-{max(floors):.0f}%, is set by the baseline: its between-session "
            f"spread and its recording's noise){more}; `sdperf baselines reach` shows each")


def noise_line(records: Sequence[Record]) -> str:
    """The machine's noise in this run beside its baselines' recordings: the median over tests of
    how much one round's gated ratio moved (``Record.round_spread_pct``); "" where no test was
    compared with a baseline. A noisier run samples longer and sees less, and its tests'
    between-session spreads were widened for it (noise.py; the spread its baselines learnt was
    a quieter machine's: docs/measurements.md, "The suite harness on a noisy afternoon"): the line says so,
    so a slow or blunt night is not read as a change in the code."""
    found = medians((r.round_spread_pct, r.baseline_round_spread_pct) for r in records)
    if found is None:
        return ""
    tests, now, then = found
    text = (f"sdperf: round-to-round noise (a robust SD of each round's gated ratio, median of "
            f"{tests} tests): {now:.1f}% this run, {then:.1f}% in their baselines' recordings")
    if now > NOISIER * then:
        return (f"{text}; this machine was noisier than when they were recorded: the tests "
                f"sampled longer within their time budget (--sdperf-time-budget) and see less "
                f"(`sees`) than on a quieter run, and their between-session spread was widened "
                f"for it (by x{scale_of(now, then):.2f} at this "
                f"noise: a test's spread between sessions grows with the noise, noise.py)")
    if then > NOISIER * now:
        return f"{text}; quieter than when they were recorded"
    return text


def time_line(records: Sequence[Record], wall_s: float | None) -> str:
    """Where the session's time went: its wall time, and how much of it the tests' timed rounds
    took (``Record.rounds_s``: the variant's calls and the paired reference's, yardstick's and
    calibration's beside them, every reading); the rest built, started and probed workers,
    compared images and measured memory. "" without timed rounds. A run that took long on a
    noisy hour shows it here: its tests sampled more rounds (the auto rounds' rule)."""
    timed = [r for r in records if r.rounds]
    if wall_s is None or wall_s <= 0 or not timed:
        return ""
    spent = sum(r.rounds_s or 0.0 for r in timed)
    rounds = sorted(r.rounds or 0 for r in timed)
    median = statistics.median(rounds)
    return (f"sdperf: time: {wall_s:.0f} s, {spent:.0f} s of it ({min(spent / wall_s, 1.0):.0%}) "
            f"timing {sum(rounds)} rounds ({median:g} a test at the median, {rounds[0]}-{rounds[-1]}); "
            f"the rest built, started and probed workers, compared images and measured memory")


def noise_sentence(records: Sequence[Record]) -> str:
    """``noise_line`` as a sentence for a report's header (no ``sdperf:`` prefix, capitalized):
    the step summary's and the HTML report's; "" where there is none."""
    text = noise_line(records).removeprefix("sdperf: ")
    return text[:1].upper() + text[1:]


def write_terminal_summary(terminalreporter: Any, records: Sequence[Record], notes: Sequence[str],
                           written: Sequence[Path], reference: str = REFERENCE_VARIANT,
                           wall_s: float | None = None) -> None:
    """The end-of-session section (``wall_s``: the session's seconds so far, for ``time_line``)."""
    if not records and not notes:
        return
    tr = terminalreporter
    tr.section("sdperf summary")
    if records:  # notes alone (no test measured through the gate) make no table
        for line in [*table(records, reference), *peak_lines(records)]:
            tr.write_line(line)
        tr.write_line("vs baseline: latency (a sweep: the knee's seconds per image) now over the "
                      "baseline (its sessions), in the gate's mode, "
                      "with its interval (between-session spread and the session's number of "
                      "checks included); sees: the smallest slowdown this run would flag 19 times in 20")
        tr.write_line(counts_line(records))
        if floors := floor_line(records):
            tr.write_line(floors)
        if noise := noise_line(records):
            tr.write_line(noise)
        if spent := time_line(records, wall_s):
            tr.write_line(spent)
    for name, r in zip(labels(records), records, strict=True):
        if r.info.get("scenario"):
            tr.write_line(f"LoadGen {name}: {r.info['scenario'].get('summary', '')}")
        if r.info.get("sweep"):
            tr.write_line(f"sweep {name}: {r.info['sweep'].get('summary', '')}")
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
        "verdicts": verdict_counts(records),
        "results": [
            {**r.to_dict(), "speedup_vs_fp32": ups.get(r.test_id)} for r in records
        ],
    }
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
