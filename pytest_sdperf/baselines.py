"""Baseline JSON: load and validate (jsonschema), queue updates, write atomically under a lock.

One file per machine key, ``<baselines>/<machine-key>.json``; FP32 reference images under
``<baselines>/references/<model-key>/``. Writes are queued during the session and flushed once
at its end: read-modify-write under a file lock, to a temporary file renamed into place, so
a crash or a kill leaves the previous file whole. A file that is damaged or of another schema
version is never overwritten, except by ``--sdperf-update-all``, which backs it up first.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jsonschema
from filelock import FileLock

from .atomic import atomic_write_bytes, atomic_write_text
from .measure.latency import LatencyStats
from .workload import Thresholds

SCHEMA_VERSION = 1
# How an entry's ``thresholds`` are read. 1: every limit the test was recorded with (the rules
# before entry rules existed). 2: only the entry's own limits (hand edits), so the defaults and
# the session's --sdperf-*-pct options reach every test without it being re-recorded.
ENTRY_RULES = 2
# The limits every entry of rules 1 was written with, before the marker's and the variant's:
# an old entry's stored limit that equals what these give is not a hand edit.
RULES_1_DEFAULTS = Thresholds(latency_pct=50.0, memory_pct=20.0, min_ssim=0.90, min_psnr=20.0)
# What a baseline file keeps of the session header (a measured peak would churn every write).
HEADER_KEYS = ("machine", "environment")

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STATS_SCHEMA: dict[str, Any] = {  # measure.latency.LatencyStats
    "type": "object",
    "required": ["samples"],
    "properties": {
        "samples": {"type": "array", "minItems": 1, "items": {**_NUM, "exclusiveMinimum": 0}},
        "calibration": {"type": "array", "items": {**_NUM, "exclusiveMinimum": 0}},
        "calibration_kernel": {"type": "string"},
        "reference": {"type": "array", "items": {**_NUM, "exclusiveMinimum": 0}},
        "yardstick": {"type": "array", "items": {**_NUM, "exclusiveMinimum": 0}},
        "yardstick_variant": {"type": "string"},
        "sessions": {"type": "array", "items": {
            "type": "object", "additionalProperties": {**_NUM, "exclusiveMinimum": 0}}},
    },
}
ENTRY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["variant", "model", "workload", "latency", "memory", "thresholds"],
    "properties": {
        "variant": {"type": "string"},
        "rules": {"type": "integer", "minimum": 1},
        "model": {"type": "string"},
        "workload": {"type": "object"},
        "latency": _STATS_SCHEMA,
        # a LoadGen scenario's seconds per image (Bench.throughput); absent or null: none run
        "throughput": {"anyOf": [{"type": "null"}, _STATS_SCHEMA]},
        "memory": {
            "type": "object",
            "properties": {k: _NUM_OR_NULL for k in ("peak_rss", "peak_anon", "peak_heap", "cuda_peak")},
        },
        "similarity": {
            "type": ["object", "null"],
            "properties": {k: _NUM for k in ("ssim", "psnr", "max_abs")},
        },
        "thresholds": {
            "type": "object",
            "properties": {
                "latency_pct": {**_NUM, "minimum": 0},
                "memory_pct": {**_NUM, "minimum": 0},
                "min_ssim": {**_NUM, "minimum": -1, "maximum": 1},
                "min_psnr": _NUM,
                "min_speedup": {**_NUM, "minimum": 0},
            },
            "additionalProperties": False,
        },
        "duration_s": {"type": ["number", "null"], "minimum": 0},
    },
}
FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema_version", "entries"],
    "properties": {
        "schema_version": {"type": "integer"},
        "machine": {"type": "object"},
        "environment": {"type": "object"},
        "entries": {"type": "object", "additionalProperties": ENTRY_SCHEMA},
        "retired": {"type": "array", "items": {"type": "string"}},
        "shard": {"type": "string"},
    },
}




class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file and the fix."""


