"""Resolve ``--sdperf-model`` to a ModelRef: build/cache the tiny model, or vet a folder.

Nothing here executes code from a model folder: folders are checked for pickle weights
(refused unless the user opts in) and for symlinks that escape the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from ..host import package_versions
from .ref import ModelRef

PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
MANIFEST = "sdperf-manifest.json"
TINY_BUILDER_VERSION = 1
PROFILE_BUILDER_VERSION = 1
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelError(Exception):
    """A model that cannot be used; the message names it and says what would fix it."""


def resolve_model(spec: str, cache_dir: Path, allow_pickle: bool = False) -> ModelRef:
    """Turn the ``--sdperf-model`` value into a ModelRef, building tiny or a profile if needed."""
    from .profiles import PROFILE_SUFFIX, get_profile, profile_names

    if spec == "tiny":
        path = ensure_tiny(cache_dir)
        return ModelRef("tiny", str(path), "tiny-" + _manifest_key(path), arch="sd")
    if spec in profile_names():
        path = ensure_profile(spec, cache_dir)
        return ModelRef("profile", str(path), f"{spec}-{_manifest_key(path)}",
                        arch=get_profile(spec).arch, profile=spec)
    folder = Path(spec).expanduser()
    if folder.exists():
        return _vet_folder(folder.resolve(), allow_pickle)
    if spec.endswith(PROFILE_SUFFIX):
        raise ModelError(f"--sdperf-model {spec!r}: no such profile; known: "
                         f"{', '.join(profile_names())}")
    if HUB_ID.match(spec) and not spec.startswith((".", "/")):
        return ModelRef("hub", spec, "hub-" + re.sub(r"[^\w.-]", "_", spec), allow_pickle)
    raise ModelError(
        f"--sdperf-model {spec!r}: no such folder, and not a hub id (owner/name); use 'tiny', "
        f"a profile ({', '.join(profile_names())}), a local diffusers or OpenVINO folder, "
        "or a hub id"
    )


def detect_arch(folder: Path) -> str:
    """``sdxl`` or ``sd`` from a pipeline folder's model_index.json (``""`` if neither).

    Diffusers and optimum-intel both name the pipeline class there (``StableDiffusionXL...``,
    ``OVStableDiffusionXL...``); an SDXL folder also has ``text_encoder_2``.
    """
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return ""
    name = str(index.get("_class_name", "")) if isinstance(index, dict) else ""
    if "XL" in name or (isinstance(index, dict) and "text_encoder_2" in index):
        return "sdxl"
    return "sd" if "StableDiffusion" in name or "LatentConsistency" in name else ""


HUB_DEFAULT_WORKLOAD = {"height": 512, "width": 512, "steps": 20}


def default_workload(spec: str) -> dict[str, int]:
    """Height, width and steps for tests that do not set them, from ``--sdperf-model``.

    tiny: the Workload defaults (128x128, 10 steps); a profile: its own (small, so the full
    architecture runs on a CPU); a folder: its UNet's native size at 20 steps; a hub id:
    512x512 at 20 steps. Marker keywords and --sdperf-size/--sdperf-steps override these.
    """
    from .profiles import get_profile, profile_names

    if spec == "tiny":
        return {}
    if spec in profile_names():
        return get_profile(spec).default_workload
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        return dict(HUB_DEFAULT_WORKLOAD)
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        side = int(unet["sample_size"]) * 8
    except (OSError, ValueError, KeyError, TypeError):
        return dict(HUB_DEFAULT_WORKLOAD)
    return {"height": side, "width": side, "steps": 20}


def _vet_folder(folder: Path, allow_pickle: bool) -> ModelRef:
    if not folder.is_dir():
        raise ModelError(f"--sdperf-model {folder}: not a folder")
    if not (folder / "model_index.json").is_file():
        raise ModelError(
            f"--sdperf-model {folder}: no model_index.json; expected a diffusers pipeline "
            "folder (save_pretrained) or an exported OpenVINO pipeline"
        )
    _check_components(folder)
    files = _files(folder)
    pickles = [f for f in files if f.suffix in PICKLE_SUFFIXES]
    has_safetensors = any(f.suffix == ".safetensors" for f in files)
    is_openvino = any(f.name.endswith("openvino_model.xml") or f.suffix == ".xml" for f in files)
    if pickles and not has_safetensors and not is_openvino and not allow_pickle:
        listed = ", ".join(str(p.relative_to(folder)) for p in pickles[:3])
        raise ModelError(
            f"--sdperf-model {folder}: weights are pickle files ({listed}), which can run code "
            "when loaded; convert them to safetensors, or pass --sdperf-allow-pickle if you "
            "trust them"
        )
    kind = "openvino" if is_openvino else "diffusers"
    return ModelRef(kind, str(folder), f"{folder.name}-{_fingerprint(folder, files)}", allow_pickle,
                    arch=detect_arch(folder))


def _check_components(folder: Path) -> None:
    """Every component model_index.json names must have its folder."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except ValueError as exc:
        raise ModelError(f"{folder / 'model_index.json'}: not valid JSON ({exc})") from None
    if not isinstance(index, dict):
        raise ModelError(f"{folder / 'model_index.json'}: expected a JSON object")
    missing = [
        name for name, value in index.items()
        if not name.startswith("_") and isinstance(value, list) and len(value) == 2
        and value[0] is not None and not _component_present(folder, name)
    ]
    if missing:
        raise ModelError(
            f"--sdperf-model {folder}: model_index.json names component(s) {missing} but their "
            "folders are missing; copy the whole pipeline folder (save_pretrained output)"
        )


