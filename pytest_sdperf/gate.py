"""The gate a benchmark test calls: compare a Measurement with its baseline and reference.

Follows pytest-regressions' ``perform_regression_check``: look up the stored entry, call the
judge (``judge.judge``), perform the writes the verdict calls for, and turn the outcome into
pass / fail / warning in one place (``Gate._conclude``). A missing entry or reference image is
written and the test passes with a warning ("recorded"; ``--sdperf-strict`` fails it, and an
inconclusive comparison too); ``--sdperf-update`` rewrites failing entries (they still fail);
``--sdperf-update-all`` rewrites every entry and passes. What a failing test measured is saved
beside the baseline. Making a missing reference image (running the reference variant) is the
measurement fixture's job (``SdperfState.ensure_references``), not the gate's.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, NoReturn

import pytest

from . import glibc_malloc
from .baselines import BaselineEntry, BaselineError, entry_key, limits_for, model_label
from .compare import PASS, Check, compare_latency, stage_changes
from .config import BASELINE_SESSIONS
from .judge import Figures, Verdict, judge, verdict_of
from .measure.latency import LatencyStats
from .measure.scenario import ScenarioResult
from .measure.similarity import Similarity, compare_images, load_png
from .protocol import AutoTarget
from .results import Measurement, Record, WorkerFailure
from .session import SdperfState
from .variants.registry import VariantSpec
from .workload import Thresholds, Workload


class SdperfInconclusive(UserWarning):
    """A latency comparison the samples could not decide."""


class SdperfRecorded(UserWarning):
    """A baseline entry or reference image that was missing, written now (the test passes)."""


@dataclass(frozen=True)
class Stored:
    """A test's baseline entry as looked up: its key, the entry (None: nothing stored) and
    whether it was found under the bare test id of an older file (``legacy``)."""

    key: str
    entry: BaselineEntry | None
    legacy: bool = False
    #: why the entry's latency and memory do not compare with this run's (measured under another
    #: glibc malloc setting, ``glibc_malloc.py``): the run records the entry again; "": they do
    stale: str = ""


@dataclass
class _Outcome:
    """What one check concluded, before it is turned into the test's result."""

    verdict: str = "pass"
    reason: str = ""
    problems: list[str] = field(default_factory=list)  # each fails the test
    recordings: list[str] = field(default_factory=list)  # what was missing and is written now


def _same_subject(entry: BaselineEntry, model_key: str, workload: Workload) -> bool:
    try:
        same_workload = Workload.from_dict(entry.workload).key() == workload.key()
    except (TypeError, KeyError):
        return False
    return same_workload and model_label(entry.model) == model_label(model_key)


