"""Soak a variant for hangs: ``python -m pytest_sdperf.soak [--variant ov-async] [--workers 20]``.

Runs the variant in ``--workers`` fresh worker processes, one after another, each timing
``--calls`` rounds (plus its first call, warm-up and memory calls) of the model's default
workload, under the same watchdog as the suite (``--hang-floor``). Prints one line per worker
and a total; exits 1 if any worker hung, timed out, crashed or raised, 0 otherwise.
Generations counted are the timed rounds times the requests each round runs (``ov_requests``
for ov-async, else 1). ``--set NAME=VALUE`` (repeatable) is ``--sdperf-set``: e.g.
``--set ov_async_form=callbacks`` soaks ov-async's other form.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .config import Settings, default_of, key_value, positive_float, positive_int
from .progress import DEFAULT_HANG_FLOOR_S
from .session import SdperfState
from .variants.builtin import register_builtin
from .variants.registry import VariantRegistry
from .workload import Workload


def _state(args: argparse.Namespace, workdir: Path) -> SdperfState:
    registry = VariantRegistry()
    register_builtin(registry)
    settings = Settings(
        enabled=True, model=args.model, variants=None, baselines_dir=workdir / "baselines",
        update=False, update_all=False, rounds=args.calls, warmup=1, cache_dir=args.cache_dir,
        json_path=None, timeout_s=args.timeout, allow_pickle=False, device="cpu",
        hang_floor_s=args.hang_floor, sets=tuple(args.set),
    )
    return SdperfState(settings, registry, workdir)


def soak(args: argparse.Namespace) -> int:
    """Run the workers; the number that did not finish cleanly."""
    bad = generations = 0
    with tempfile.TemporaryDirectory(prefix="sdperf-soak-") as tmp:
        state = _state(args, Path(tmp))
        spec = state.registry.get(args.variant)
        try:
            for i in range(args.workers):
                start = time.monotonic()
                outcome = state.run(spec, Workload(), Path(tmp) / f"w{i}")
                took = time.monotonic() - start
                res = outcome.measured
                if res is None or res.latency is None:
                    bad += 1
                    print(f"worker {i + 1}/{args.workers}: {outcome.status} after {took:.0f} s\n"
                          + outcome.failure_text(spec.name, args.timeout), flush=True)
                    continue
                per_round = int(res.info.get("requests", 1))
                n = len(res.latency.samples) * per_round
                generations += n
                print(f"worker {i + 1}/{args.workers}: ok, {n} timed generations in {took:.0f} s "
                      f"(p50 {res.latency.p50:.3f} s)", flush=True)
        finally:
            state.close()  # the reference workers and the fork server
    print(f"soak {args.variant}: {args.workers} workers, {generations} timed generations, "
          f"{bad} hung, timed out or failed")
    return bad


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m pytest_sdperf.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="ov-async")
    parser.add_argument("--workers", type=positive_int, default=20)
    parser.add_argument("--calls", type=positive_int, default=10, help="timed rounds per worker")
    parser.add_argument("--hang-floor", type=positive_float, default=DEFAULT_HANG_FLOOR_S)
    parser.add_argument("--timeout", type=positive_float, default=default_of("timeout_s"))
    parser.add_argument("--model", default=default_of("model"))
    parser.add_argument("--cache-dir", type=Path, default=default_of("cache_dir"))
    parser.add_argument("--set", type=key_value, action="append", default=[], metavar="NAME=VALUE",
                        help="a variant setting, as --sdperf-set (repeatable)")
    args = parser.parse_args(argv)
    return 1 if soak(args) else 0


if __name__ == "__main__":
    sys.exit(main())