def _component_present(folder: Path, name: str) -> bool:
    """A component's folder exists; an OpenVINO export keeps ``vae`` as vae_decoder/encoder."""
    if (folder / name).is_dir():
        return True
    return name == "vae" and (folder / "vae_decoder").is_dir()


def _files(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, _dirs, names in os.walk(folder, followlinks=False):
        for name in names:
            path = Path(root) / name
            if path.is_symlink():
                target = path.resolve()
                if folder not in target.parents and target != folder:
                    raise ModelError(
                        f"--sdperf-model {folder}: {path.relative_to(folder)} is a symlink to "
                        f"{target}, outside the model folder; copy the file in instead"
                    )
            out.append(path)
    return sorted(out)


def _fingerprint(folder: Path, files: list[Path]) -> str:
    """Paths, sizes and the first MiB of each file: cheap and content-sensitive."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(str(path.stat().st_size).encode())
        with path.open("rb") as fh:
            digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:12]


def tiny_cache_key() -> str:
    """Configs, builder and library versions that decide the tiny model's bytes."""
    from . import tiny

    return _build_key(tiny.all_configs(), TINY_BUILDER_VERSION)


def _build_key(configs: Any, builder: int) -> str:
    blob = json.dumps(
        {
            "configs": configs,
            "builder": builder,
            "versions": package_versions(("torch", "diffusers", "transformers")),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_profile(name: str, cache_dir: Path) -> Path:
    """Profile ``name``'s folder in the cache, built (under a lock) if missing or damaged."""
    from .profiles import SEED, STORAGE_DTYPE, get_profile

    configs = {"profile": dict(get_profile(name).configs), "seed": SEED, "dtype": STORAGE_DTYPE}
    target = cache_dir / "models" / f"{name}-{_build_key(configs, PROFILE_BUILDER_VERSION)}"
    return cached_folder(target, in_subprocess("pytest_sdperf.models.profiles", "build_profile", name),
                         f"the {name} profile")


def ensure_tiny(cache_dir: Path) -> Path:
    """The tiny model's folder in the cache, built (under a lock) if missing or damaged."""
    target = cache_dir / "models" / f"tiny-{tiny_cache_key()}"
    return cached_folder(target, in_subprocess("pytest_sdperf.models.tiny", "build_tiny"),
                         "the embedded tiny model")


BUILD_SCRIPT = ("import importlib, sys; from pathlib import Path; "
                "getattr(importlib.import_module(sys.argv[1]), sys.argv[2])(*sys.argv[4:], Path(sys.argv[3]))")


def in_subprocess(module: str, function: str, *args: str) -> Callable[[Path], None]:
    """A build that runs ``module.function(*args, folder)`` in a fresh interpreter.

    The session's process then never imports torch, diffusers or transformers for a build:
    importing them sets environment variables (KMP_DUPLICATE_LIB_OK, KMP_INIT_AT_FORK,
    TORCHINDUCTOR_CACHE_DIR), after which no worker's environment matched the fork server's
    and every worker of a first run was spawned (measured: 0 forked, 26 spawned)."""
    import subprocess

    def build(folder: Path) -> None:
        paths = [p for p in sys.path + os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
        done = subprocess.run([sys.executable, "-c", BUILD_SCRIPT, module, function, str(folder), *args],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise ModelError(f"building into {folder} failed ({module}.{function}):\n{tail}")

    return build


def cached_folder(target: Path, build: Callable[[Path], None], label: str) -> Path:
    """``target``, built by ``build(folder)`` unless it is there and matches its manifest
    (see ``ensure_folder``)."""
    ensure_folder(target, build, label)
    return target


def ensure_folder(target: Path, build: Callable[[Path], None], label: str) -> bool:
    """Build ``target`` with ``build(folder)`` unless it is there and matches its manifest;
    True when it was built now.

    Built under a file lock into a temporary folder renamed into place, so concurrent runs build
    once and a crash leaves no half folder; a damaged folder (a file whose sha256 differs from
    the manifest) is rebuilt.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _manifest_ok(target):
            return False
        if target.exists():
            print(f"sdperf: {label} at {target} is damaged; rebuilding", file=sys.stderr, flush=True)
            shutil.rmtree(target)
        print(f"sdperf: building {label} into {target}", file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            build(tmp)
            write_manifest(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record every file's sha256 so damage is detected on the next use."""
    files = {
        str(p.relative_to(folder)): _hash_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1, sort_keys=True))


def _manifest_ok(folder: Path) -> bool:
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        return bool(files) and all(_hash_file(folder / n) == h for n, h in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _manifest_key(folder: Path) -> str:
    return hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()[:12]
