"""Per-session state: settings, registry, model, baselines, and the records for the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .baselines import BaselineStore
from .config import AUTO_HALFWIDTH, AUTO_MAX_ROUNDS, AUTO_MIN_ROUNDS, Settings
from .host import package_versions, python_version, usable_cpus
from .machine import Machine, this_machine
from .measure.efficiency import against_peak
from .measure.latency import LatencyStats
from .measure.memory import MemoryStats
from .measure.peak import GemmPeak, MachinePeak, cpu_peak
from .runner import WorkerOutcome, run_worker
from .variants.availability import cuda_available, unavailable_reason
from .variants.base import ModelRef
from .variants.registry import VariantRegistry, VariantSpec
from .workload import Workload

REFERENCE_VARIANT = "torch-fp32"
REPORTED_PACKAGES = (
    "pytest-sdperf", "torch", "diffusers", "transformers", "openvino", "optimum-intel",
    "nncf", "numpy", "memray",
)


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

    @classmethod
    def from_result(cls, spec: VariantSpec, model: ModelRef, wl: Workload, res: Mapping[str, Any]) -> Measurement:
        """Build from a worker's result JSON."""
        return cls(
            variant=spec.name,
            model_key=model.key,
            workload=wl,
            latency=LatencyStats.from_dict(res["latency"]),
            memory=MemoryStats.from_dict(res["memory"]),
            images=tuple(Path(p) for p in res["images"]),
            info=res.get("info", {}),
            environment=res.get("environment", {}),
            build_s=float(res["build_s"]),
            latents_sha256=res["latents_sha256"],
            device=res.get("device", "cpu"),
            efficiency=res.get("efficiency") or {},
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

    def __getattr__(self, name: str) -> Any:
        import pytest

        pytest.fail(self.message, pytrace=False)


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
    samples: tuple[float, ...] = ()
    images: tuple[str, ...] = ()  # the PNGs the worker wrote (in the test's tmp_path)
    reference_images: tuple[str, ...] = ()  # the reference PNGs they were compared with
    efficiency: Mapping[str, Any] = field(default_factory=dict)  # see measure/efficiency.py


class SdperfState:
    """Lives in ``config.stash``; the fixtures and hooks talk to it."""

    def __init__(self, settings: Settings, registry: VariantRegistry, rootdir: Path) -> None:
        self.settings = settings
        self.registry = registry
        self.rootdir = rootdir
        self.records: list[Record] = []
        self.selected: list[VariantSpec] = []
        self._machine: Machine | None = None
        self._store: BaselineStore | None = None
        self._model: ModelRef | None = None
        self.written: list[Path] = []
        self.notes: list[str] = []
        self._peak: MachinePeak | None = None

    @property
    def machine(self) -> Machine:
        """This machine's facts (read once)."""
        if self._machine is None:
            self._machine = this_machine()
        return self._machine

    @property
    def peak(self) -> MachinePeak:
        """The machine's FLOP/s limit: theoretical (read once) and, once a worker measured it, GEMM."""
        if self._peak is None:
            self._peak = MachinePeak(cpu_peak())
        return self._peak

    def _take_peak(self, result: Mapping[str, Any]) -> None:
        measured = result.get("machine_peak")
        if measured and not self.peak.measured:
            gemm = {k: GemmPeak(**v) for k, v in measured.items()}
            self._peak = MachinePeak(self.peak.theoretical, gemm)

    def efficiency(self, m: Measurement) -> dict[str, Any]:
        """``m``'s efficiency figures set against the machine's peak for its device and dtype."""
        if not m.efficiency:
            return {}
        return against_peak(m.efficiency, self.peak, m.device, str(m.info.get("dtype") or "float32"))

    @property
    def store(self) -> BaselineStore:
        """The baseline file for this machine key."""
        if self._store is None:
            key = self.settings.machine_key or self.machine.key
            self._store = BaselineStore(self.settings.baselines_dir, key)
        return self._store

    @property
    def foreign_baseline(self) -> bool:
        """True when --sdperf-machine-key points at another machine's baseline file."""
        return self.store.machine_key != self.machine.key

    def other_keys(self) -> list[str]:
        """Machine keys that have baseline files here, other than this machine's."""
        return sorted(
            p.stem for p in self.settings.baselines_dir.glob("*.json")
            if ".obtained" not in p.name and p.stem != self.machine.key
        )

    def model(self) -> ModelRef:
        """The source model, resolved (and the tiny one built) on first use."""
        if self._model is None:
            from .models.source import resolve_model

            s = self.settings
            self._model = resolve_model(s.model, s.cache_dir, s.allow_pickle)
        return self._model

    def device(self) -> str:
        """The torch device variants run on."""
        if self.settings.device == "auto":
            return "cuda" if cuda_available() else "cpu"
        return self.settings.device

    def skip_reason(self, spec: VariantSpec) -> str | None:
        """Why this variant cannot run here, checking each part of a composition."""
        parts = [self.registry.get(p) for p in spec.parts] if spec.parts else [spec]
        for part in parts:
            reason = unavailable_reason(part)
            if reason:
                return reason
        if spec.needs_cuda and not self.device().startswith("cuda"):
            return f"variant {spec.name} needs a CUDA GPU (--sdperf-device is {self.settings.device})"
        return None

    def run(
        self, spec: VariantSpec, wl: Workload, workdir: Path, rounds: int | None = None,
        warmup: int | None = None, memray_capture: Path | None = None,
        extra_settings: Mapping[str, str] | None = None, warmup_steps: int | None = None,
        target: Mapping[str, Any] | None = None,
    ) -> WorkerOutcome:
        """Measure one variant in a worker process (``extra_settings`` add to --sdperf-set).

        ``warmup_steps``: steps of the untimed first and warm-up calls (a protocol's).
        ``target``: with auto rounds, the baseline to sample towards (Gate.latency_target).
        """
        s = self.settings
        request = {
            "variant": spec.to_dict(),
            "model": self.model().to_dict(),
            "workload": wl.to_dict(),
            "cache_dir": str(s.cache_dir),
            "device": self.device(),
            "settings": {**dict(s.sets), **dict(extra_settings or {})},
            "rounds": s.rounds if rounds is None else rounds,
            "auto": {"min_rounds": AUTO_MIN_ROUNDS, "max_rounds": AUTO_MAX_ROUNDS,
                     "halfwidth": AUTO_HALFWIDTH, "budget_s": s.time_budget_s,
                     "target": dict(target) if target else None},
            "warmup": s.warmup if warmup is None else warmup,
            "warmup_steps": warmup_steps,
            "out_dir": str(workdir / "images"),
            "memray_capture": str(memray_capture) if memray_capture else None,
            "measure_peak": not self.peak.measured,
            "machine_cpus": sorted(usable_cpus()),
            "reference": self._paired_reference(spec),
        }
        outcome = run_worker(request, workdir, s.timeout_s, spec.env, s.hang_floor_s)
        self._take_peak(outcome.result)
        return outcome

    def _paired_reference(self, spec: VariantSpec) -> dict[str, Any] | None:
        """The reference variant to time beside ``spec`` in its worker (``--sdperf-gate paired``)."""
        s = self.settings
        if s.gate_mode != "paired" or spec.name == s.reference_variant:
            return None
        return self.reference_spec().to_dict()

    def header(self) -> dict[str, Any]:
        """Machine, environment, peak FLOP/s and the model note; baselines keep the first two."""
        environment = {**package_versions(REPORTED_PACKAGES), "python": python_version()}
        out = {"machine": self.machine.to_dict(), "environment": environment,
               "peak": self.peak.to_dict()}
        note = self.model_note()
        return {**out, "model_note": note} if note else out

    def model_note(self) -> str:
        """What the figures of this session's model mean, where they need saying (profiles)."""
        if self._model is None or self._model.kind != "profile":
            return ""
        from .models.profiles import QUALITY_NOTE

        return f"{self._model.profile}: {QUALITY_NOTE}"

    def reference_spec(self) -> VariantSpec:
        """The variant whose images are the reference."""
        return self.registry.get(self.settings.reference_variant)