@dataclass
class Gate:
    """Bound to one test: its id, thresholds from the marker, and the session state."""

    state: SdperfState
    test_id: str
    spec: VariantSpec
    marker_thresholds: Mapping[str, float]
    workdir: Path

    def check(self, m: Measurement | WorkerFailure) -> Record:
        """Judge ``m``; fails the test (pytest.fail) on a regression or a new recording."""
        if isinstance(m, WorkerFailure):
            self._fail_worker(m)
        s = self.state.settings
        try:
            stored = self.lookup(m.model_key, m.workload)
        except BaselineError as exc:
            if not s.update_all:
                self.state.records.append(self._record(m, None, _Outcome("error", str(exc))))
                pytest.fail(str(exc), pytrace=False)
            stored = Stored(entry_key(self.test_id, m.model_key, m.workload.key()), None)
        if self.state.foreign_baseline:
            return self._check_foreign(m, stored)
        if self.state.against is not None:
            return self._check_against(m)
        stored = replace(stored, stale=_stale(stored.entry, glibc_malloc.recorded_mode(m.info)))
        t = self._thresholds(stored.entry)
        outcome = _Outcome()
        sim = self._similarity(m, outcome.recordings)
        current, previous = _figures(m, None if stored.stale else stored.entry, sim)
        verdict = judge(current, previous, t, s.gate_mode, self.state.reference_name(),
                        self.state.latency_checks, self.state.priors(self.spec), confirm=True,
                        noise_scale=self.state.noise_scale())
        new_entry = self._entry(m, sim, self._own_limits(stored.entry))
        if stored.entry is not None and stored.entry.throughput is None and m.throughput is not None:
            outcome.recordings.append(f"no throughput in baseline entry {stored.key} (recorded "
                                      "before its scenario ran or was gated): recorded now")
        _scenario_problems(m, outcome)
        _sweep_problems(m, stored.entry, outcome)
        _request_problems(m, outcome)
        return self._conclude(m, stored, verdict, new_entry, sim, outcome)

    def lookup(self, model_key: str, workload: Workload) -> Stored:
        """The entry under test id @ model / workload; else one under the bare test id (files
        written before entries were keyed by model and workload) when its model and workload
        are these. BaselineError when the file or the entry is damaged."""
        key = entry_key(self.test_id, model_key, workload.key())
        store = self.state.store
        entry = store.entry(key)
        if entry is None:
            old = store.entry(self.test_id)
            if old is not None and _same_subject(old, model_key, workload):
                return Stored(key, old, legacy=True)
        return Stored(key, entry)

    def latency_target(self, model_key: str, workload: Workload) -> AutoTarget | None:
        """What ``--sdperf-rounds auto`` samples towards: the stored entry's latency, the gate
        mode and the limit, so the worker times rounds until the comparison is decided (see
        rounds.more_rounds). None when there is nothing to compare with, or when re-recording:
        also where the variant's yardstick is missing from the entry (a passing run becomes its
        new recording, ``_adopt_yardstick``, so it samples as a recording does)."""
        s = self.state.settings
        if s.update_all or self.state.against is not None:
            return None
        try:
            entry = self.lookup(model_key, workload).entry
        except BaselineError:
            return None  # check() reports a broken entry, with its file
        if entry is None or self._adopting(entry) or _stale(entry, glibc_malloc.mode_of(os.environ)):
            return None
        mode = "relative" if self.state.foreign_baseline else s.gate_mode
        priors = {} if self.state.foreign_baseline else self.state.priors(self.spec)
        scale = 1.0 if self.state.foreign_baseline else self.state.noise_scale()
        return AutoTarget(mode, entry.latency, self._thresholds(entry).latency_pct,
                          self.state.reference_name(), self.state.latency_checks, priors, confirm=True,
                          noise_scale=scale)

    def _adopting(self, entry: BaselineEntry) -> bool:
        """Whether this test's variant has a yardstick the entry's rounds lack (paired gating)."""
        name, s = self.spec.yardstick, self.state.settings
        return bool(name) and s.gate_mode == "paired" and not self.state.foreign_baseline \
            and name != self.state.reference_name() and entry.latency.yardstick_variant != name

    def latency_suspect(self, m: Measurement) -> Check | None:
        """The latency (or a scenario's throughput) check of ``m`` against its baseline when it
        reads as a possible regression (compare.py's screen: the measurement fixture measures it
        again in fresh workers and the two readings are judged pooled), else None. Records and
        writes nothing."""
        verdict = self._latency_verdict(m)
        return None if verdict is None else verdict.suspect()

    def latency_again(self, m: Measurement) -> Check | None:
        """The check of ``m`` that has it measured again in fresh workers before its verdict: a
        suspect (``latency_suspect``), or a reading its rounds left undecided
        (``Verdict.undecided``: inconclusive where more rounds would have narrowed it); else
        None. Records and writes nothing."""
        verdict = self._latency_verdict(m)
        return None if verdict is None else verdict.suspect() or verdict.undecided()

    def _latency_verdict(self, m: Measurement) -> Verdict | None:
        """``m`` judged against its baseline entry as the gate will (None where it will not be
        compared on latency: updating, a foreign baseline, no entry, another malloc setting)."""
        s = self.state.settings
        if s.update_all or self.state.foreign_baseline or self.state.against is not None:
            return None
        try:
            entry = self.lookup(m.model_key, m.workload).entry
        except BaselineError:
            return None
        if entry is None or _stale(entry, glibc_malloc.recorded_mode(m.info)):
            return None
        current, stored = _figures(m, entry, None)
        return judge(current, stored, self._thresholds(entry), s.gate_mode,
                     self.state.reference_name(), self.state.latency_checks, self.state.priors(self.spec),
                     confirm=True, noise_scale=self.state.noise_scale())

    def _fail_worker(self, m: WorkerFailure) -> NoReturn:
        if m.variant:  # a worker that ran and failed is a row of the results (hung...)
            self.state.records.append(Record(
                test_id=self.test_id, variant=m.variant, model_key=m.model_key,
                workload_key=m.workload_key, verdict=m.status, reason=m.message.split("\n", 1)[0]))
        pytest.fail(m.message, pytrace=False)

    def _conclude(self, m: Measurement, stored: Stored, verdict: Verdict, new_entry: BaselineEntry,
                  sim: Similarity | None, outcome: _Outcome) -> Record:
        """Perform the writes the verdict calls for, record the row once, and pass, warn or fail."""
        s = self.state.settings
        if stored.entry is None or stored.stale or s.update_all:
            self._queue(stored, new_entry)
            if stored.entry is None and not s.update_all:
                outcome.recordings.append(self._missing_text(stored.key))
            elif stored.stale and not s.update_all:
                outcome.recordings.append(f"baseline entry {stored.key}: {stored.stale}")
        for c in verdict.inconclusive():
            outcome.verdict = "inconclusive"
            outcome.reason = outcome.reason or c.message()  # why, in the summary and the JSON
            if s.strict:
                outcome.problems.append(f"--sdperf-strict: inconclusive: {c.message()}")
            else:
                warnings.warn(SdperfInconclusive(f"{self.test_id}: {c.message()}"), stacklevel=3)
        noted = [c for c in verdict.checks if c.note]  # only a pass carries one
        if noted and outcome.verdict == "pass" and not outcome.reason:
            outcome.reason = noted[0].message()  # a pass worth a line under the summary
        regressions = verdict.regressions()
        if regressions:
            outcome.verdict = "regression"
            outcome.reason = "; ".join(c.message() for c in regressions)
            outcome.problems.extend(self._regression_text(m, stored, regressions, new_entry))
        if s.update_all:
            outcome.verdict = "updated"
        else:
            if outcome.verdict != "regression":
                self._add_session(m, stored, verdict)
            if outcome.recordings and outcome.verdict == "pass":
                outcome.verdict = "recorded"
                outcome.reason = outcome.recordings[0]
        sessions = (len(stored.entry.latency.sessions) or 1) if stored.entry and not stored.stale else None
        record = self._record(m, sim, outcome, verdict, sessions)
        self.state.records.append(record)
        if s.update_all:
            return record
        if outcome.recordings and (s.strict or outcome.problems):
            strict = ["--sdperf-strict: a missing baseline entry or reference image fails the test "
                      "(it was recorded now)"] if s.strict else []
            outcome.problems[:0] = [*outcome.recordings, *strict]
        elif outcome.recordings:
            warnings.warn(SdperfRecorded(f"{self.test_id}: " + "; ".join(outcome.recordings)), stacklevel=3)
        if outcome.problems:
            pytest.fail("\n".join(outcome.problems), pytrace=False)
        return record

    def _add_session(self, m: Measurement, stored: Stored, verdict: Verdict) -> None:
        """A comparison that did not regress adds this run's medians to its entry's sessions,
        until the entry holds ``BASELINE_SESSIONS`` (then it stays as it is until re-recorded);
        a run with disturbed rounds adds nothing."""
        entry = stored.entry
        judged = verdict.latency is not None or verdict.throughput is not None
        if entry is None or stored.stale or not judged or m.info.get("disturbed_rounds"):
            return
        throughput = entry.throughput
        if throughput is None:  # a scenario's figure the entry lacks is added (a recording)
            throughput = m.throughput
        elif m.throughput is not None and len(throughput.sessions) < BASELINE_SESSIONS:
            throughput = throughput.with_session(m.throughput, BASELINE_SESSIONS)
        adopted = self._adopt_yardstick(m, entry.latency, verdict)
        if adopted is not None:
            self._queue(stored, replace(entry, latency=adopted, throughput=throughput))
            return
        if len(entry.latency.sessions) >= BASELINE_SESSIONS and throughput is entry.throughput:
            return
        latency = entry.latency
        if verdict.latency is not None and len(latency.sessions) < BASELINE_SESSIONS:
            latency = latency.with_session(m.latency, BASELINE_SESSIONS)
        self._queue(stored, replace(entry, latency=latency, throughput=throughput))

    def _adopt_yardstick(self, m: Measurement, stored: LatencyStats, verdict: Verdict) -> LatencyStats | None:
        """Where this run's rounds hold the variant's yardstick (``VariantSpec.yardstick``) and
        the entry's do not (recorded before the variant had one), and the run passed: its rounds
        as the entry's new recording, this session its first, so later runs compare over the
        yardstick (the entry's sessions were of the ratio to the reference, another figure);
        else None. Said in the notes."""
        name = m.latency.yardstick_variant
        if not name or stored.yardstick_variant == name or m.latency.over_yardstick() is None \
                or verdict.latency is None or verdict.latency.status != PASS:
            return None
        self.state.notes.append(
            f"{self.test_id}: compared over the paired reference, as its baseline entry holds no "
            f"rounds of its yardstick {name}; this passing run's rounds, with {name}'s timed beside "
            f"them, are the entry's new recording: later runs compare over {name}")
        return replace(m.latency, sessions=(m.latency.session_summary(),))

    def _missing_text(self, key: str) -> str:
        machine, others = self.state.machine, self.state.other_keys()
        seen = f" (baselines exist for other machines: {', '.join(others)}; they are " \
            "never compared silently, see --sdperf-machine-key)" if others else ""
        seen += machine.legacy_note(others)
        return (f"no baseline entry for {key} in {self.state.store.path}: "
                f"recorded now; the next run compares with it{seen}")

    def _queue(self, stored: Stored, new_entry: BaselineEntry) -> None:
        self.state.store.queue(stored.key, new_entry)
        if stored.legacy:
            self.state.store.retire(self.test_id)

    def _check_foreign(self, m: Measurement, stored: Stored) -> Record:
        """Against another machine's file: calibration-relative latency and similarity only."""
        store, here, entry = self.state.store, self.state.machine.key, stored.entry
        if entry is None:
            pytest.skip(f"no entry for {stored.key} in {store.path} (machine key "
                        f"{store.machine_key}; this machine is {here})")
        if not (m.latency.relative() and entry.latency.relative()):
            pytest.skip(f"baseline of machine {store.machine_key} has no calibration samples; "
                        f"this machine ({here}) cannot be compared with it by ratio")
        if entry.latency.kernel() != m.latency.kernel():
            pytest.skip(f"baseline of machine {store.machine_key} was calibrated with "
                        f"{entry.latency.kernel()}, this run with {m.latency.kernel()}: their ratios "
                        "do not compare; re-record that machine's file with --sdperf-update-all")
        outcome = _Outcome()
        sim = self._similarity(m, outcome.problems)
        current = Figures(m.latency, {}, *_sim_figures(sim))
        verdict = judge(current, Figures(entry.latency), self._thresholds(entry), "relative")
        failed = [replace(c, metric=f"latency ratio (relative, vs machine {store.machine_key})")
                  if c.metric.startswith("latency") else c for c in verdict.regressions()]
        if failed:
            outcome.verdict, outcome.reason = "regression", "; ".join(c.message() for c in failed)
        record = self._record(m, sim, outcome)
        self.state.records.append(record)
        if failed:
            pytest.fail("\n".join([f"sdperf regression in {self.test_id} against {store.path} "
                                   f"(another machine: {store.machine_key}):",
                                   *(f"  {c.message()}" for c in failed)]), pytrace=False)
        return record

    def _check_against(self, m: Measurement) -> Record:
        """--sdperf-against: this environment's rounds over the other interpreter's, timed
        beside them, under the latency rule with the other side as a one-session baseline (the
        between-session spread standing for the two processes'); similarity against the
        reference images as always. No baseline entry is read or written."""
        other = self.state.against
        assert other is not None
        outcome = _Outcome()
        sim = self._similarity(m, outcome.recordings)
        t = self._thresholds(None)
        checks = list(judge(Figures(None, {}, *_sim_figures(sim)), None, t, "paired").checks)
        ratios = m.latency.paired()
        if ratios:
            check = compare_latency(ratios, [1.0], t.latency_pct, seconds=False, sessions=(1.0,),
                                    checks=self.state.latency_checks)
            checks.insert(0, replace(check, metric=f"latency ratio (here / {other.python})",
                                     detail=check.detail.replace("between-session", "between-process")))
        else:
            why = m.info.get("unpaired") or "the other side gave no rounds"
            outcome.problems.append(f"--sdperf-against {other.python}: {m.variant} was not compared: {why}")
            outcome.verdict, outcome.reason = "error", str(why)
        verdict = verdict_of(checks)
        failed = verdict.regressions()
        if failed:
            outcome.verdict, outcome.reason = "regression", "; ".join(c.message() for c in failed)
            outcome.problems[:0] = [f"sdperf: {self.test_id} is slower or worse here than under "
                                    f"{other.python}:", *(f"  {c.message()}" for c in failed)]
        elif verdict.inconclusive() and outcome.verdict == "pass":
            outcome.verdict = "inconclusive"
            outcome.reason = outcome.reason or verdict.inconclusive()[0].message()
        record = self._record(m, sim, outcome, verdict)
        self.state.records.append(record)
        if outcome.problems:
            pytest.fail("\n".join(outcome.problems), pytrace=False)
        return record

    def _thresholds(self, entry: BaselineEntry | None) -> Thresholds:
        """Defaults < the variant's < the session's options (--sdperf-latency-pct, ...) < the
        baseline entry's own limits (hand edits) < the marker's."""
        return limits_for(entry, self.spec.thresholds,
                          self.state.settings.threshold_overrides(self.spec.name), self.marker_thresholds)

    def _own_limits(self, entry: BaselineEntry | None) -> dict[str, float]:
        """The entry's own limits (``BaselineEntry.own_limits``)."""
        if entry is None:
            return {}
        return entry.own_limits({**self.spec.thresholds, **self.marker_thresholds})

    def _regression_text(self, m: Measurement, stored: Stored, regressions: list[Check],
                         new_entry: BaselineEntry) -> list[str]:
        store, s = self.state.store, self.state.settings
        store.queue_obtained(stored.key, new_entry)
        kept = self._keep_obtained_images(m)
        lines = [f"sdperf regression in {self.test_id} (variant {m.variant}):"]
        lines += [f"  {c.message()}" for c in regressions]
        first = m.info.get("first_measurement")
        if first:
            lines.append(f"  confirmed in fresh workers, judged pooled with the first measurement, "
                         f"which read alone: {first}")
        moved = stage_changes(m.latency.stages, stored.entry.latency.stages) if stored.entry else ""
        if moved and any(c.metric.startswith("latency") for c in regressions):
            lines.append(f"  stages, now over the baseline (largest change first): {moved}")
        lines.append(f"  baseline: {store.path}")
        lines.append(f"  obtained: {store.obtained_path}" + (f", images {kept}" if kept else ""))
        if s.update and not s.update_all:
            self._queue(stored, new_entry)
            lines.append("  --sdperf-update: the baseline entry was rewritten with these figures")
            if m.variant == self.state.reference_name() and any(c.metric in ("SSIM", "PSNR") for c in regressions):
                self.state.write_references(m.images, self.state.reference_paths(m.model_key, m.workload))
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
        """SSIM/PSNR against the reference images; the reference variant writes them where they
        are missing (a first recording: appended to ``problems``) or with --sdperf-update-all."""
        refs = self.state.reference_paths(m.model_key, m.workload)
        s = self.state.settings
        existed = all(p.exists() for p in refs)
        if m.variant == self.state.reference_name() and (s.update_all or not existed):
            self.state.write_references(m.images, refs)
            if not existed and not s.update_all:
                problems.append(f"no FP32 reference image for {m.model_key}/{m.workload.key()}: "
                                f"written to {refs[0].parent}; the next run compares with it")
        elif not existed:
            raise pytest.fail.Exception(f"no FP32 reference image for {m.model_key}/"
                                        f"{m.workload.key()} in {refs[0].parent}", pytrace=False)
        return compare_images([load_png(p) for p in m.images], [load_png(p) for p in refs])

    def _entry(self, m: Measurement, sim: Similarity | None, own: Mapping[str, float]) -> BaselineEntry:
        """The entry to write: these figures, keeping the old entry's own limits (hand edits)."""
        return BaselineEntry(
            variant=m.variant, model=m.model_key, workload=m.workload.to_dict(), latency=m.latency,
            memory=m.memory.to_dict(), thresholds=dict(own),
            similarity=sim.to_dict() if sim else None, info=dict(m.info), build_s=m.build_s,
            recorded=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            throughput=m.throughput,
        )

    def _record(self, m: Measurement, sim: Similarity | None, outcome: _Outcome,
                verdict: Verdict | None = None, stored_sessions: int | None = None) -> Record:
        # the row's ratio: latency's, or a sweep knee's throughput (seconds per image)
        latency = (verdict.latency or verdict.throughput) if verdict else None
        info = _with_throughput(m, stored_sessions)
        if latency is not None and latency.readings > 1:  # the row's ratio pools fresh workers' readings
            info["pooled_readings"] = latency.readings
        spread, base_spread = latency.round_spread_pct if latency else (None, None)
        readings = (*m.earlier, m.latency)  # a confirmation's rounds and the first reading's
        return Record(
            test_id=self.test_id, variant=m.variant, model_key=m.model_key,
            workload_key=m.workload.key(), verdict=outcome.verdict, p50_s=m.latency.p50,
            p90_s=m.latency.p90, first_call_s=m.latency.first_call_s,
            memory=m.memory.to_dict(), ssim=sim.ssim if sim else None,
            psnr=sim.to_dict()["psnr"] if sim else None, info=info, reason=outcome.reason,
            detectable_pct=latency.detectable_pct if latency else None,
            detectable_floor_pct=latency.detectable_floor_pct if latency else None,
            latency_limit_pct=round((latency.limit - 1.0) * 100.0, 9) if latency else None,
            ratio=latency.measured if latency else None,
            ratio_interval=latency.interval if latency else None,
            ratio_z=latency.z if latency else None, round_spread_pct=spread,
            baseline_round_spread_pct=base_spread, samples=m.latency.samples,
            rounds=sum(len(r.samples) for r in readings),
            rounds_s=round(sum(r.timed_s() for r in readings), 3),
            images=tuple(str(p) for p in m.images),
            reference_images=tuple(str(p) for p in self.state.reference_paths(m.model_key, m.workload)),
            efficiency=self.state.efficiency(m),
        )


