"""``--sdperf-against PYTHON``: each test's variant timed in this environment and, beside it,
in another interpreter's (a tox environment's, another package set), rounds interleaved ABBA as
the paired gate interleaves them, so one run says "ov-static under diffusers 0.35 vs 0.39" with
an interval.

The other interpreter runs this checkout's plugin code (its folder is put first on its import
path) with its own packages for everything else; what it imports is read back once, at the
start of the session, and goes into the results. Baseline files are neither compared nor written
in this mode: the question is this environment against that one, here and now.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .models.ref import ModelRef
from .runner import source_root, worker_env

# Run by the other interpreter: its package versions, and the built-in model (tiny or a
# profile) as that environment builds it (their cache keys hold the torch, diffusers and
# transformers versions: a folder saved by one transformers line may not load in another).
PROBE = """
import json, sys
from pathlib import Path
from pytest_sdperf.host import package_versions, python_version
from pytest_sdperf.session import REPORTED_PACKAGES
spec, cache_dir = sys.argv[1], Path(sys.argv[2])
model = None
if spec == "tiny" or spec.endswith("-arch"):
    from pytest_sdperf.models.source import resolve_model
    model = resolve_model(spec, cache_dir).to_dict()
print(json.dumps({"versions": {**package_versions(REPORTED_PACKAGES), "python": python_version()},
                  "model": model}))
"""


class AgainstError(Exception):
    """An interpreter that cannot be the other side; the message names it and the fix."""


@dataclass(frozen=True)
class OtherSide:
    """The interpreter of ``--sdperf-against`` and the packages it imports."""

    python: str
    versions: Mapping[str, str]
    model: ModelRef | None = None  # the built-in model as that environment builds it; None: shared

    def differences(self, here: Mapping[str, str]) -> dict[str, tuple[str | None, str | None]]:
        """package -> (version here, version there), where they differ."""
        names = sorted(set(here) | set(self.versions))
        return {n: (here.get(n), self.versions.get(n)) for n in names if here.get(n) != self.versions.get(n)}

    def to_dict(self) -> dict[str, object]:
        """Plain data for the results (its model's key, where it built its own)."""
        out: dict[str, object] = {"python": self.python, "versions": dict(self.versions)}
        if self.model is not None:
            out["model_key"] = self.model.key
        return out


def probe(python: Path, model_spec: str, cache_dir: Path) -> OtherSide:
    """Run ``python`` once as a worker would be run: which packages it imports, and (for the
    built-in models) the model built by that environment, under ``cache_dir``."""
    if not python.exists():
        raise AgainstError(f"--sdperf-against {python}: no such interpreter (give the python of "
                           "another environment, e.g. .tox/diffusers035/bin/python)")
    env = worker_env({}, [source_root()])
    try:
        done = subprocess.run([str(python), "-c", PROBE, model_spec, str(cache_dir)], capture_output=True,
                              text=True, env=env, timeout=1800)
    except (OSError, subprocess.SubprocessError) as exc:
        raise AgainstError(f"--sdperf-against {python}: cannot be run ({exc})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AgainstError(f"--sdperf-against {python}: cannot import pytest-sdperf's code from "
                           f"{source_root()} ({last}); that environment needs the plugin's "
                           "dependencies: pip install -c constraints.txt -e '.[all]' there")
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AgainstError(f"--sdperf-against {python}: unexpected output {done.stdout[-200:]!r}") from None
    model = found.get("model")
    return OtherSide(str(python), {str(k): str(v) for k, v in found["versions"].items()},
                     ModelRef(**model) if model else None)
