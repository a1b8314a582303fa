"""Which yardstick holds a variant's ratio steady over time: a probe of kept-alive workers.

The gate judges a variant by its ratio to a yardstick timed beside it (the paired reference
variant, or the calibration workload), so a machine that is busier or slower today moves both
sides alike. Only alike where the two react to the machine's state alike: a one-thread process
and a two-thread one, or OpenVINO's runtime and PyTorch's, do not. What the ratio then does
between sessions is the test's between-session spread, which no number of rounds narrows.

The probe measures that, for several yardsticks at once, on the same minutes:

- ``probe``: workers of the named tests (each a folder of a ``pytest --sdperf`` run's basetemp,
  holding that test's ``request.json``: run it with ``--basetemp DIR``, as pytest keeps only its
  last three basetemps; a probe's own output folder serves as well) are started once and kept
  alive; each round times every
  one of them once, calibration workload included, in an order that rotates and reverses
  round by round; a row of seconds per round goes to ``rounds.jsonl``.
- ``spread_table``: the rows cut into blocks of consecutive rounds; for each pair of tests (and
  each test over its own calibration) the log ratio's median per block, how much those medians
  move (their standard deviation), how much the block's own rounds explain (the standard error
  of a median, 1.2533 sd / sqrt(n)), and the rest: ``excess``, the part that moves with time,
  the between-session spread that yardstick would leave.

``python -m pytest_sdperf.yardsticks probe BASETEMP OUT --minutes 20 --tests A,B,...``, then
``python -m pytest_sdperf.yardsticks table OUT/rounds.jsonl --block 15``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:
    from .runner import DrivenWorker

CALIBRATION = "cal"  # the yardstick name of a test's own calibration workload
_MEDIAN_SE = 1.2533  # the standard error of a median: 1.2533 sd / sqrt(n), for normal rounds
_TIMEOUT_S = 600.0  # the hard cap on a worker's start (build and warm-up) and on each round


@dataclass(frozen=True)
class Spread:
    """One ratio (``test`` over ``yardstick``) over the blocks: log standard deviations."""

    test: str
    yardstick: str
    blocks: int
    round_sd: float  # one round's log ratio, the median over blocks
    block_sd: float  # the blocks' medians
    within_se: float  # what a block's own rounds explain of that (a median's standard error)
    level: float  # the ratio's median over the blocks' medians

    @property
    def excess(self) -> float:
        """The blocks' spread beyond their rounds' noise: what moves with time (0 if none)."""
        return math.sqrt(max(0.0, self.block_sd ** 2 - self.within_se ** 2))


def rotation(names: Sequence[str], round_no: int) -> list[str]:
    """The order of round ``round_no``: rotated by one each round, reversed every other cycle,
    so no test always runs right after another."""
    k = round_no % len(names)
    order = [*names[k:], *names[:k]]
    return order[::-1] if (round_no // len(names)) % 2 else order


def _log_ratio(row: Mapping[str, float], test: str, yardstick: str) -> float:
    below = row[f"{test}:{CALIBRATION}"] if yardstick == CALIBRATION else row[yardstick]
    return math.log(row[test] / below)


def spread_of(rows: Sequence[Mapping[str, float]], test: str, yardstick: str, block: int) -> Spread:
    """``test`` over ``yardstick`` (another test, or ``CALIBRATION``) in blocks of ``block`` rounds."""
    cut = [rows[i:i + block] for i in range(0, len(rows) - block + 1, block)]
    if len(cut) < 2 or block < 2:
        raise ValueError(f"{len(rows)} rounds make {len(cut)} blocks of {block}: need at least 2 blocks of 2")
    logs = [[_log_ratio(r, test, yardstick) for r in b] for b in cut]
    medians = [statistics.median(x) for x in logs]
    sds = [statistics.stdev(x) for x in logs]
    within = statistics.median((_MEDIAN_SE * sd) ** 2 / block for sd in sds)
    return Spread(test, yardstick, len(cut), statistics.median(sds), statistics.stdev(medians),
                  math.sqrt(within), math.exp(statistics.median(medians)))


def spread_table(rows: Sequence[Mapping[str, float]], tests: Sequence[str], block: int) -> list[Spread]:
    """Every test over each earlier-named test, then each over its own calibration."""
    pairs = [(a, b) for i, a in enumerate(tests) for b in tests[:i]]
    pairs += [(a, CALIBRATION) for a in tests if f"{a}:{CALIBRATION}" in rows[0]]
    return [spread_of(rows, a, b, block) for a, b in pairs]


def format_table(spreads: Sequence[Spread]) -> str:
    """The table, in percent of the log ratio."""
    lines = ["| test | yardstick | ratio | blocks | one round | block medians | rounds explain | "
             "excess (moves with time) |", "|---|---|---|---|---|---|---|---|"]
    for s in spreads:
        lines.append(f"| {s.test} | {s.yardstick} | {s.level:.3f} | {s.blocks} | {s.round_sd:.1%} | "
                     f"{s.block_sd:.2%} | {s.within_se:.2%} | **{s.excess:.2%}** |")
    return "\n".join(lines)


def probe(basetemp: Path, out: Path, tests: Sequence[str], minutes: float) -> Path:
    """Rounds of the named tests' workers, kept alive, for ``minutes``: ``out/rounds.jsonl``."""
    from .protocol import WorkerRequest
    from .runner import DrivenWorker, WorkerGone

    if not basetemp.is_dir():
        raise SystemExit(f"{basetemp}: no such folder; give the --basetemp DIR of a pytest --sdperf run")
    out.mkdir(parents=True, exist_ok=True)
    workers: dict[str, DrivenWorker] = {}
    try:
        for name in tests:
            source = basetemp / name / "request.json"
            if not source.is_file():
                raise SystemExit(f"{source}: no such request; name test folders of a pytest --sdperf "
                                 f"run's basetemp ({', '.join(sorted(p.name for p in basetemp.iterdir()))})")
            request = WorkerRequest.from_dict(json.loads(source.read_text()))
            request = dataclasses.replace(request, rounds=1, out_dir=out / name / "images")
            workers[name] = DrivenWorker(request, out / name, _TIMEOUT_S, dict(request.variant.env))
            try:
                workers[name].start()
            except WorkerGone as gone:
                why = gone.outcome.skip_reason or gone.outcome.failure_text(request.variant.name, _TIMEOUT_S)
                raise SystemExit(f"{name}: its worker did not start: {why}") from None
        return _rounds(workers, out / "rounds.jsonl", minutes)
    finally:
        for worker in workers.values():
            worker.close()