@dataclass
class ShardMerge:
    """What ``BaselineStore.merge_shards`` did."""

    files: list[Path]
    entries: int = 0  # entries written
    retired: int = 0  # entries removed
    images: int = 0  # reference images copied
    notes: list[str] = field(default_factory=list)


def _read_shard(path: Path) -> dict[str, Any]:
    """A shard update file, validated; BaselineError naming it when it cannot be used."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise BaselineError(f"{path}: cannot be read ({exc.strerror or exc}); nothing was merged") from None
    try:
        return parse_baseline(text, path)
    except BaselineError as exc:
        raise BaselineError(f"{exc} (nothing was merged)") from None


@dataclass(frozen=True)
class BaselineEntry:
    """One test's stored figures (``ENTRY_SCHEMA``): what the gate compares a measurement with.

    thresholds: the entry's own limits, which a user may edit by hand; they rank above the
    defaults, the variant's and the session's options, below the marker's (see ``rules``).
    recorded: when (UTC, ISO 8601).
    """

    variant: str
    model: str
    workload: Mapping[str, Any]
    latency: LatencyStats
    memory: Mapping[str, Any]
    thresholds: Mapping[str, float]
    similarity: Mapping[str, Any] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    build_s: float | None = None
    recorded: str = ""
    rules: int = ENTRY_RULES  # how ``thresholds`` are read (ENTRY_RULES); absent in a file: 1
    throughput: LatencyStats | None = None  # a LoadGen scenario's seconds per image

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the baseline file."""
        return {
            "variant": self.variant, "rules": self.rules, "model": self.model,
            "workload": dict(self.workload),
            "latency": self.latency.to_dict(), "memory": dict(self.memory),
            "similarity": dict(self.similarity) if self.similarity is not None else None,
            "thresholds": dict(self.thresholds), "info": dict(self.info),
            "build_s": self.build_s, "recorded": self.recorded,
            **({"throughput": self.throughput.to_dict()} if self.throughput else {}),
        }

    def own_limits(self, given: Mapping[str, float]) -> dict[str, float]:
        """The entry's own limits (hand edits). An entry of rules 1 stored every limit it was
        recorded with; of those, the ones the old defaults with ``given`` (the variant's, then
        the marker's) give are not its own."""
        if self.rules >= 2:
            return dict(self.thresholds)
        stored = RULES_1_DEFAULTS.merged(given).to_dict()
        return {k: v for k, v in self.thresholds.items() if stored.get(k) != v}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaselineEntry:
        """The inverse of ``to_dict``, for an entry ``ENTRY_SCHEMA`` accepted."""
        sim = data.get("similarity")
        return cls(
            variant=str(data["variant"]), model=str(data["model"]), workload=dict(data["workload"]),
            latency=LatencyStats.from_dict(data["latency"]), memory=dict(data["memory"]),
            thresholds={k: float(v) for k, v in data["thresholds"].items()},
            similarity=dict(sim) if sim is not None else None, info=dict(data.get("info") or {}),
            build_s=data.get("build_s"), recorded=str(data.get("recorded", "")),
            rules=int(data.get("rules", 1)),
            throughput=LatencyStats.from_dict(data["throughput"]) if data.get("throughput") else None,
        )


def limits_for(entry: BaselineEntry | None, variant: Mapping[str, float], session: Mapping[str, float],
               marker: Mapping[str, float] | None = None) -> Thresholds:
    """A test's limits, ranked: the defaults < the ``variant``'s < the ``session``'s options
    (--sdperf-latency-pct, ...) < the ``entry``'s own (hand edits) < the ``marker``'s."""
    marker = marker or {}
    own = entry.own_limits({**variant, **marker}) if entry is not None else {}
    return Thresholds().merged(variant).merged(session).merged(own).merged(marker)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def model_label(model_key: str) -> str:
    """A model key without its content hash: ``tiny-fed9edcfcc40`` -> ``tiny``.

    Baseline entries are keyed by the label, so a library upgrade that changes the tiny model's
    bytes (and key) keeps its entries; reference images stay keyed by the full key.
    """
    head, sep, tail = model_key.rpartition("-")
    return head if sep and tail.isalnum() and len(tail) >= 8 else model_key


