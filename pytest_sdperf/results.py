"""What a test measured and concluded: Measurement (a worker's figures), WorkerFailure, Record.

``Measurement`` is the ``sdperf_measurement`` fixture's value, built from the worker's
``protocol.WorkerResult``; ``WorkerFailure`` stands in for it when the worker failed. ``Record``
is one test's row of the results: the terminal summary, ``--sdperf-json``, the HTML report, the
history and ``sdperf compare`` all read it, and ``Record.from_dict`` reads a results file back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NoReturn

from .measure.latency import LatencyStats
from .measure.memory import MemoryStats
from .models.ref import ModelRef
from .protocol import WorkerResult
from .variants.registry import VariantSpec
from .workload import Workload


@dataclass(frozen=True)
class Measurement:
    """What one worker measured for one variant and workload."""

    variant: str
    model_key: str
    workload: Workload
    latency: LatencyStats
    memory: MemoryStats
    images: tuple[Path, ...]
    info: Mapping[str, Any]
    environment: Mapping[str, Any]
    build_s: float
    latents_sha256: str
    device: str
    efficiency: Mapping[str, Any] = field(default_factory=dict)
    throughput: LatencyStats | None = None  # a LoadGen run's seconds per image
    #: this session's earlier readings of the test in other workers, pooled with this one by
    #: the gate (a suspect's first reading, when this is its confirmation: confirm.confirmed)
    earlier: tuple[LatencyStats, ...] = ()
    earlier_throughput: tuple[LatencyStats, ...] = ()

    @property
    def images_per_call(self) -> int:
        """The images one timed call makes: the saved images (one request's) times the requests
        in flight (``info["requests"]``, ov-async's) times the instances driven as one
        (``info["instances"]``); a batch sweep's knee, judged as its test's workload, states its
        own (``info["images_per_call"]``)."""
        stated = self.info.get("images_per_call")
        if stated:
            return int(stated)
        return len(self.images) * int(self.info.get("requests", 1)) * int(self.info.get("instances", 1))

    @classmethod
    def from_result(cls, spec: VariantSpec, model: ModelRef, wl: Workload, res: WorkerResult) -> Measurement:
        """Build from a worker's result (status ok: it carries latency and memory)."""
        if res.latency is None or res.memory is None:
            raise ValueError(f"worker result of {spec.name} has no figures (status {res.status})")
        return cls(
            variant=spec.name, model_key=model.key, workload=wl, latency=res.latency,
            memory=res.memory, images=res.images, info=res.info, environment=res.environment,
            build_s=res.build_s, latents_sha256=res.latents_sha256, device=res.device,
            efficiency=res.efficiency, throughput=res.throughput,
        )


class WorkerFailure:
    """Stands in for a Measurement when the worker crashed, hung or raised.

    status: the worker's outcome (``hung``, ``timeout``, ``crash``, ``error``), which the
    gate records as the test's verdict. The test fails, in its call phase, as soon as it
    touches the measurement.
    """

    def __init__(self, message: str, status: str = "error", variant: str = "",
                 model_key: str = "", workload_key: str = "") -> None:
        self.message = message
        self.status = status
        self.variant = variant
        self.model_key = model_key
        self.workload_key = workload_key

    def __getattr__(self, name: str) -> NoReturn:
        import pytest

        pytest.fail(self.message, pytrace=False)


_TUPLES = ("samples", "images", "reference_images")


@dataclass
class Record:
    """One test's row in the summary and the JSON results."""

    test_id: str
    variant: str
    model_key: str
    workload_key: str
    verdict: str
    p50_s: float | None = None
    p90_s: float | None = None
    first_call_s: float | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)
    ssim: float | None = None
    psnr: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    detectable_pct: float | None = None
    #: the smallest detectable slowdown with any number of rounds against this baseline
    detectable_floor_pct: float | None = None
    latency_limit_pct: float | None = None  # the latency limit the check held the ratio to
    ratio: float | None = None  # latency now over the baseline, in the gate's mode
    ratio_interval: tuple[float, float] | None = None  # ratio * exp(+-ratio_z SE)
    ratio_z: float | None = None  # the interval's z: corrected for the session's latency checks
    #: how much one round's gated ratio moved from round to round, in percent (a robust SD:
    #: measure/latency.py ``round_spread_pct``): this run's, and its baseline recording's
    round_spread_pct: float | None = None
    baseline_round_spread_pct: float | None = None
    samples: tuple[float, ...] = ()
    #: rounds timed for this test in this session, over every reading (a confirmation's too),
    #: and the seconds their timed calls took (``LatencyStats.timed_s``): with the session's
    #: wall time, where a run's time went (``report.time_line``)
    rounds: int | None = None
    rounds_s: float | None = None
    images: tuple[str, ...] = ()  # the PNGs the worker wrote (in the test's tmp_path)
    reference_images: tuple[str, ...] = ()  # the reference PNGs they were compared with
    efficiency: Mapping[str, Any] = field(default_factory=dict)  # see measure/efficiency.py

    @property
    def floor_over_limit(self) -> bool:
        """Whether no number of rounds could see a slowdown of the limit's size against this
        baseline (its floor is over the limit)."""
        floor, limit = self.detectable_floor_pct, self.latency_limit_pct
        return floor is not None and limit is not None and floor > limit

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--sdperf-json``'s ``results``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """A Record from one item of a ``--sdperf-json`` file's ``results`` (extra keys ignored)."""
        kept = {k: v for k, v in data.items() if k in _FIELDS}
        for name in _TUPLES:
            kept[name] = tuple(kept.get(name) or ())
        if kept.get("ratio_interval") is not None:
            kept["ratio_interval"] = tuple(kept["ratio_interval"])
        return cls(**kept)


_FIELDS = {f.name for f in dataclasses.fields(Record)}