def _stale(entry: BaselineEntry | None, mode: str) -> str:
    """Why ``entry``'s latency and memory do not compare with a run under the glibc malloc
    setting ``mode`` (``glibc_malloc.py``: the same code runs at another speed and holds its
    memory otherwise), or "" where they do."""
    recorded = glibc_malloc.recorded_mode(entry.info) if entry is not None else mode
    if recorded == mode:
        return ""
    return (f"measured with glibc's malloc thresholds {recorded}, this "
            f"run with them {mode} (--sdperf-glibc-malloc): its latency and memory do not compare "
            "across the two, so it is recorded again now; the next run compares with it")


def _scenario_problems(m: Measurement, outcome: _Outcome) -> None:
    """A LoadGen scenario the worker ran (``info["scenario"]``) fails the test when its settings
    could not be met (a cap below one generation) or its latency percentile exceeded the cap."""
    data = m.info.get("scenario")
    if not data:
        return
    result = ScenarioResult.from_dict(data)
    problem = (f"scenario usage error: {result.usage_error}" if result.usage_error
               else result.over_cap())
    if problem:
        outcome.verdict, outcome.reason = "regression", problem
        outcome.problems.append(problem)


def _figures(m: Measurement, entry: BaselineEntry | None,
             sim: Similarity | None) -> tuple[Figures, Figures | None]:
    """What the judge compares: the measurement's figures and the entry's (None: no entry). A
    sweep's knee (``info["sweep"]``) is judged on its throughput only, and on its memory where
    the baseline's knee was at the same setting: its latency belongs to whatever setting the
    knee is at tonight."""
    sims = _sim_figures(sim)
    if not m.info.get("sweep"):
        current = Figures(m.latency, m.memory.to_dict(), *sims, throughput=m.throughput,
                          earlier=m.earlier, earlier_throughput=m.earlier_throughput)
        return current, (Figures(entry.latency, entry.memory, throughput=entry.throughput)
                         if entry else None)
    current = Figures(None, m.memory.to_dict(), *sims, throughput=m.throughput,
                      earlier=m.earlier, earlier_throughput=m.earlier_throughput)
    if entry is None:
        return current, None
    same = _knee(entry.info) == _knee(m.info)
    return current, Figures(None, entry.memory if same else {}, throughput=entry.throughput)


