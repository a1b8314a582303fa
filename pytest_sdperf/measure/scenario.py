"""MLPerf LoadGen scenarios as a test's workload: what the marker asks for, and what came back.

A test marked ``@pytest.mark.sdperf(scenario="server", target_qps=0.5, latency_cap_ms=4000,
duration_s=30)`` has its variant's worker, after the timed rounds, run LoadGen's test of that
scenario around the pipeline (``measure/loadgen.py``). This module holds the plain parts:
``Scenario`` (validated marker keywords) and ``ScenarioResult`` (LoadGen's own figures, read back
from its detail log), with no LoadGen import, so the parent and the tests need no LoadGen.

Scenarios, as MLPerf Inference defines them:

- ``single-stream``: one query at a time, the next issued when the last completes; the figure
  is the 90th percentile latency (``latency_cap_ms`` bounds it, when given).
- ``offline``: every sample in one query; the figure is samples per second.
- ``server``: queries arrive as a Poisson process at ``target_qps``; the run is valid when the
  99th percentile latency is within ``latency_cap_ms`` (required); the figure is the
  completed samples per second.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

SCENARIOS = ("single-stream", "offline", "server")
# The percentile each scenario's latency bound applies to (MLPerf's).
PERCENTILE = {"single-stream": 90.0, "offline": 90.0, "server": 99.0}
# MLPerf Inference's minimum run length; shorter runs are labelled as not compliant.
COMPLIANT_MIN_DURATION_S = 600.0
KEYWORDS = ("scenario", "target_qps", "latency_cap_ms", "duration_s", "min_queries")


class ScenarioError(ValueError):
    """A scenario keyword out of range; the message names the keyword and the range."""


@dataclass(frozen=True)
class Scenario:
    """One LoadGen run: ``name`` (see SCENARIOS), Server's arrival rate ``target_qps``, the
    latency bound ``latency_cap_ms`` on the scenario's percentile, the minimum duration
    ``duration_s`` and the minimum query count ``min_queries``."""

    name: str
    target_qps: float | None = None
    latency_cap_ms: float | None = None
    duration_s: float = 10.0
    min_queries: int = 1

    @property
    def percentile(self) -> float:
        """The latency percentile this scenario is judged at (90 or 99)."""
        return PERCENTILE[self.name]

    @property
    def compliant_length(self) -> bool:
        """Whether the run is as long as MLPerf requires of a result (600 s)."""
        return self.duration_s >= COMPLIANT_MIN_DURATION_S

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """The inverse of ``to_dict``."""
        return cls(**{k: data[k] for k in ("name", "target_qps", "latency_cap_ms", "duration_s",
                                            "min_queries") if k in data})


def scenario_from_marker(fields: Mapping[str, Any], where: str) -> Scenario | None:
    """The marker's scenario keywords as a Scenario (None when ``scenario`` is not given);
    ScenarioError naming the keyword and its range for anything out of range."""
    given = {k: fields[k] for k in KEYWORDS if fields.get(k) is not None}
    if "scenario" not in given:
        if given:
            raise ScenarioError(f"{where}: sdperf marker keyword(s) {', '.join(sorted(given))} "
                                f"apply only with scenario= one of {', '.join(SCENARIOS)}")
        return None
    name = given["scenario"]
    if name not in SCENARIOS:
        raise ScenarioError(f"{where}: sdperf marker scenario={name!r} is not a LoadGen scenario; "
                            f"use one of {', '.join(SCENARIOS)}")
    for key in ("target_qps", "latency_cap_ms", "duration_s"):
        value = given.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise ScenarioError(f"{where}: sdperf marker {key}={value!r} must be a positive number")
    queries = given.get("min_queries")
    if queries is not None and (isinstance(queries, bool) or not isinstance(queries, int) or queries < 1):
        raise ScenarioError(f"{where}: sdperf marker min_queries={queries!r} must be an int >= 1")
    if name == "server":
        missing = [k for k in ("target_qps", "latency_cap_ms") if k not in given]
        if missing:
            raise ScenarioError(f"{where}: scenario='server' needs {' and '.join(missing)} "
                                "(the Poisson arrival rate, queries/s > 0, and the p99 latency "
                                "bound, ms > 0)")
    elif name == "offline" and "latency_cap_ms" in given:
        raise ScenarioError(f"{where}: latency_cap_ms does not apply to scenario='offline' (all "
                            "samples are one query); bound single-stream's p90 or server's p99")
    elif "target_qps" in given:
        raise ScenarioError(f"{where}: target_qps applies to scenario='server' only (the arrival "
                            f"rate); {name} issues queries as fast as they complete")
    return Scenario(name, _float(given.get("target_qps")), _float(given.get("latency_cap_ms")),
                    float(given.get("duration_s", 10.0)), int(given.get("min_queries", 1)))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ScenarioResult:
    """What LoadGen reported for one run, from its detail log (``mlperf_log_detail.txt``).

    samples_per_s: completed samples per second (Server), samples per second (Offline), or
    queries per second (SingleStream: one sample a query). latency_s: percentile -> seconds
    (50, 90, 95, 97, 99, 99.9). valid: LoadGen's VALID/INVALID; ``why``: the conditions it
    found unmet. images_per_sample: images one sample makes (the pipeline's call).
    service_s: each sample's call in seconds, in completion order (the SUT's own timing, the
    throughput gate's samples; the queueing a Server query waited is not in it).
    """

    scenario: Scenario
    samples_per_s: float
    latency_s: Mapping[str, float]
    valid: bool
    why: tuple[str, ...] = ()
    query_count: int = 0
    duration_s: float = 0.0
    images_per_sample: int = 1
    log_dir: str = ""
    usage_error: str = ""
    service_s: tuple[float, ...] = ()

    @property
    def images_per_s(self) -> float:
        """Images per second: samples per second times the images each sample makes."""
        return self.samples_per_s * self.images_per_sample

    def percentile_s(self, pct: float | None = None) -> float | None:
        """The latency at ``pct`` (default: the scenario's own percentile), in seconds."""
        return self.latency_s.get(_pct_key(self.scenario.percentile if pct is None else pct))

    def over_cap(self) -> str | None:
        """The message naming the figure when the scenario's percentile exceeds its cap."""
        cap = self.scenario.latency_cap_ms
        got = self.percentile_s()
        if cap is None or got is None or got * 1000.0 <= cap:
            return None
        p = f"p{self.scenario.percentile:g}"
        return (f"{self.scenario.name} {p} latency {got * 1000.0:.0f} ms exceeds latency_cap_ms="
                f"{cap:g} (LoadGen: {self.verdict_text()}; log in {self.log_dir})")

    def verdict_text(self) -> str:
        """'VALID' or 'INVALID (why...)', with the compliance label."""
        text = "VALID" if self.valid else "INVALID (" + "; ".join(self.why or ("no reason given",)) + ")"
        if not self.scenario.compliant_length:
            text += (f", not a compliant run: {self.scenario.duration_s:g} s, MLPerf requires at "
                     f"least {COMPLIANT_MIN_DURATION_S:g} s")
        return text

    def summary(self) -> str:
        """One line: scenario, throughput, the percentile, LoadGen's verdict."""
        if self.usage_error:
            return f"{self.scenario.name}: {self.usage_error}"
        p = self.scenario.percentile
        got = self.percentile_s()
        lat = f"p{p:g} {got * 1000.0:.0f} ms" if got is not None else "no latency"
        rate = f" at {self.scenario.target_qps:g} q/s" if self.scenario.target_qps else ""
        return (f"{self.scenario.name}{rate}: {self.images_per_s:.3g} images/s, {lat}, "
                f"{self.query_count} queries in {self.duration_s:.1f} s, {self.verdict_text()}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the scenario nested, ``images_per_s`` and the line included)."""
        out = asdict(self)
        out["scenario"] = self.scenario.to_dict()
        out["images_per_s"] = self.images_per_s
        out["summary"] = self.summary()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScenarioResult:
        """The inverse of ``to_dict`` (derived keys ignored)."""
        return cls(
            scenario=Scenario.from_dict(data["scenario"]),
            samples_per_s=float(data.get("samples_per_s", 0.0)),
            latency_s={str(k): float(v) for k, v in (data.get("latency_s") or {}).items()},
            valid=bool(data.get("valid")), why=tuple(data.get("why") or ()),
            query_count=int(data.get("query_count", 0)), duration_s=float(data.get("duration_s", 0.0)),
            images_per_sample=int(data.get("images_per_sample", 1)), log_dir=str(data.get("log_dir", "")),
            usage_error=str(data.get("usage_error", "")),
            service_s=tuple(float(x) for x in data.get("service_s") or ()),
        )

    @classmethod
    def refused(cls, scenario: Scenario, message: str) -> ScenarioResult:
        """A run not started because its settings cannot be met (``usage_error``)."""
        return cls(scenario, 0.0, {}, False, (message,), usage_error=message)


def _pct_key(pct: float) -> str:
    return f"{pct:.2f}"


# LoadGen's detail-log keys for the conditions of a valid run, and what each means unmet.
_CONDITIONS = {
    "result_min_duration_met": "min duration not met",
    "result_min_queries_met": "min queries not met",
    "result_perf_constraints_met": "latency bound not met",
    "early_stopping_met": "early stopping not met (too few queries to bound the percentile)",
}


def read_detail_log(path: Path) -> dict[str, Any]:
    """LoadGen's ``:::MLLOG`` lines as key -> value (the last value of each key)."""
    found: dict[str, Any] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                item = json.loads(line[len(":::MLLOG "):])
            except json.JSONDecodeError:
                continue
            found[str(item.get("key"))] = item.get("value")
    return found


def result_from_log(scenario: Scenario, log_dir: Path, images_per_sample: int,
                    duration_s: float, service_s: tuple[float, ...] = ()) -> ScenarioResult:
    """The ScenarioResult of a finished run, from ``log_dir/mlperf_log_detail.txt`` (and the
    SUT's own timing of each sample's call, ``service_s``)."""
    log = read_detail_log(log_dir / "mlperf_log_detail.txt")
    rate = next((float(log[k]) for k in ("result_completed_samples_per_sec", "result_samples_per_second",
                                          "result_qps_without_loadgen_overhead") if k in log), 0.0)
    latency: dict[str, float] = {}
    for key, value in log.items():
        if key.startswith("result_") and key.endswith("_percentile_latency_ns"):
            pct = float(key[len("result_"):-len("_percentile_latency_ns")])
            latency[_pct_key(pct)] = float(value) / 1e9
    why = [text for key, text in _CONDITIONS.items() if log.get(key) is False]
    reason = str(log.get("result_invalid_reason") or "").strip()
    if reason:
        why.append(reason)
    early = str(log.get("early_stopping_result") or "").strip()
    if log.get("early_stopping_met") is False and early:
        why.append(" ".join(early.replace("*", "").split()))
    return ScenarioResult(
        scenario=scenario, samples_per_s=rate, latency_s=latency,
        valid=log.get("result_validity") == "VALID", why=tuple(why),
        query_count=int(log.get("result_query_count") or 0), duration_s=duration_s,
        images_per_sample=images_per_sample, log_dir=str(log_dir), service_s=service_s,
    )
