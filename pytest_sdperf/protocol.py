"""The worker protocol's messages: what the parent asks a worker, and what comes back.

One typed message each way, serialized as JSON files (``request.json``, ``result.json``):
``session.SdperfState.run`` builds a ``WorkerRequest``, ``runner.run_worker`` writes it, the
worker (``python -m pytest_sdperf.worker``) reads it with ``WorkerRequest.from_dict`` and writes a
``WorkerResult``, which the runner reads back with ``WorkerResult.from_dict``.

Example::

    request = WorkerRequest(variant=spec, model=model, workload=wl, cache_dir=cache,
                            device="cpu", out_dir=workdir / "images")
    assert WorkerRequest.from_dict(request.to_dict()) == request
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .measure.latency import LatencyStats
from .measure.memory import MemoryStats
from .measure.scenario import Scenario
from .models.ref import ModelRef
from .variants.registry import VariantSpec
from .workload import Workload

OK, SKIP, ERROR = "ok", "skip", "error"


@dataclass(frozen=True)
class AutoTarget:
    """What auto rounds sample towards: the stored latency, compared in gate ``mode`` at
    ``latency_pct`` (``reference``: the paired reference's name)."""

    mode: str
    baseline: LatencyStats
    latency_pct: float
    reference: str = ""
    checks: int = 1  # latency checks in the session (interval.suite_z)
    priors: Mapping[str, float] = field(default_factory=dict)  # learnt spreads (priors.py)
    confirm: bool = False  # a suspect is measured again and judged pooled (the gate's tests)
    #: this session's earlier readings of the test (a suspect's, when these rounds are its
    #: confirmation): the rounds sample until the comparison pooled with them is decided
    earlier: tuple[LatencyStats, ...] = ()
    noise_scale: float = 1.0  # this session's factor on the between-session term (noise.py)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"mode": self.mode, "baseline": self.baseline.to_dict(),
                "latency_pct": self.latency_pct, "reference": self.reference, "checks": self.checks,
                "priors": dict(self.priors), "confirm": self.confirm,
                "earlier": [e.to_dict() for e in self.earlier], "noise_scale": self.noise_scale}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoTarget:
        """The inverse of ``to_dict``."""
        priors = {str(k): float(v) for k, v in (data.get("priors") or {}).items()}
        return cls(str(data["mode"]), LatencyStats.from_dict(data["baseline"]),
                   float(data["latency_pct"]), str(data.get("reference", "")), int(data.get("checks", 1)),
                   priors, bool(data.get("confirm", False)),
                   tuple(LatencyStats.from_dict(e) for e in data.get("earlier") or ()),
                   float(data.get("noise_scale", 1.0)))

    def confirming(self, earlier: tuple[LatencyStats, ...]) -> AutoTarget:
        """The target of a suspect's confirmation: sample until the comparison pooled with the
        ``earlier`` readings is decided (no third reading follows, so a suspect does not stop
        it)."""
        return replace(self, earlier=earlier, confirm=False)


@dataclass(frozen=True)
class AutoRounds:
    """The auto-rounds stopping rule's limits (``rounds == 0`` in the request), see
    ``rounds.more_rounds``."""

    min_rounds: int = 5
    max_rounds: int = 60
    halfwidth: float = 0.02
    budget_s: float = 120.0
    target: AutoTarget | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"min_rounds": self.min_rounds, "max_rounds": self.max_rounds,
                "halfwidth": self.halfwidth, "budget_s": self.budget_s,
                "target": self.target.to_dict() if self.target else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoRounds:
        """The inverse of ``to_dict``."""
        target = data.get("target")
        return cls(int(data["min_rounds"]), int(data["max_rounds"]), float(data["halfwidth"]),
                   float(data["budget_s"]), AutoTarget.from_dict(target) if target else None)