def _rounds(workers: Mapping[str, DrivenWorker], path: Path, minutes: float) -> Path:
    names = list(workers)
    end = time.monotonic() + minutes * 60
    with path.open("w") as f:
        n = 0
        while time.monotonic() < end:
            row: dict[str, float] = {"round": n, "t": time.time()}
            for name in rotation(names, n):
                reply = workers[name].ask(cmd="round", calibrate=True)
                row[name] = float(reply["seconds"])
                row[f"{name}:{CALIBRATION}"] = float(reply["calibration"])
            f.write(json.dumps(row) + "\n")
            f.flush()
            n += 1
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(prog="python -m pytest_sdperf.yardsticks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="time kept-alive workers of a run's tests, round by round")
    p.add_argument("basetemp", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--tests", required=True, help="comma-separated test folders of the basetemp")
    p.add_argument("--minutes", type=float, default=20.0)
    t = sub.add_parser("table", help="the spread of each ratio over blocks of rounds")
    t.add_argument("rounds", type=Path)
    t.add_argument("--block", type=int, default=15)
    args = parser.parse_args(argv)
    if args.command == "probe":
        print(probe(args.basetemp, args.out, args.tests.split(","), args.minutes))
        return 0
    rows = [json.loads(line) for line in args.rounds.read_text().splitlines() if line.strip()]
    tests = [k for k in rows[0] if k not in ("round", "t") and not k.endswith(f":{CALIBRATION}")]
    print(format_table(spread_table(rows, tests, args.block)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
