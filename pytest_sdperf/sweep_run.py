"""``sdperf sweep``: the latency-capped sweep of one variant from the command line.

    sdperf sweep ov-async --values 1,2,3,4 --cap-ms 2000 [--setting ov_requests] [-- PYTEST ARGS]
    sdperf sweep torch-fp32 --setting images_per_prompt --values 1,2,4 --cap-ms 3x

It writes a one-test suite, ``.sdperf-sweep/test_sweep.py`` under the current folder (so the
folder's conftest.py, with any variants it registers, applies, and the test's id, hence its
baseline entry, is the same every run), and runs ``python -m pytest --sdperf`` on it with the
variant selected: the ``sdperf_knee`` fixture measures each value in fresh workers, the gate
judges the knee's throughput against the baseline (``baselines/`` here, as a plain run's), and
the exit status is pytest's (1: a regression, or no value within the cap). Arguments after
``--`` go to pytest (``--sdperf-model``, ``--sdperf-html``, ``--sdperf-size``...).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from .sweep import sweep_from_marker

FOLDER = ".sdperf-sweep"
SUITE = '''"""Written by `sdperf sweep`; rewritten on each run."""
import pytest


@pytest.mark.sdperf(sweep={setting!r}, sweep_values={values!r}, sweep_cap_ms={cap!r})
def test_sweep_{setting}(sdperf_knee, sdperf_gate):
    sdperf_gate.check(sdperf_knee)
'''


def _values(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--values {text!r}: give increasing ints, e.g. 1,2,4,8") from None


def _cap(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # 'Nx', checked with the marker's rule


def add_parser(sub: Any) -> None:
    """The ``sweep`` subcommand."""
    p = sub.add_parser(
        "sweep", help="the latency-capped sweep of one variant (its knee gated); exit as pytest",
        description="Raise one variant setting through --values, measuring each in fresh workers, "
        "until the p90 latency of a call passes --cap-ms or throughput stops growing; report the "
        "knee (the best images/s within the cap, at the least latency) and gate its throughput "
        "against the baseline. Runs pytest on .sdperf-sweep/test_sweep.py in this folder; "
        "arguments after -- go to pytest.", usage="sdperf sweep VARIANT --values V1,V2,... --cap-ms MS "
        "[--setting NAME] [-- PYTEST ARGS]")
    p.add_argument("variant", help="the variant to sweep, e.g. ov-async")
    p.add_argument("--setting", default="ov_requests",
                   help="the variant setting to raise, as --sdperf-set names it (default ov_requests), "
                   "or images_per_prompt (the batch), or instances (pinned worker processes)")
    p.add_argument("--values", type=_values, required=True, help="increasing ints, e.g. 1,2,3,4")
    p.add_argument("--cap-ms", type=_cap, required=True,
                   help="the p90 latency bound of a call: ms, or Nx (N times the first value's p90)")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Write the one-test suite and run pytest on it; pytest's exit status."""
    sweep = sweep_from_marker({"sweep": args.setting, "sweep_values": args.values,
                               "sweep_cap_ms": args.cap_ms}, "sdperf sweep")
    assert sweep is not None
    folder = Path.cwd() / FOLDER
    folder.mkdir(exist_ok=True)
    (folder / ".gitignore").write_text("*\n")
    suite = folder / "test_sweep.py"
    suite.write_text(SUITE.format(setting=sweep.setting, values=sweep.values, cap=args.cap_ms))
    extra = list(getattr(args, "passthrough", ()))
    command = [sys.executable, "-m", "pytest", str(suite), "--rootdir", str(Path.cwd()), "--sdperf",
               "--sdperf-variants", args.variant, *extra]
    print("sdperf sweep: " + " ".join(command[2:]), flush=True)
    return subprocess.call(command)
