"""Splitting the selected tests over N CI runners: ``--sdperf-shard I/N`` runs shard I of N.

The split is a function of the collected test ids (in collection order) and of each test's
duration recorded in this machine's baseline file, nothing else, so every runner computes the
same split from the same checkout:

- tests with a recorded duration, longest first (ties by id), each go to the shard with the
  least recorded time so far (ties: the lower shard). Greedy assignment keeps every shard's
  recorded time within ``total / N + longest test`` (``balance_bound``);
- tests with none (never recorded here) are dealt round-robin in collection order, so a first
  run on a new machine still splits by count. Adding such a test moves no timed test.

Within a shard, tests keep their collection order. Shards are numbered from 1 (``1/3``,
``2/3``, ``3/3``), as a CI matrix lists them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    @property
    def label(self) -> str:
        """``2/3``."""
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """``shard-2-of-3``: the suffix of the files this shard writes beside the baseline."""
        return f"shard-{self.index}-of-{self.count}"


def shard_value(text: str) -> Shard:
    """Parse ``I/N`` (1 <= I <= N), or raise an error naming the value and the range."""
    head, sep, tail = text.strip().partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not I/N (e.g. 2/3: the second of three shards)") from None
    if not sep or count < 1 or not 1 <= index <= count:
        raise argparse.ArgumentTypeError(
            f"{text!r}: I/N needs N >= 1 and I from 1 to N (e.g. 1/3, 2/3, 3/3)")
    return Shard(index, count)


def recorded_durations(entries: Mapping[str, Any], model: str = "") -> dict[str, float]:
    """Each test id's recorded duration (seconds) from a baseline file's entries.

    Entries are keyed ``test_id@model/workload``; where a test has several (other models or
    sizes), the entries of ``model`` (the ``--sdperf-model`` label) win, then the longest.
    """
    best: dict[str, tuple[bool, float]] = {}
    for key, entry in entries.items():
        test_id, _, rest = str(key).partition("@")
        value = entry.get("duration_s") if isinstance(entry, Mapping) else None
        if not isinstance(value, (int, float)) or value < 0:
            continue
        rank = (bool(model) and rest.startswith(f"{model}/"), float(value))
        if test_id not in best or rank > best[test_id]:
            best[test_id] = rank
    return {test_id: seconds for test_id, (_, seconds) in best.items()}


def split(tests: Sequence[str], durations: Mapping[str, float], count: int) -> list[list[str]]:
    """The ``count`` shards of ``tests`` (see the module's rule); each keeps collection order."""
    if count < 1:
        raise ValueError(f"count must be 1 or more, not {count}")
    order = {test: n for n, test in enumerate(tests)}
    load = [0.0] * count
    where: dict[str, int] = {}
    timed = sorted((t for t in order if t in durations), key=lambda t: (-durations[t], t))
    for test in timed:
        shard = min(range(count), key=lambda i: (load[i], i))
        where[test] = shard
        load[shard] += durations[test]
    untimed = [t for t in order if t not in durations]
    for n, test in enumerate(untimed):
        where[test] = n % count
    shards: list[list[str]] = [[] for _ in range(count)]
    for test in order:
        shards[where[test]].append(test)
    return shards


def balance_bound(durations: Sequence[float], count: int) -> float:
    """The most recorded time any shard gets from ``split``: the mean share plus the longest."""
    return sum(durations) / count + max(durations, default=0.0)