@dataclass(frozen=True)
class WorkerRequest:
    """One measurement: build ``variant`` on ``model``, time ``workload``, save its images.

    rounds: timed rounds, or 0 for auto rounds (``auto``); a worker the parent drives
    (``--serve``) times what it is told instead. warmup_steps: steps of the untimed calls (a
    protocol's), None for the workload's. measure_peak: also measure the GEMM peak over
    ``machine_cpus``. progress: the heartbeat file the parent's watchdog reads. scenario: an
    MLPerf LoadGen scenario to run after the timed rounds (its result in ``info["scenario"]``).
    """

    variant: VariantSpec
    model: ModelRef
    workload: Workload
    cache_dir: Path
    device: str
    out_dir: Path
    settings: Mapping[str, str] = field(default_factory=dict)
    rounds: int = 5
    auto: AutoRounds = AutoRounds()
    warmup: int = 1
    warmup_steps: int | None = None
    memray_capture: Path | None = None
    measure_peak: bool = False
    machine_cpus: tuple[int, ...] = ()
    progress: Path | None = None
    scenario: Scenario | None = None

    def with_progress(self, path: Path) -> WorkerRequest:
        """This request, reporting heartbeats to ``path``."""
        return replace(self, progress=path)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``request.json``."""
        return {
            "variant": self.variant.to_dict(), "model": self.model.to_dict(),
            "workload": self.workload.to_dict(), "cache_dir": str(self.cache_dir),
            "device": self.device, "out_dir": str(self.out_dir), "settings": dict(self.settings),
            "rounds": self.rounds, "auto": self.auto.to_dict(), "warmup": self.warmup,
            "warmup_steps": self.warmup_steps,
            "memray_capture": str(self.memray_capture) if self.memray_capture else None,
            "measure_peak": self.measure_peak, "machine_cpus": list(self.machine_cpus),
            "progress": str(self.progress) if self.progress else None,
            "scenario": self.scenario.to_dict() if self.scenario else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerRequest:
        """The inverse of ``to_dict``."""
        memray, progress, scenario = data.get("memray_capture"), data.get("progress"), data.get("scenario")
        return cls(
            variant=VariantSpec.from_dict(data["variant"]), model=ModelRef(**data["model"]),
            workload=Workload.from_dict(data["workload"]), cache_dir=Path(data["cache_dir"]),
            device=str(data["device"]), out_dir=Path(data["out_dir"]),
            settings=dict(data.get("settings", {})), rounds=int(data["rounds"]),
            auto=AutoRounds.from_dict(data["auto"]), warmup=int(data["warmup"]),
            warmup_steps=data.get("warmup_steps"), memray_capture=Path(memray) if memray else None,
            measure_peak=bool(data.get("measure_peak")),
            machine_cpus=tuple(int(c) for c in data.get("machine_cpus", ())),
            progress=Path(progress) if progress else None,
            scenario=Scenario.from_dict(scenario) if scenario else None,
        )


@dataclass(frozen=True)
class WorkerResult:
    """What a worker wrote: ``status`` ok (the figures), skip (``reason``) or error (``error``,
    a traceback). ``machine_peak``: GEMM peaks by dtype, when the request asked for them."""

    status: str
    reason: str = ""
    error: str = ""
    build_s: float = 0.0
    latency: LatencyStats | None = None
    memory: MemoryStats | None = None
    images: tuple[Path, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    latents_sha256: str = ""
    device: str = "cpu"
    efficiency: Mapping[str, Any] = field(default_factory=dict)
    machine_peak: Mapping[str, Any] = field(default_factory=dict)
    throughput: LatencyStats | None = None  # a LoadGen run's seconds per image (Bench.throughput)

    @classmethod
    def skipped(cls, reason: str) -> WorkerResult:
        """The variant cannot run here."""
        return cls(SKIP, reason=reason)

    @classmethod
    def failed(cls, error: str) -> WorkerResult:
        """The variant raised (``error``: the traceback)."""
        return cls(ERROR, error=error)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``result.json``."""
        return {
            "status": self.status, "reason": self.reason, "error": self.error,
            "build_s": self.build_s,
            "latency": self.latency.to_dict() if self.latency else None,
            "memory": self.memory.to_dict() if self.memory else None,
            "images": [str(p) for p in self.images], "info": dict(self.info),
            "environment": dict(self.environment), "latents_sha256": self.latents_sha256,
            "device": self.device, "efficiency": dict(self.efficiency),
            "machine_peak": dict(self.machine_peak),
            "throughput": self.throughput.to_dict() if self.throughput else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerResult:
        """The inverse of ``to_dict``."""
        latency, memory = data.get("latency"), data.get("memory")
        return cls(
            status=str(data["status"]), reason=str(data.get("reason", "")),
            error=str(data.get("error", "")), build_s=float(data.get("build_s") or 0.0),
            latency=LatencyStats.from_dict(latency) if latency else None,
            memory=MemoryStats.from_dict(memory) if memory else None,
            images=tuple(Path(p) for p in data.get("images", ())),
            info=dict(data.get("info") or {}), environment=dict(data.get("environment") or {}),
            latents_sha256=str(data.get("latents_sha256", "")), device=str(data.get("device", "cpu")),
            efficiency=dict(data.get("efficiency") or {}),
            machine_peak=dict(data.get("machine_peak") or {}),
            throughput=LatencyStats.from_dict(data["throughput"]) if data.get("throughput") else None,
        )