def _knee(info: Mapping[str, Any]) -> tuple[Any, Any]:
    sweep = info.get("sweep") or {}
    return (sweep.get("sweep") or {}).get("setting"), sweep.get("knee")


def _sweep_problems(m: Measurement, entry: BaselineEntry | None, outcome: _Outcome) -> None:
    """A sweep with no point within its cap fails the test; a knee that moved from the
    baseline's setting is said in the record (its memory then is not compared)."""
    data = m.info.get("sweep")
    if not data:
        return
    from .sweep import SweepResult

    result = SweepResult.from_dict(data)
    if result.knee is None:
        problem = f"sweep: {result.summary()}"
        outcome.verdict, outcome.reason = "regression", problem
        outcome.problems.append(problem)
    elif entry is not None and entry.info.get("sweep") and _knee(entry.info) != _knee(m.info):
        outcome.reason = (f"the knee moved from {result.sweep.setting}={_knee(entry.info)[1]} to "
                          f"{result.knee.value}: memory not compared")


def _request_problems(m: Measurement, outcome: _Outcome) -> None:
    """Requests in flight at once (ov-async) start from the same latents: only the first one's
    image is compared with the reference, so any other that differs from it fails the test."""
    if m.info.get("requests_agree") is False:
        problem = (f"requests in flight disagree: one request's image differs from the first's "
                   f"by up to {m.info.get('requests_max_diff', float('nan')):.4g} (pixels in "
                   "[0, 1]): requests share state they should not")
        outcome.verdict, outcome.reason = "regression", problem
        outcome.problems.append(problem)


def _sim_figures(sim: Similarity | None) -> tuple[float | None, float | None]:
    return (sim.ssim, sim.psnr) if sim else (None, None)


def _with_throughput(m: Measurement, sessions: int | None = None) -> dict[str, Any]:
    """``m.info`` with ``images_per_s``: the images of one call (times its requests in flight)
    over its median seconds, unless the variant measured its own (ov-async);
    and ``baseline_sessions``: the sessions of the baseline it was compared with."""
    info = dict(m.info)
    if sessions is not None:
        info["baseline_sessions"] = sessions
    if "images_per_s" not in info and m.images and m.latency.p50 > 0:
        info["images_per_s"] = m.images_per_call / m.latency.p50
    return info