def entry_key(test_id: str, model_key: str, workload_key: str) -> str:
    """Where a test's entry lives: one per (test, model, workload), so one baseline file holds
    the tiny model, the profiles and real models side by side (``--sdperf-size`` too)."""
    return f"{test_id}@{model_label(model_key)}/{workload_key}"


def parse_baseline(text: str, path: Path) -> dict[str, Any]:
    """Parse and validate a baseline file's text; any defect raises BaselineError."""
    fix = f"fix or delete {path}, or rewrite it with --sdperf-update-all (a .bak copy is kept)"
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BaselineError(f"{path}: not valid JSON ({exc}); {fix}") from None
    if isinstance(data, dict) and "schema_version" in data and data["schema_version"] != SCHEMA_VERSION:
        raise BaselineError(
            f"{path}: schema version {data['schema_version']!r}, but this pytest-sdperf reads "
            f"version {SCHEMA_VERSION}; {fix}"
        )
    try:
        jsonschema.validate(data, FILE_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise BaselineError(f"{path}: at {where}: {exc.message}; {fix}") from None
    _check_finite(data, path, fix)
    return data  # type: ignore[no-any-return]


def _check_finite(data: Any, path: Path, fix: str) -> None:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise BaselineError(f"{path}: holds a non-finite number ({item}); {fix}")


@dataclass
class BaselineStore:
    """The baseline file of one machine key, with queued writes."""

    directory: Path
    machine_key: str
    shard_tag: str = ""  # --sdperf-shard: writes go to <key>.<tag>.json for `sdperf baselines merge`
    _entries: dict[str, Any] | None = None
    _error: BaselineError | None = None
    _pending: dict[str, Any] = field(default_factory=dict)
    _retired: set[str] = field(default_factory=set)
    _obtained: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """``<dir>/<machine-key>.json``."""
        return self.directory / f"{self.machine_key}.json"

    @property
    def write_path(self) -> Path:
        """Where this session's updates go: the baseline file, or in a shard
        ``<dir>/<machine-key>.shard-I-of-N.json`` (merged by ``sdperf baselines merge``)."""
        return self.directory / f"{self.machine_key}.{self.shard_tag}.json" if self.shard_tag else self.path

    @property
    def obtained_path(self) -> Path:
        """Where failing tests' measurements are saved for diffing."""
        tag = f".{self.shard_tag}" if self.shard_tag else ""
        return self.directory / f"{self.machine_key}{tag}.obtained.json"

    def set_durations(self, durations: Mapping[str, float]) -> None:
        """Stamp each queued entry with its test's duration this session (``duration_s``, what
        ``--sdperf-shard`` balances by); ``durations`` is keyed by test id."""
        for key, entry in self._pending.items():
            seconds = durations.get(key.partition("@")[0])
            if seconds is not None:
                entry["duration_s"] = round(float(seconds), 3)

    def entries(self) -> dict[str, Any]:
        """The stored entries (empty when there is no file); BaselineError if damaged."""
        if self._entries is None and self._error is None:
            try:
                self._entries = self._read()
            except BaselineError as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        assert self._entries is not None
        return self._entries

    @property
    def lock_path(self) -> Path:
        """The file lock every read-modify-write of the baseline file holds."""
        return self.path.with_name(self.path.name + ".lock")

    def _read(self) -> dict[str, Any]:
        return dict(self._read_doc()["entries"])

    def _read_doc(self, path: Path | None = None) -> dict[str, Any]:
        """The whole file (header and entries); an empty document when there is none."""
        path = path or self.path
        try:
            text = path.read_text()
        except FileNotFoundError:
            return {"schema_version": SCHEMA_VERSION, "entries": {}}
        except OSError as exc:
            raise BaselineError(f"{path}: cannot be read ({exc})") from None
        return parse_baseline(text, path)

    def get(self, test_id: str) -> Mapping[str, Any] | None:
        """The stored entry for a test id, as plain data, or None."""
        return self.entries().get(test_id)

    def entry(self, key: str) -> BaselineEntry | None:
        """The stored entry under ``key``, typed, or None; BaselineError if the file is damaged
        or the entry cannot be read (the message names the file, the key and the fix)."""
        data = self.get(key)
        if data is None:
            return None
        try:
            return BaselineEntry.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise BaselineError(f"{self.path}: entry {key!r} cannot be read ({exc!r}); fix or "
                                "delete it, or rewrite it with --sdperf-update") from None

    def queue(self, test_id: str, entry: BaselineEntry | Mapping[str, Any]) -> None:
        """Write this entry at session end."""
        self._pending[test_id] = entry.to_dict() if isinstance(entry, BaselineEntry) else dict(entry)

    def retire(self, key: str) -> None:
        """Remove this entry at session end (a legacy key its new key replaces)."""
        self._retired.add(key)

    def queue_obtained(self, test_id: str, entry: BaselineEntry) -> None:
        """Save what a failing test measured beside the baseline, for diffing."""
        self._obtained[test_id] = entry.to_dict()

    def flush(self, header: Mapping[str, Any], force: bool = False) -> list[Path]:
        """Merge queued entries into the file under a lock; returns the files written.

        ``force`` (``--sdperf-update-all``) replaces a damaged or other-version file after
        copying it to ``.bak``; without it such a file is left untouched.
        """
        written: list[Path] = []
        header = {k: v for k, v in header.items() if k in HEADER_KEYS}
        if self.shard_tag and (self._pending or self._retired):
            self._rewrite(lambda doc: self._shard_doc(doc, header), path=self.write_path)
            self._pending, self._retired = {}, set()
            written.append(self.write_path)
        elif self._pending or self._retired:
            self._rewrite(lambda doc: self._merged(doc, header), force)
            self._pending, self._retired = {}, set()
            written.append(self.path)
        if self._obtained:
            doc = {"schema_version": SCHEMA_VERSION, **header, "entries": self._obtained}
            atomic_write_text(self.obtained_path, json.dumps(doc, indent=1, sort_keys=True))
            written.append(self.obtained_path)
        return written

    def _merged(self, doc: Mapping[str, Any], header: Mapping[str, Any]) -> dict[str, Any]:
        """The file with the queued entries written and the retired ones gone, under ``header``."""
        current = dict(doc["entries"])
        for key in self._retired - set(self._pending):
            current.pop(key, None)
        current.update(self._pending)
        return {"schema_version": SCHEMA_VERSION, **header, "entries": current}

    def _shard_doc(self, doc: Mapping[str, Any], header: Mapping[str, Any]) -> dict[str, Any]:
        """A shard's update file: this session's entries and retired keys over the ones an
        earlier run of the same shard left unmerged."""
        entries = {k: v for k, v in doc["entries"].items() if k not in self._retired}
        entries.update(self._pending)
        retired = (set(doc.get("retired", ())) | self._retired) - set(self._pending)
        return {"schema_version": SCHEMA_VERSION, **header, "shard": self.shard_tag,
                "entries": entries, "retired": sorted(retired)}

    def merge_shards(self, files: Sequence[Path], force: bool = False) -> ShardMerge:
        """Apply shards' update files (``--sdperf-shard``'s ``<key>.shard-I-of-N.json``) to the
        baseline file in one locked, atomic rewrite, and copy the reference images the shards
        made (from ``references/`` beside each file) where this folder has none.

        Every file is read and checked before anything is written: a damaged file, one of
        another machine key (unless ``force``) or two files writing one entry differently is a
        BaselineError naming the files, and nothing is merged. Merged files in this folder are
        removed (a later merge must not apply them again); files elsewhere are left.
        """
        docs = [(path, _read_shard(path)) for path in files]
        owner: dict[str, Path] = {}
        for path, doc in docs:
            key = str((doc.get("machine") or {}).get("key", self.machine_key))
            if key != self.machine_key and not force:
                raise BaselineError(f"{path}: recorded on machine key {key}, not {self.machine_key} "
                                    f"({self.path}); merge it into its own key's file (--machine-key), "
                                    "or pass --force")
            for entry_key, entry in doc["entries"].items():
                other = owner.get(entry_key)
                if other is not None and dict(docs)[other]["entries"][entry_key] != entry:
                    raise BaselineError(f"{other} and {path} both write {entry_key!r}: shards of one "
                                        "run never share a test; merge each run's shards on their own")
                owner[entry_key] = path
        result = ShardMerge(files=list(files))

        def apply(doc: dict[str, Any]) -> dict[str, Any]:
            entries = dict(doc["entries"])
            for _, shard in docs:
                for key in shard.get("retired", ()):
                    result.retired += entries.pop(key, None) is not None
                entries.update(shard["entries"])
                result.entries += len(shard["entries"])
            header = {k: docs[-1][1][k] for k in HEADER_KEYS if k in docs[-1][1]} if docs else {}
            return {**{k: v for k, v in doc.items() if k != "entries"}, **header, "entries": entries}

        if docs:
            self._rewrite(apply)
        for path, _ in docs:
            result.images += self._take_references(path.parent / "references", result)
        for path, _ in docs:
            if path.resolve().parent == self.directory.resolve():
                path.unlink(missing_ok=True)
                path.with_name(path.name + ".lock").unlink(missing_ok=True)
        return result

    def _take_references(self, source: Path, result: ShardMerge) -> int:
        """Copy the reference images under ``source`` that this folder lacks; count them."""
        target = self.directory / "references"
        if not source.is_dir() or source.resolve() == target.resolve():
            return 0
        copied = 0
        for image in sorted(source.rglob("*.png")):
            dest = target / image.relative_to(source)
            if dest.exists():
                if dest.read_bytes() != image.read_bytes():
                    result.notes.append(f"{image}: differs from {dest}, which is kept")
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dest, image.read_bytes())
            copied += 1
        return copied

    def shard_files(self) -> list[Path]:
        """This key's unmerged shard update files in the folder, by name."""
        return sorted(self.directory.glob(f"{self.machine_key}.shard-*-of-*.json"))

    def remove(self, select: Callable[[Mapping[str, Any]], bool],
               dry_run: bool = False) -> tuple[list[str], int]:
        """Remove the entries ``select`` picks, keeping the file's header; returns their keys
        and how many entries the file held. ``dry_run``: pick them, change nothing.

        The choice is made under the file's lock, on what the file holds then::

            gone, total = store.remove(lambda entry: entry["variant"] == "torch-old")
        """
        gone: list[str] = []
        total = 0

        def drop(doc: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal total
            total = len(doc["entries"])
            gone.extend(sorted(k for k, e in doc["entries"].items() if select(e)))
            if not gone or dry_run:
                return None
            return {**doc, "entries": {k: e for k, e in doc["entries"].items() if k not in gone}}

        self._rewrite(drop)
        return gone, total

    def _rewrite(self, change: Callable[[dict[str, Any]], dict[str, Any] | None],
                 force: bool = False, path: Path | None = None) -> None:
        """The one read-modify-write of the file: under its lock, read the whole document, let
        ``change`` return the new one (None: leave the file as it is), write it atomically.

        ``force`` starts from an empty document where the file is damaged or of another
        schema version, after copying it to ``.bak``; without it BaselineError is raised.
        """
        target = path or self.path
        with FileLock(str(target.with_name(target.name + ".lock"))):
            try:
                doc = self._read_doc(target)
            except BaselineError:
                if not force:
                    raise
                shutil.copy2(target, target.with_name(target.name + ".bak"))
                doc = {"schema_version": SCHEMA_VERSION, "entries": {}}
            new = change(doc)
            if new is None:
                return
            new["entries"] = dict(sorted(new["entries"].items()))
            atomic_write_text(target, json.dumps(new, indent=1, sort_keys=True) + "\n")
            if target == self.path:
                self._entries = dict(new["entries"])

    def reference_dir(self, model_key: str) -> Path:
        """Folder of the FP32 reference images of one model (machine-independent)."""
        return self.directory / "references" / model_key
