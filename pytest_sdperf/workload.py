"""Workloads (what to generate) and the per-test thresholds the `sdperf` marker may set."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .measure.scenario import KEYWORDS as SCENARIO_KEYWORDS
from .measure.scenario import Scenario, scenario_from_marker
from .sweep import KEYWORDS as SWEEP_KEYWORDS
from .sweep import Sweep, SweepError, sweep_from_marker


@dataclass(frozen=True)
class Workload:
    """One generation request, identical for every variant it is given to.

    The initial latents are derived from ``seed`` once (see ``initial_latents``) and handed to
    every variant, so all of them start from the same noise and their images compare pixel
    to pixel whatever their backend's random generator.
    """

    prompt: str = "a photo of an astronaut riding a horse on mars"
    negative_prompt: str = "low resolution, blurry"
    steps: int = 10
    height: int = 128
    width: int = 128
    images_per_prompt: int = 1
    guidance_scale: float = 7.5
    seed: int = 42
    task: str = "txt2img"
    strength: float = 0.75
    init_image: str | None = None

    def key(self) -> str:
        """A short stable id of this workload, used to name reference images.

        A text-to-image workload hashes the fields it had before tasks existed, so its key
        (and the reference images and baselines named by it) did not change; an image-to-image
        workload adds its task, strength and the init image's content (``-i2i-`` in the key).
        """
        fields = dataclasses.asdict(self)
        for name in IMG2IMG_FIELDS:
            fields.pop(name)
        tag = ""
        if self.task == "img2img":
            tag = "i2i-"
            fields.update(task=self.task, strength=self.strength,
                          init_image=_file_digest(self.init_image) if self.init_image else None)
        blob = json.dumps(fields, sort_keys=True).encode()
        return f"{self.height}x{self.width}-{self.steps}st-{tag}{hashlib.sha256(blob).hexdigest()[:10]}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        """The inverse of ``to_dict``."""
        return cls(**dict(data))


TASKS = ("txt2img", "img2img")
IMG2IMG_FIELDS = ("task", "strength", "init_image")


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Thresholds:
    """Limits a test is held to; stored in the baseline entry, where a user may edit them.

    latency_pct: allowed latency slowdown in percent of the baseline median.
    memory_pct: allowed growth of peak memory in percent of the baseline.
    min_ssim / min_psnr: the least similarity to the FP32 reference image.
    min_speedup: the least speedup over the reference variant timed beside it in this run
        (paired gating), e.g. 1.3 for "at least 1.3x torch-fp32"; 0: no floor.
    """

    latency_pct: float = 10.0
    memory_pct: float = 20.0
    min_ssim: float = 0.90
    min_psnr: float = 20.0
    min_speedup: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)

    def merged(self, overrides: Mapping[str, Any]) -> Thresholds:
        """A copy with the given fields replaced."""
        return dataclasses.replace(self, **{k: float(v) for k, v in overrides.items()})


@dataclass(frozen=True)
class Protocol:
    """How a test measures, where a published protocol fixes it (marker keywords).

    protocol: the protocol's name (``reference-b``); such tests run only when selected with
        ``--sdperf-protocol`` or when their file is named on the command line.
    arch: ``sd`` or ``sdxl``: the test skips on a model of another architecture.
    rounds / warmup: timed calls and warm-up calls after the first (None: the options').
    warmup_steps: steps of the first and warm-up calls (None: the workload's).
    variants: a comma list of variant names or globs: the test runs for the selected variants
        it matches only (None: every selected variant), e.g. a batch workload for the variants
        whose batch path differs.
    scenario: an MLPerf LoadGen scenario run after the timed rounds (keywords ``scenario``,
        ``target_qps``, ``latency_cap_ms``, ``duration_s``, ``min_queries``; measure/scenario.py).
    sweep: a latency-capped sweep of one variant setting (keywords ``sweep``, ``sweep_values``,
        ``sweep_cap_ms``; sweep.py), run by the ``sdperf_knee`` fixture.
    """

    protocol: str | None = None
    arch: str | None = None
    rounds: int | None = None
    warmup: int | None = None
    warmup_steps: int | None = None
    variants: str | None = None
    scenario: Scenario | None = None
    sweep: Sweep | None = None

    def runs(self, variant: str) -> bool:
        """Whether the test runs for ``variant`` (see ``variants``)."""
        from fnmatch import fnmatchcase

        if self.variants is None:
            return True
        return any(fnmatchcase(variant, p.strip()) for p in self.variants.split(","))


@dataclass(frozen=True)
class MarkerArgs:
    """Keyword arguments accepted by ``@pytest.mark.sdperf(...)``; anything else is an error.

    ``workload`` holds only what the marker set; ``resolve_workload`` fills in the rest.
    """

    workload: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    run: Protocol = field(default_factory=Protocol)


_WORKLOAD_FIELDS = {f.name: f.type for f in dataclasses.fields(Workload)}
_THRESHOLD_FIELDS = {f.name for f in dataclasses.fields(Thresholds)}
_PROTOCOL_FIELDS = {f.name for f in dataclasses.fields(Protocol)} - {"scenario", "sweep"}
_SCENARIO_FIELDS = set(SCENARIO_KEYWORDS) | set(SWEEP_KEYWORDS)
ARCHS = ("sd", "sdxl")


def parse_marker_kwargs(kwargs: Mapping[str, Any], where: str) -> MarkerArgs:
    """Validate ``sdperf`` marker keywords; a typo raises ValueError listing the valid names."""
    known = set(_WORKLOAD_FIELDS) | _THRESHOLD_FIELDS | _PROTOCOL_FIELDS | _SCENARIO_FIELDS
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"{where}: unknown sdperf marker argument(s) {unknown}; "
                         f"valid: {', '.join(sorted(known))}")
    workload_kw = {k: v for k, v in kwargs.items() if k in _WORKLOAD_FIELDS}
    check_workload_fields(workload_kw, f"{where}: sdperf marker")
    thresholds = {k: float(v) for k, v in kwargs.items() if k in _THRESHOLD_FIELDS}
    return MarkerArgs(workload=workload_kw, thresholds=thresholds,
                      run=_protocol(kwargs, where))


def check_workload_fields(fields: Mapping[str, Any], where: str) -> None:
    """Positive ints for counts and sizes, sizes a multiple of 8; ValueError naming the field."""
    for name in ("steps", "height", "width", "images_per_prompt"):
        value = fields.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{where} {name}={value!r} must be a positive int")
    for name in ("height", "width"):
        value = fields.get(name)
        if value is not None and value % 8:
            raise ValueError(f"{where} {name}={value} must be a multiple of 8")
    task = fields.get("task")
    if task is not None and task not in TASKS:
        raise ValueError(f"{where} task={task!r} must be one of {', '.join(TASKS)}")
    strength = fields.get("strength")
    if strength is not None and (isinstance(strength, bool) or not isinstance(strength, (int, float))
                                 or not 0.0 < strength <= 1.0):
        raise ValueError(f"{where} strength={strength!r} must be a number in (0, 1]: the share "
                         "of the denoising steps run from the noised init image")
    given = [n for n in ("strength", "init_image") if n in fields]
    if given and fields.get("task") != "img2img":
        raise ValueError(f"{where} {', '.join(given)} only apply to task='img2img'; add "
                         "task='img2img' or drop them")
    image = fields.get("init_image")
    if image is not None and not isinstance(image, (str, Path)):
        raise ValueError(f"{where} init_image={image!r} must be the path of an image file")


def locate_init_image(fields: Mapping[str, Any], base: Path, where: str) -> dict[str, Any]:
    """``fields`` with ``init_image`` made absolute (a relative path is under ``base``, the
    test file's folder) and checked to be a readable image; ValueError naming the file."""
    image = fields.get("init_image")
    if image is None:
        return dict(fields)
    path = Path(image)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ValueError(f"{where} init_image={str(image)!r}: no such file ({path}); give the "
                         "path of a PNG or JPEG, relative to the test file's folder")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.verify()
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"{where} init_image={str(image)!r}: {path} is not an image PIL can "
                         f"read ({exc})") from None
    return {**dict(fields), "init_image": str(path.resolve())}


def _protocol(kwargs: Mapping[str, Any], where: str) -> Protocol:
    fields = {k: v for k, v in kwargs.items() if k in _PROTOCOL_FIELDS}
    for name, least in (("rounds", 1), ("warmup", 0), ("warmup_steps", 1)):
        value = fields.get(name)
        if value is not None and (not isinstance(value, int) or value < least):
            raise ValueError(f"{where}: sdperf marker {name}={value!r} must be an int >= {least}")
    arch = fields.get("arch")
    if arch is not None and arch not in ARCHS:
        raise ValueError(f"{where}: sdperf marker arch={arch!r} must be one of {ARCHS}")
    only = fields.get("variants")
    if only is not None and (not isinstance(only, str) or not all(p.strip() for p in only.split(","))):
        raise ValueError(f"{where}: sdperf marker variants={only!r} must be a comma list of "
                         "variant names or globs (e.g. 'torch-fp32,vae-*')")
    label = fields.get("protocol")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ValueError(f"{where}: sdperf marker protocol={label!r} must be a non-empty string")
    scenario, sweep = scenario_from_marker(kwargs, where), sweep_from_marker(kwargs, where)
    if scenario is not None and sweep is not None:
        raise SweepError(f"{where}: sdperf marker sweep= and scenario= do not combine: a sweep "
                         "measures each point from its rounds; give one of them")
    return Protocol(**fields, scenario=scenario, sweep=sweep)


def resolve_workload(marker: MarkerArgs, model_defaults: Mapping[str, Any],
                     overrides: Mapping[str, Any]) -> Workload:
    """The test's workload: Workload defaults < the model's defaults < marker < options.

    ``overrides`` come from --sdperf-size / --sdperf-steps, which win over everything so a
    protocol suite can be smoke-tested small (its workload key then differs, so its baselines
    and reference images never mix with the full-size ones).
    """
    fields = {**dict(model_defaults), **dict(marker.workload), **dict(overrides)}
    if "strength" in fields:
        fields["strength"] = float(fields["strength"])
    workload = Workload(**fields)
    if workload.task == "img2img" and int(workload.steps * workload.strength) < 1:
        raise ValueError(f"task='img2img' runs int(steps * strength) denoising steps: "
                         f"steps={workload.steps} with strength={workload.strength} runs none; "
                         "raise steps or strength")
    return workload
