"""The cache of exported and quantized OpenVINO IR pipelines: one folder per build recipe.

A folder's name holds a hash of the source model's key, the recipe (what was built and with
which settings) and the versions of every library that shapes the IR, so any change builds
anew. Builds run under a file lock into a temporary folder that is renamed into place; a
manifest of file hashes is checked on every use, and a damaged folder is rebuilt.

Example::

    entry = cached_build(ctx.cache_dir, "export", ctx.model.key, {"tome": None}, export_into)
    entry.path, entry.hit, entry.build_s
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..host import package_version

# Libraries whose version changes the exported or quantized IR.
VERSIONED = ("openvino", "optimum-intel", "nncf", "diffusers", "transformers", "torch")
CACHE_FORMAT = 1
BUILD_INFO = "sdperf-build.json"


@dataclass(frozen=True)
class CacheEntry:
    """A ready cache folder; ``hit`` when it was reused, ``build_s`` what building it took."""

    path: Path
    hit: bool
    build_s: float


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries in VERSIONED ("missing" where not installed)."""
    return {name: package_version(name) or "missing" for name in VERSIONED}


def cache_key(model_key: str, recipe: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    """A short hash of everything that decides a cached folder's bytes."""
    blob = json.dumps(
        {"format": CACHE_FORMAT, "model": model_key, "recipe": recipe, "versions": versions},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry_path(cache_dir: Path, stage: str, model_key: str, recipe: Mapping[str, Any]) -> Path:
    """Where the folder for this stage and recipe lives (it may not exist yet)."""
    key = cache_key(model_key, {"stage": stage, **recipe}, library_versions())
    return cache_dir / "openvino" / f"{stage}-{key}"


def cached_build(
    cache_dir: Path,
    stage: str,
    model_key: str,
    recipe: Mapping[str, Any],
    build: Callable[[Path], None],
) -> CacheEntry:
    """The cached folder for ``recipe``, built by ``build(tmp_dir)`` in a child process if
    missing or damaged (``models.source.ensure_folder``: lock, temporary folder, manifest)."""
    from ..models.source import ensure_folder
    from ..progress import beat

    target = entry_path(cache_dir, stage, model_key, recipe)
    beat("stage", name=f"OpenVINO {stage} of {model_key}, cached for later runs")
    built = ensure_folder(target, functools.partial(_build_recorded, build=build, stage=stage,
                                                    model_key=model_key, recipe=dict(recipe)),
                          f"OpenVINO {stage} of {model_key}")
    return CacheEntry(target, not built, _recorded_build_s(target))


def _build_recorded(
    out: Path, build: Callable[[Path], None], stage: str, model_key: str, recipe: Mapping[str, Any],
) -> None:
    """``build(out)`` in a child process, and what it built and took, in BUILD_INFO."""
    start = time.perf_counter()
    run_in_child(build, out)
    build_s = time.perf_counter() - start
    record = {"stage": stage, "model": model_key, "recipe": dict(recipe),
              "versions": library_versions(), "build_s": build_s}
    (out / BUILD_INFO).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    _progress(f"built OpenVINO {stage} in {build_s:.1f} s")


def run_in_child(build: Callable[[Path], None], out: Path) -> None:
    """Run ``build(out)`` in a spawned process, so the measuring worker's memory figures never
    hold what exporting or quantizing left behind. ``build`` must pickle (functools.partial of
    module-level functions); a failure raises here with the child's traceback."""
    import multiprocessing

    errors = out / ".sdperf-build-error.txt"
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(build, out, errors))
    child.start()
    child.join()
    if child.exitcode != 0:
        detail = errors.read_text() if errors.exists() else f"exit status {child.exitcode}"
        raise RuntimeError(f"building {out.name} failed in its child process:\n{detail}")
    errors.unlink(missing_ok=True)


def _child(build: Callable[[Path], None], out: Path, errors: Path) -> None:
    import traceback

    try:
        build(out)
    except BaseException:
        errors.write_text(traceback.format_exc())
        raise SystemExit(1) from None


def _recorded_build_s(folder: Path) -> float:
    """What building a cached folder took when it was built (0.0 if not recorded)."""
    try:
        return float(json.loads((folder / BUILD_INFO).read_text())["build_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def ir_size_bytes(folder: Path) -> int:
    """Bytes on disk of every OpenVINO IR file (``.xml`` + ``.bin``) under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in (".xml", ".bin"))


def _progress(message: str) -> None:
    print(f"sdperf: {message}", file=sys.stderr, flush=True)
