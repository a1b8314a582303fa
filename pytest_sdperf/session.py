"""Per-session state: settings, registry, model, baselines, and the records for the report."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from . import glibc_malloc, priors
from .against import OtherSide
from .atomic import atomic_write_bytes
from .baselines import BaselineError, BaselineStore
from .config import AUTO_HALFWIDTH, AUTO_MAX_ROUNDS, AUTO_MIN_ROUNDS, Settings, default_of
from .host import package_versions, python_version, source_commit, usable_cpus
from .later import Later
from .machine import Machine, this_machine
from .measure.efficiency import against_peak, compute_type
from .measure.peak import GemmPeak, MachinePeak, cpu_peak
from .measure.scenario import Scenario
from .models.ref import ModelRef
from .noise import session_scale
from .pairing import DISTURBED_FACTOR, ReferencePool
from .protocol import AutoRounds, AutoTarget, WorkerRequest
from .results import Measurement, Record, WorkerFailure
from .runner import DrivenWorker, WorkerOutcome, run_worker, worker_env
from .variants.availability import cuda_available, unavailable_reason
from .variants.registry import VariantRegistry, VariantSpec
from .workload import Workload
from .zygote import Zygote

__all__ = ["Measurement", "Record", "SdperfState", "WorkerFailure", "package_versions"]  # old homes

REFERENCE_VARIANT: str = default_of("reference_variant")
IR_REFERENCE = "ov-fp32"  # the reference on an OpenVINO IR folder (no PyTorch model there)
REPORTED_PACKAGES = (
    "pytest-sdperf", "torch", "diffusers", "transformers", "openvino", "optimum-intel",
    "nncf", "numpy", "memray",
)




class SdperfState:
    """Lives in ``config.stash``; the fixtures and hooks talk to it."""

    def __init__(self, settings: Settings, registry: VariantRegistry, rootdir: Path) -> None:
        self.settings = settings
        # Before any worker (or the fork server) inherits the environment; withdrawn in close().
        self._glibc_env = glibc_malloc.apply(settings.glibc_malloc) if settings.enabled else ()
        self.registry = registry
        self.rootdir = rootdir
        self.records: list[Record] = []
        self.selected: list[VariantSpec] = []
        self._machine: Machine | None = None
        self._store: BaselineStore | None = None
        self._model: ModelRef | None = None
        self.written: list[Path] = []
        self.notes: list[str] = []
        self.latency_checks = 1  # benchmark tests selected (each one latency check; interval.suite_z)
        self._peak: MachinePeak | None = None
        self.references = ReferencePool()
        self._probe_noted: set[str] = set()  # reference keys whose disagreeing probe is in notes
        self._model_bytes: int | None = None  # the model folder's size, walked once
        self.calibrate_paired = False  # the validation harness: paired rounds calibrated too
        self._zygote: Zygote | None = None
        self.durations: dict[str, float] = {}  # test id -> seconds (setup, call, teardown)
        self.shard: dict[str, Any] | None = None  # --sdperf-shard: its tests (plugin's collection)
        self.commit = source_commit(rootdir) if settings.enabled else None
        self.against: OtherSide | None = None  # --sdperf-against: the other interpreter, probed
        self._learnt: dict[tuple[str, str], float] | None = None  # priors.learn of the baseline file
        self.later = Later()  # suspects confirmed at the session's end (later.py)
        self.started = time.monotonic()  # the summary's time line (report.time_line)

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

    def fork_server(self) -> Zygote | None:
        """The session's fork server (``zygote.Zygote``; its process starts when first needed),
        or None with ``--sdperf-fork-server off``."""
        if not self.settings.fork_server:
            return None
        if self._zygote is None:
            self._zygote = Zygote(worker_env({}))
        return self._zygote

    def start_fork_server(self) -> None:
        """Start the fork server's imports now, in the background, where a worker of the
        selected variants (or the paired reference) may be forked from it."""
        server = self.fork_server()
        if server is None:
            return
        paired = [self.reference_spec()] if self.settings.gate_mode == "paired" else []
        if any(not server.why_spawned(spec, worker_env(spec.env)) for spec in [*self.selected, *paired]):
            server.start()

    def _take_peak(self, outcome: WorkerOutcome) -> None:
        measured = outcome.measured.machine_peak if outcome.measured else None
        if measured and not self.peak.measured:
            gemm = {k: GemmPeak(**v) for k, v in measured.items()}
            self._peak = MachinePeak(self.peak.theoretical, gemm)

    def efficiency(self, m: Measurement) -> dict[str, Any]:
        """``m``'s efficiency figures set against the machine's peak for its device and dtype."""
        if not m.efficiency:
            return {}
        return against_peak(m.efficiency, self.peak, m.device, compute_type(m.info))

    def noise_scale(self) -> float:
        """This session's factor on each test's between-session term, from the round spreads
        of the tests judged so far against their recordings' (noise.py)."""
        return session_scale((r.round_spread_pct, r.baseline_round_spread_pct) for r in self.records)

    def priors(self, spec: VariantSpec) -> dict[str, float]:
        """The between-session spreads learnt from this machine's baseline file for ``spec``'s
        family, per session figure (``priors.py``; learnt once, from the file as it was read:
        this session's own writes do not move it); {} where the file cannot be read."""
        if self._learnt is None:
            try:
                entries = self.store.entries()
            except BaselineError:
                entries = {}
            self._learnt = priors.learn(entries, self.registry.family_of)
        return priors.for_family(self._learnt, spec.family)

    @property
    def store(self) -> BaselineStore:
        """The baseline file for this machine key."""
        if self._store is None:
            key = self.settings.machine_key or self.machine.key
            shard = self.settings.shard
            self._store = BaselineStore(self.settings.baselines_dir, key, shard.tag if shard else "")
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
            if self.reference_name() != s.reference_variant:
                self.notes.append(
                    f"reference: {IR_REFERENCE}, not {s.reference_variant}: --sdperf-model is an "
                    "OpenVINO IR folder, where PyTorch variants cannot run; reference images, the "
                    f"paired reference and speedups are {IR_REFERENCE}'s")
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
        target: AutoTarget | None = None, scenario: Scenario | None = None,
        reference_workload: Workload | None = None, instances: int = 0,
    ) -> WorkerOutcome:
        """Measure one variant in a worker process (``extra_settings`` add to --sdperf-set).

        ``warmup_steps``: steps of the untimed first and warm-up calls (a protocol's).
        ``target``: with auto rounds, the baseline to sample towards (Gate.latency_target).
        ``scenario``: a LoadGen scenario the variant's worker runs after its rounds.
        ``reference_workload``: the paired reference's, where it differs from ``wl`` (a batch
        sweep's points: each against the reference at the test's own workload, one worker).
        ``instances``: that many workers of the variant, each pinned to its share of the CPUs,
        driven as one (instances.py; the sweep's ``instances`` axis).
        """
        s = self.settings
        request = WorkerRequest(
            variant=spec, model=self.model(), workload=wl, cache_dir=s.cache_dir,
            device=self.device(), out_dir=workdir / "images",
            settings={**s.fixed_sets(), **dict(extra_settings or {})},
            rounds=s.rounds if rounds is None else rounds,
            auto=AutoRounds(AUTO_MIN_ROUNDS, AUTO_MAX_ROUNDS, AUTO_HALFWIDTH, s.time_budget_s, target),
            warmup=s.warmup if warmup is None else warmup, warmup_steps=warmup_steps,
            memray_capture=memray_capture, measure_peak=not self.peak.measured,
            machine_cpus=tuple(sorted(usable_cpus())), scenario=scenario,
        )
        if instances:
            outcome = self._run_instances(request, workdir, reference_workload or wl, instances)
        elif self.against is not None:
            outcome = self._run_against(request, workdir, self.against)
        elif s.gate_mode != "paired" or spec.name == self.reference_name():
            outcome = run_worker(request, workdir, s.timeout_s, spec.env, s.hang_floor_s,
                                 self.fork_server())
        else:
            outcome = self._run_paired(request, workdir, reference_workload or wl)
        self._take_peak(outcome)
        return outcome

    def _run_instances(self, request: WorkerRequest, workdir: Path, ref_wl: Workload,
                       instances: int) -> WorkerOutcome:
        """``request`` as ``instances`` pinned workers driven as one: paired with the reference
        as any variant is (paired gating, not the reference itself), else each round calibrated."""
        from .pairing import measure_paired

        s = self.settings
        if s.gate_mode == "paired" and request.variant.name != self.reference_name():
            return self._run_paired(request, workdir, ref_wl, instances)
        return measure_paired(request, workdir, s.timeout_s, request.variant.env, s.hang_floor_s,
                              lambda: "instances measured alone", lambda why: None,
                              instances=instances).outcome

    def _run_paired(self, request: WorkerRequest, workdir: Path, ref_wl: Workload,
                    instances: int = 0) -> WorkerOutcome:
        """``request`` measured beside the session's reference worker for workload ``ref_wl``
        (see pairing.py); where it could not be paired, the result's info and the notes say why."""
        from .pairing import measure_paired

        s = self.settings
        key = f"{request.model.key}/{ref_wl.key()}/{request.warmup_steps}"
        ref_request = dataclasses.replace(
            request, variant=self.reference_spec(), workload=ref_wl, settings=s.fixed_sets(), rounds=0,
            memray_capture=None, measure_peak=False, scenario=None)

        def reference() -> Any:
            return self.references.get(key, ref_request, s.timeout_s, s.hang_floor_s,
                                       self._expected_reference_peak(), self.fork_server())

        yardstick, yard_key = self._yardstick(request, ref_request, key, instances)

        # A recording under auto rounds (the entry later sessions are compared with) is made in
        # the representative of two or three processes of the variant (replicas.py).
        recording = request.rounds == 0 and request.auto.target is None
        replicas = recording and not instances and request.memray_capture is None
        paired = measure_paired(request, workdir, s.timeout_s, request.variant.env, s.hang_floor_s,
                                reference, lambda why: self.references.drop(key, why),
                                self.fork_server(), self.calibrate_paired, instances, replicas,
                                yardstick, lambda why: self.references.drop(yard_key, why))
        probe = self.references.probes.get(key)
        if probe is not None and not probe.agreed and key not in self._probe_noted:
            self._probe_noted.add(key)
            self.notes.append(probe.note(f"the paired reference {self.reference_name()}"))
        if paired.processes:
            self.notes.append(paired.processes)
        if paired.yardstick_note:
            self.notes.append(f"{request.variant.name}: {paired.yardstick_note}")
        result = paired.outcome.measured
        if result is None:
            return paired.outcome
        if paired.note:
            self.notes.append(f"{request.variant.name}: not paired: {paired.note}")
            info = {**result.info, "unpaired": paired.note}
        else:
            info = {**result.info, "paired_with": {
                "variant": self.reference_name(), "pid": paired.reference_pid,
                **({"processes": probe.to_dict()} if probe is not None else {})}}
            if result.latency is not None and result.latency.yardstick_variant:
                info["yardstick"] = result.latency.yardstick_variant
            elif paired.yardstick_note:
                info["yardstick_unavailable"] = paired.yardstick_note
        if paired.disturbed:
            info["disturbed_rounds"] = paired.disturbed
            self.notes.append(
                f"{request.variant.name}: {paired.disturbed} paired round(s) had one side over "
                f"{DISTURBED_FACTOR:g}x its median: other work on the machine? The median of the "
                "per-round ratios discounts a few; many make the comparison unreliable")
        return dataclasses.replace(paired.outcome, result=dataclasses.replace(result, info=info))

    def _yardstick(self, request: WorkerRequest, ref_request: WorkerRequest, key: str,
                   instances: int) -> tuple[Callable[[], DrivenWorker | str] | None, str]:
        """The variant's yardstick worker (``VariantSpec.yardstick``) as ``measure_paired`` asks
        for it, kept alive in the reference pool under its own key, and that key; None where the
        variant names none, is the session's reference, or runs as several instances (their
        rounds are of another shape)."""
        name = request.variant.yardstick
        if not name or name == self.reference_name() or instances:
            return None, ""
        spec = self.registry.get(name)  # VariantError names a yardstick that is not registered
        yard_key = f"yardstick:{name}/{key}"
        yard_request = dataclasses.replace(ref_request, variant=spec)
        why = self.skip_reason(spec)

        def yardstick() -> DrivenWorker | str:
            if why:
                return f"its yardstick {name} cannot run here ({why})"
            return self.references.get(yard_key, yard_request, self.settings.timeout_s,
                                       self.settings.hang_floor_s, self._expected_reference_peak(),
                                       self.fork_server(), role="yardstick")

        return yardstick, yard_key

    def _run_against(self, request: WorkerRequest, workdir: Path, other: OtherSide) -> WorkerOutcome:
        """``request`` measured here and, beside it (ABBA), by a worker of the same variant under
        the --sdperf-against interpreter, started for this test and closed after it."""
        from .pairing import measure_paired
        from .runner import DrivenWorker, WorkerGone

        s = self.settings
        started: list[DrivenWorker] = []
        there = dataclasses.replace(request, out_dir=workdir / "against" / "images", rounds=0,
                                    memray_capture=None, measure_peak=False,
                                    model=other.model or request.model)

        def other_side() -> DrivenWorker | str:
            worker = DrivenWorker(there, workdir / "against", s.timeout_s, request.variant.env,
                                  s.hang_floor_s, None, python=other.python)
            started.append(worker)
            try:
                worker.start()
            except WorkerGone as gone:
                why = gone.outcome.skip_reason or gone.outcome.failure_text(
                    request.variant.name, s.timeout_s).split("\n", 1)[0]
                return f"it could not run under {other.python}: {why}"
            return worker

        try:
            paired = measure_paired(request, workdir, s.timeout_s, request.variant.env, s.hang_floor_s,
                                    other_side, lambda why: None, self.fork_server())
        finally:
            for worker in started:
                worker.close()
        result = paired.outcome.measured
        if result is None:
            return paired.outcome
        info: dict[str, Any] = {**result.info, "against": {**other.to_dict(), "pid": paired.reference_pid}}
        if paired.note:
            info["unpaired"] = paired.note
        if paired.disturbed:
            info["disturbed_rounds"] = paired.disturbed
        return dataclasses.replace(paired.outcome, result=dataclasses.replace(result, info=info))

    def against_differences(self) -> str:
        """The packages that differ between here and the --sdperf-against interpreter."""
        if self.against is None:
            return ""
        here = {**package_versions(REPORTED_PACKAGES), "python": python_version()}
        moved = self.against.differences(here)
        return ", ".join(f"{k} {a} here, {b} there" for k, (a, b) in moved.items()) or "the same packages"

    def _expected_reference_peak(self) -> int | None:
        """The reference variant's peak RSS measured this session, else twice the model's files
        (float16 weights loaded as float32), for the pairing's memory check."""
        seen = [int(r.memory.get("peak_rss") or 0) for r in self.records
                if r.variant == self.reference_name()]
        if seen and max(seen) > 0:
            return max(seen)
        if self._model_bytes is None:
            folder = Path(self.model().location)
            files = folder.rglob("*") if folder.is_dir() else ()
            self._model_bytes = sum(p.stat().st_size for p in files if p.is_file())
        return 2 * self._model_bytes or None

    def close(self) -> None:
        """End what the session keeps alive (the paired reference workers, then the fork
        server), noting what the fork server did; withdraw the malloc variables it set."""
        self.references.close()
        if self._zygote is not None:
            self._zygote.close()
            if note := self._zygote.note():
                self.notes.append(note)
        glibc_malloc.withdraw(self._glibc_env)
        self._glibc_env = ()

    def reference_paths(self, model_key: str, wl: Workload) -> list[Path]:
        """Where the FP32 reference images of this model and workload live."""
        folder = self.store.reference_dir(model_key)
        return [folder / f"{wl.key()}-{i}.png" for i in range(wl.images_per_prompt)]

    def write_references(self, images: tuple[Path, ...], refs: list[Path]) -> None:
        """Copy a reference variant's images into place as the reference (atomically)."""
        for src, dst in zip(images, refs, strict=True):
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dst, src.read_bytes())
        self.notes.append(f"reference images written: {refs[0].parent}")

    def ensure_references(self, wl: Workload, workdir: Path) -> WorkerFailure | None:
        """Make this workload's missing reference images by running the reference variant once;
        a WorkerFailure when it cannot (the test comparing with them then fails with it)."""
        model = self.model()
        refs = self.reference_paths(model.key, wl)
        if all(p.exists() for p in refs):
            return None
        spec = self.reference_spec()
        outcome = self.run(spec, wl, workdir / "reference", rounds=1, warmup=0)
        if outcome.measured is None:
            return WorkerFailure("could not make the FP32 reference image:\n"
                                 + outcome.failure_text(spec.name, self.settings.timeout_s))
        self.write_references(outcome.measured.images, refs)
        return None

    def header(self) -> dict[str, Any]:
        """Machine, environment, peak FLOP/s and the model note; baselines keep the first two."""
        environment = {**package_versions(REPORTED_PACKAGES), "python": python_version()}
        out: dict[str, Any] = {"machine": self.machine.to_dict(), "environment": environment,
                               "peak": self.peak.to_dict()}
        if self.commit:
            out["commit"] = self.commit
        if self.shard is not None:
            out["shard"] = self.shard
        if self.against is not None:
            here = {**package_versions(REPORTED_PACKAGES), "python": python_version()}
            out["against"] = {**self.against.to_dict(), "differences": {
                k: {"here": a, "there": b} for k, (a, b) in self.against.differences(here).items()}}
        if self._model is not None:
            out["reference_variant"] = self.reference_name()
        note = self.model_note()
        return {**out, "model_note": note} if note else out

    def model_note(self) -> str:
        """What the figures of this session's model mean, where they need saying (profiles)."""
        if self._model is None or self._model.kind != "profile":
            return ""
        from .models.profiles import QUALITY_NOTE

        return f"{self._model.profile}: {QUALITY_NOTE}"

    def reference_spec(self) -> VariantSpec:
        """The variant whose images are the reference (see ``reference_name``)."""
        return self.registry.get(self.reference_name())

    def reference_name(self) -> str:
        """The reference variant: --sdperf-reference (torch-fp32 by default), except that on an
        OpenVINO IR folder, where no PyTorch variant can run, a PyTorch reference falls back to
        ``IR_REFERENCE`` (said in the summary's notes and in the JSON's header). Before the
        model is resolved (no test has measured yet) it is the option's."""
        name = self.settings.reference_variant
        if self._model is None or self._model.kind != "openvino" \
                or self.registry.get(name).backend != "torch":
            return name
        return IR_REFERENCE
