"""Suspects confirmed at the session's end, not right after their first reading.

A reading that looks like a latency regression (a *suspect*, compare.py) is measured again in
fresh workers before its test may fail. Until 2026-12-07 that second reading came right after
the first, and the two shared what the machine was doing in those minutes: every unchanged
suspect of the suite harness since 2026-12-06 (six, in 30 runs) read the same in its fresh
workers as in its first, within 2.6% (dpm-solver 1.122 then 1.135 over a baseline whose
sessions spread 1.3%; tiny-vae 1.050 then 1.064), and two of them failed: the confirmation
repeated the moment, it did not re-sample it. The same test's other readings that afternoon,
runs 12 minutes before and after, were 0.8-4.7% over. So a suspect is now held: its reports
are not logged, and after the session's other tests it runs again, where the measurement
fixture finds its first reading (``Later.take``) and judges the two pooled as before. The
confirmation is as many minutes after the first reading as the rest of the suite takes.

How, in pytest's terms (``plugin.pytest_runtest_protocol`` and ``pytest_runtestloop``): a
benchmark test's protocol runs with its reports unlogged (``run_protocol``); where its fixture
held a reading (``Later.hold``, then ``pytest.skip``), the reports are dropped and the item is
queued; otherwise they are logged as pytest would have. After the session's loop the queued
items run once more (``run_held``) and their reports are logged then: one outcome per test.
Held only where the session will reach its end: not with ``-x``, ``--maxfail`` or ``--stepwise``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .compare import Check
    from .results import Measurement

#: The reason the first pass of a held test skips with (its reports are never logged).
HELD = "sdperf: a possible latency regression, measured again at the session's end"


@dataclass(frozen=True)
class Held:
    """A suspect's first reading and the check that made it one."""

    measurement: Measurement
    check: Check


@dataclass
class Later:
    """The session's held suspects (in ``SdperfState.later``)."""

    _held: dict[str, Held] = field(default_factory=dict)
    _queue: list[pytest.Item] = field(default_factory=list)
    _done: set[str] = field(default_factory=set)  # held once: a rerun is never held again

    def may_hold(self, config: pytest.Config, nodeid: str) -> bool:
        """Whether ``nodeid``'s suspect may wait for the session's end: not twice, and not
        where a failure may stop the session first (``--maxfail``, ``-x``, ``--stepwise``)."""
        stops = config.getoption("maxfail", 0) or config.getoption("stepwise", False)
        return nodeid not in self._done and not stops

    def hold(self, nodeid: str, held: Held) -> None:
        """Keep ``held`` for ``nodeid``'s run at the session's end; its caller skips with ``HELD``."""
        self._held[nodeid] = held
        self._done.add(nodeid)

    def take(self, nodeid: str) -> Held | None:
        """The first reading held for ``nodeid`` (its rerun), else None; forgotten once taken."""
        return self._held.pop(nodeid, None)

    def holds(self, nodeid: str) -> bool:
        """Whether ``nodeid`` has a reading waiting for its rerun."""
        return nodeid in self._held

    def run_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Run ``item`` (setup, call, teardown) and log its reports, or queue it where its
        fixture held a reading (its reports dropped)."""
        from _pytest.runner import runtestprotocol  # as pytest-rerunfailures does

        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        if self.holds(item.nodeid):
            self._queue.append(item)
            return
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for report in reports:
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def run_held(self, session: pytest.Session) -> None:
        """Run the queued items again, in the order they were held, logging their outcomes."""
        queue, self._queue = self._queue, []
        for i, item in enumerate(queue):
            if session.shouldstop or session.shouldfail:
                break
            nextitem = queue[i + 1] if i + 1 < len(queue) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
