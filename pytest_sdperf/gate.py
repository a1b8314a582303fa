"""The gate a benchmark test calls: compare a Measurement with its baseline and reference.

Follows pytest-regressions' cycle: a missing entry or reference image is written and the
test fails; ``--sdperf-update`` rewrites failing entries (they still fail); ``--sdperf-update-all``
rewrites every entry and passes. What a failing test measured is saved beside the baseline.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import pytest

from .atomic import atomic_write_bytes
from .baselines import BaselineError, entry_key, model_label
from .compare import Check
from .judge import Figures, Verdict, judge
from .measure.latency import LatencyStats
from .measure.similarity import Similarity, compare_images, load_png
from .session import Measurement, Record, SdperfState, WorkerFailure
from .variants.registry import VariantSpec
from .worker import auto_target
from .workload import Thresholds, Workload


class SdperfInconclusive(UserWarning):
    """A latency comparison the samples could not decide."""


def _same_subject(entry: Mapping[str, Any], model_key: str, workload: Workload) -> bool:
    try:
        same_workload = Workload.from_dict(entry["workload"]).key() == workload.key()
    except (TypeError, KeyError):
        return False
    return same_workload and model_label(str(entry.get("model", ""))) == model_label(model_key)


@dataclass
class Gate:
    """Bound to one test: its id, thresholds from the marker, and the session state."""

    state: SdperfState
    test_id: str
    spec: VariantSpec
    marker_thresholds: Mapping[str, float]
    workdir: Path
    key: str = ""  # the baseline entry's key, set by check(): test id @ model / workload
    _legacy: bool = False  # the entry was found under the bare test id (an older file)

    def check(self, m: Measurement) -> Record:
        """Judge ``m``; fails the test (pytest.fail) on a regression or a new recording."""
        if isinstance(m, WorkerFailure):
            if m.variant:  # a worker that ran and failed is a row of the results (hung...)
                self.state.records.append(Record(
                    test_id=self.test_id, variant=m.variant, model_key=m.model_key,
                    workload_key=m.workload_key, verdict=m.status,
                    reason=m.message.split("\n", 1)[0]))
            pytest.fail(m.message, pytrace=False)
        try:
            entry = self._stored_entry(m.model_key, m.workload)
        except BaselineError as exc:
            if not self.state.settings.update_all:
                self._record(m, None, "error", str(exc))
                pytest.fail(str(exc), pytrace=False)
            entry = None
        if self.state.foreign_baseline:
            return self._check_foreign(m, entry)
        thresholds = self._thresholds(entry)
        problems: list[str] = []
        similarity = self._similarity(m, problems)
        record = self._record(m, similarity, "pass")
        new_entry = self._entry(m, similarity, thresholds)
        s = self.state.settings
        if entry is None or s.update_all:
            self._queue(new_entry)
            if entry is None and not s.update_all:
                others = self.state.other_keys()
                seen = f" (baselines exist for other machines: {', '.join(others)}; they are " \
                    "never compared silently, see --sdperf-machine-key)" if others else ""
                problems.append(f"no baseline entry for {self.key} in {self.state.store.path}: "
                                f"recorded now; run again to compare{seen}")
        verdict = self._verdict(m, entry, similarity, thresholds)
        regressions = verdict.regressions()
        record.detectable_pct = verdict.detectable_pct
        for c in verdict.inconclusive():
            record.verdict = "inconclusive"
            warnings.warn(SdperfInconclusive(f"{self.test_id}: {c.message()}"), stacklevel=2)
        if regressions:
            record.verdict = "regression"
            record.reason = "; ".join(c.message() for c in regressions)
            problems.extend(self._regression_text(m, regressions, new_entry))
        if s.update_all:
            record.verdict = "updated"
            return record
        if problems:
            if record.verdict == "pass":
                record.verdict = "recorded"
            pytest.fail("\n".join(problems), pytrace=False)
        return record

    def _stored_entry(self, model_key: str, workload: Workload) -> Mapping[str, Any] | None:
        """Sets ``self.key`` (test id @ model / workload) and gives the entry under it; else one
        under the bare test id (files written before entries were keyed by model and workload)
        when its model and workload are these. BaselineError when the file is damaged."""
        self.key = entry_key(self.test_id, model_key, workload.key())
        store = self.state.store
        entry = store.get(self.key)
        self._legacy = False
        if entry is None:
            old = store.get(self.test_id)
            if old is not None and _same_subject(old, model_key, workload):
                entry, self._legacy = old, True
        return entry

    def latency_target(self, model_key: str, workload: Workload) -> dict[str, Any] | None:
        """What ``--sdperf-rounds auto`` samples towards: the stored entry's latency, the gate
        mode and the limit, so the worker times rounds until the comparison is decided (see
        worker._more_rounds). None when there is nothing to compare with, or when re-recording."""
        s = self.state.settings
        if s.update_all:
            return None
        try:
            entry = self._stored_entry(model_key, workload)
            if entry is None:
                return None
            t = self._thresholds(entry)
            latency = LatencyStats.from_dict(entry["latency"]).to_dict()
        except (BaselineError, KeyError, TypeError, ValueError):
            return None  # check() reports a broken entry, with its file
        mode = "relative" if self.state.foreign_baseline else s.gate_mode
        return auto_target(mode, latency, t.latency_pct, s.reference_variant)

    def _queue(self, new_entry: Mapping[str, Any]) -> None:
        self.state.store.queue(self.key, new_entry)
        if self._legacy:
            self.state.store.retire(self.test_id)

    def _check_foreign(self, m: Measurement, entry: Mapping[str, Any] | None) -> Record:
        """Against another machine's file: calibration-relative latency and similarity only."""
        store, here = self.state.store, self.state.machine.key
        if entry is None:
            pytest.skip(f"no entry for {self.key} in {store.path} (machine key "
                        f"{store.machine_key}; this machine is {here})")
        t = self._thresholds(entry)
        stored = LatencyStats.from_dict(entry["latency"])
        cur, base = m.latency.relative(), stored.relative()
        if not (cur and base):
            pytest.skip(f"baseline of machine {store.machine_key} has no calibration samples; "
                        f"this machine ({here}) cannot be compared with it by ratio")
        if stored.kernel() != m.latency.kernel():
            pytest.skip(f"baseline of machine {store.machine_key} was calibrated with "
                        f"{stored.kernel()}, this run with {m.latency.kernel()}: their ratios "
                        "do not compare; re-record that machine's file with --sdperf-update-all")
        problems: list[str] = []
        sim = self._similarity(m, problems)
        current = Figures(m.latency, {}, sim.ssim if sim else None, sim.psnr if sim else None)
        verdict = judge(current, Figures(stored), t, "relative")  # no memory across machines
        failed = [replace(c, metric=f"latency ratio (relative, vs machine {store.machine_key})")
                  if c.metric.startswith("latency") else c for c in verdict.regressions()]
        record = self._record(m, sim, "pass")
        if failed:
            record.verdict, record.reason = "regression", "; ".join(c.message() for c in failed)
            pytest.fail("\n".join([f"sdperf regression in {self.test_id} against {store.path} "
                                   f"(another machine: {store.machine_key}):",
                                   *(f"  {c.message()}" for c in failed)]), pytrace=False)
        return record

    def _thresholds(self, entry: Mapping[str, Any] | None) -> Thresholds:
        """Defaults < the variant's < the baseline entry's (hand edits) < the marker's."""
        stored = entry["thresholds"] if entry is not None else {}
        return Thresholds().merged(self.spec.thresholds).merged(stored).merged(self.marker_thresholds)

    def _verdict(
        self, m: Measurement, entry: Mapping[str, Any] | None, sim: Similarity | None, t: Thresholds
    ) -> Verdict:
        """The judge's verdict on ``m`` against ``entry`` in the session's gate mode."""
        s = self.state.settings
        stored = None if entry is None else Figures(LatencyStats.from_dict(entry["latency"]), entry["memory"])
        current = Figures(m.latency, m.memory.to_dict(), sim.ssim if sim else None, sim.psnr if sim else None)
        return judge(current, stored, t, s.gate_mode, s.reference_variant)

    def _regression_text(
        self, m: Measurement, regressions: list[Check], new_entry: Mapping[str, Any]
    ) -> list[str]:
        store, s = self.state.store, self.state.settings
        store.queue_obtained(self.key, new_entry)
        kept = self._keep_obtained_images(m)
        lines = [f"sdperf regression in {self.test_id} (variant {m.variant}):"]
        lines += [f"  {c.message()}" for c in regressions]
        lines.append(f"  baseline: {store.path}")
        lines.append(f"  obtained: {store.obtained_path}" + (f", images {kept}" if kept else ""))
        if s.update and not s.update_all:
            self._queue(new_entry)
            lines.append("  --sdperf-update: the baseline entry was rewritten with these figures")
            if m.variant == s.reference_variant and any(c.metric in ("SSIM", "PSNR") for c in regressions):
                self._write_references(m, self.reference_paths(m))
                lines.append("  --sdperf-update: the reference images were rewritten too")
        else:
            lines.append("  if the change is intended: rerun with --sdperf-update")
        return lines

    def _keep_obtained_images(self, m: Measurement) -> str:
        target = self.state.store.directory / f"{self.state.machine.key}.obtained"
        target.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "_", self.test_id)
        for i, img in enumerate(m.images):
            shutil.copyfile(img, target / f"{safe}-{i}.png")
        return str(target / f"{safe}-*.png") if m.images else ""

    def _similarity(self, m: Measurement, problems: list[str]) -> Similarity | None:
        refs = self.reference_paths(m)
        s = self.state.settings
        is_reference = m.variant == s.reference_variant
        if is_reference and (s.update_all or not all(p.exists() for p in refs)):
            existed = all(p.exists() for p in refs)
            self._write_references(m, refs)
            if not existed and not s.update_all:
                problems.append(f"no FP32 reference image for {m.model_key}/{m.workload.key()}: "
                                f"written to {refs[0].parent}; run again to compare")
        elif not all(p.exists() for p in refs):
            self._make_references(m, refs)
        obtained = [load_png(p) for p in m.images]
        return compare_images(obtained, [load_png(p) for p in refs])

    def reference_paths(self, m: Measurement) -> list[Path]:
        """Where the FP32 reference images of this model and workload live."""
        folder = self.state.store.reference_dir(m.model_key)
        return [folder / f"{m.workload.key()}-{i}.png" for i in range(m.workload.images_per_prompt)]

    def _write_references(self, m: Measurement, refs: list[Path]) -> None:
        for src, dst in zip(m.images, refs, strict=True):
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dst, src.read_bytes())
        self.state.notes.append(f"reference images written: {refs[0].parent}")

    def _make_references(self, m: Measurement, refs: list[Path]) -> None:
        """Run torch-fp32 once for this workload to produce the missing reference."""
        spec = self.state.reference_spec()
        outcome = self.state.run(spec, m.workload, self.workdir / "reference", rounds=1, warmup=0)
        if outcome.status != "ok":
            pytest.fail("could not make the FP32 reference image:\n"
                        + outcome.failure_text(spec.name, self.state.settings.timeout_s), pytrace=False)
        self._write_references(
            Measurement.from_result(spec, self.state.model(), m.workload, outcome.result), refs)

    def _entry(self, m: Measurement, sim: Similarity | None, t: Thresholds) -> dict[str, Any]:
        return {
            "variant": m.variant,
            "model": m.model_key,
            "workload": m.workload.to_dict(),
            "latency": m.latency.to_dict(),
            "memory": m.memory.to_dict(),
            "similarity": sim.to_dict() if sim else None,
            "thresholds": t.to_dict(),
            "info": dict(m.info),
            "build_s": m.build_s,
            "recorded": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def _record(self, m: Measurement, sim: Similarity | None, verdict: str, reason: str = "") -> Record:
        record = Record(
            test_id=self.test_id, variant=m.variant, model_key=m.model_key,
            workload_key=m.workload.key(), verdict=verdict, p50_s=m.latency.p50,
            p90_s=m.latency.p90, first_call_s=m.latency.first_call_s,
            memory=m.memory.to_dict(), ssim=sim.ssim if sim else None,
            psnr=sim.to_dict()["psnr"] if sim else None, info=dict(m.info), reason=reason,
            samples=m.latency.samples, images=tuple(str(p) for p in m.images),
            reference_images=tuple(str(p) for p in self.reference_paths(m)),
            efficiency=self.state.efficiency(m),
        )
        self.state.records.append(record)
        return record
