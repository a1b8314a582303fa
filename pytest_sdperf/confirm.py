"""A suspect reading measured again in fresh workers before its test may fail.

The measurement fixtures (fixtures.py, knee.py) call ``confirmed`` on a first reading, or
``hold_suspect`` then ``confirm`` where the confirmation waits for the session's end (later.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

if TYPE_CHECKING:
    from .compare import Check
    from .gate import Gate
    from .measure.latency import LatencyStats
    from .results import Measurement, WorkerFailure
    from .session import SdperfState


def confirmed(m: Measurement, gate: Gate, state: SdperfState,
              measure: Callable[[Path, tuple[LatencyStats, ...]], Measurement | WorkerFailure],
              workdir: Path) -> Measurement | WorkerFailure:
    """A reading of a possible latency regression (a suspect, compare.py), or one its rounds
    left undecided (inconclusive where more rounds would have narrowed it: ``Verdict.undecided``),
    is measured again in fresh workers before the test is judged: the second measurement, with
    the first as ``Measurement.earlier``, is the one judged (pooled with the first where the
    second alone is a suspect too, else alone); the first one's reading alone rides in its info
    (the message and the JSON show both). Its auto rounds sample until that comparison is
    decided (``AutoTarget.confirming``), not until the second reading alone is a suspect:
    stopped there, the pooled reading was often left undecided (inconclusive). A suspect
    that may wait is confirmed after the session's other tests instead (``hold_suspect``,
    later.py); here it is confirmed at once (``-x``, a sweep's knee)."""
    first = gate.latency_again(m)
    return m if first is None else confirm(m, first, gate, state, measure, workdir)


def hold_suspect(request: pytest.FixtureRequest, m: Measurement, first: Check, state: SdperfState) -> None:
    """Where ``m``'s check ``first`` (``Gate.latency_again``) is a suspect and the session will
    reach its end, hold it for a confirmation then (later.py) and skip this first pass (its
    reports are never logged); else return."""
    from . import progress
    from .later import HELD, Held

    nodeid = request.node.nodeid
    if not first.suspect or not state.later.may_hold(request.config, nodeid):
        return
    state.later.hold(nodeid, Held(m, first))
    progress.say(f"{m.variant}: a possible latency regression ({first.measured:.3f}x): measured "
                 f"again in fresh workers after the session's other tests")
    pytest.skip(HELD)


def confirm(m: Measurement, first: Check, gate: Gate, state: SdperfState,
            measure: Callable[[Path, tuple[LatencyStats, ...]], Measurement | WorkerFailure],
            workdir: Path) -> Measurement | WorkerFailure:
    """``m`` (whose check ``first`` is a suspect or undecided) measured again in fresh workers
    and pooled with it (see ``confirmed``)."""
    from .compare import FAIL
    from .results import Measurement

    earlier = (*m.earlier, m.latency)
    again = measure(workdir, earlier)
    if not isinstance(again, Measurement):
        return again
    info = {**again.info, "first_measurement": first.message()}
    pooled = dataclasses.replace(again, info=info, earlier=earlier,
                                 earlier_throughput=(*m.earlier_throughput,
                                                     *((m.throughput,) if m.throughput else ())))
    if not first.suspect:
        state.notes.append(f"{m.variant}: a first measurement was left undecided, so fresh workers "
                           f"measured it again: {first.message()}")
        return pooled
    judged = gate.latency_suspect(pooled)
    if judged is None or judged.status != FAIL:
        state.notes.append(f"{m.variant}: a first measurement read a possible latency regression, "
                           f"fresh workers pooled with it did not confirm it: {first.message()}")
    return pooled
