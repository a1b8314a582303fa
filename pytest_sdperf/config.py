"""Settings parsed once from the pytest config, and the argparse types that validate them."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import DEFAULT_HANG_FLOOR_S

DEFAULT_ROUNDS = 5
DEFAULT_WARMUP = 1
DEFAULT_TIMEOUT_S = 900.0
AUTO_MIN_ROUNDS = 5
AUTO_MAX_ROUNDS = 60
AUTO_HALFWIDTH = 0.02  # stop when the 95% CI of the median is within +-2%


def positive_int(text: str) -> int:
    """Parse an integer >= 1, or raise an error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def rounds_value(text: str) -> int:
    """A positive round count, or 'auto' (returned as 0): sample until the median is known."""
    if text.strip().lower() == "auto":
        return 0
    return positive_int(text)


def non_negative_int(text: str) -> int:
    """Parse an integer >= 0, or raise an error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def positive_float(text: str) -> float:
    """Parse a number of seconds > 0, or raise an error naming the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def non_negative_float(text: str) -> float:
    """Parse a number >= 0 (a percentage), or raise an error naming the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


DEVICES = ("auto", "cpu", "cuda")


def device_choice(text: str) -> str:
    """auto (CUDA when torch sees one, else CPU), cpu, cuda or cuda:N."""
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not one of auto, cpu, cuda, cuda:N")


GATE_MODES = ("relative", "paired", "absolute")


def gate_mode(text: str) -> str:
    """relative (latency over the interleaved calibration workload), paired (over the reference
    variant run in the same worker, rounds interleaved) or absolute (seconds)."""
    if text not in GATE_MODES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(GATE_MODES)}")
    return text


def key_value(text: str) -> tuple[str, str]:
    """'tome_ratio=0.5' -> ('tome_ratio', '0.5')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. tome_ratio=0.5)")
    return key.strip(), value.strip()


def variant_patterns(text: str) -> tuple[str, ...]:
    """Parse a comma list of variant names or globs; empty items are an error."""
    items = tuple(item.strip() for item in text.split(","))
    if not items or any(not item for item in items):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma list of variant names (e.g. 'torch-fp32,ov-*')"
        )
    return items


def image_size(text: str) -> tuple[int, int]:
    """'512x512' or '512' -> (height, width), each a positive multiple of 8."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) == 1:
        parts = parts * 2
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH (e.g. 512x512)") from None
    if min(height, width) < 8 or height % 8 or width % 8:
        raise argparse.ArgumentTypeError(f"{text!r}: height and width must be positive "
                                         "multiples of 8 (e.g. 256x256)")
    return height, width


def name_list(text: str) -> tuple[str, ...]:
    """A comma list of names ('reference-a,reference-b' or 'all')."""
    items = tuple(item.strip() for item in text.split(","))
    if any(not item for item in items):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of names")
    return items


def history_target(text: str) -> str:
    """A database URL (``postgresql+psycopg://host/db``), a SQLite file path, or 'default'."""
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError("empty: give a database URL, a file path or 'default'")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the plugin reads from options and ini keys, validated once."""

    enabled: bool
    model: str
    variants: tuple[str, ...] | None
    baselines_dir: Path
    update: bool
    update_all: bool
    rounds: int  # 0 means auto: sample until the median is known to AUTO_HALFWIDTH
    warmup: int
    cache_dir: Path
    json_path: Path | None
    timeout_s: float
    allow_pickle: bool
    hang_floor_s: float = DEFAULT_HANG_FLOOR_S  # --sdperf-hang-floor: progress.Watchdog (0: off)
    device: str = "auto"
    sets: tuple[tuple[str, str], ...] = ()
    memray_dir: Path | None = None
    reference_variant: str = "torch-fp32"
    gate_mode: str = "relative"
    time_budget_s: float = 120.0
    benchmark_json: Path | None = None
    machine_key: str | None = None
    html_path: Path | None = None
    history: str | None = None  # a database URL, a SQLite file path, or 'default'
    steps: int | None = None  # --sdperf-steps: overrides every test's steps
    size: tuple[int, int] | None = None  # --sdperf-size: overrides every test's height, width
    protocols: tuple[str, ...] = ()  # --sdperf-protocol: protocol tests to run ('all')
    rounds_given: bool = False  # rounds/warmup came from an option or ini key, not defaults
    warmup_given: bool = False

    def workload_overrides(self) -> dict[str, int]:
        """What --sdperf-steps and --sdperf-size impose on every test's workload."""
        out: dict[str, int] = {}
        if self.steps is not None:
            out["steps"] = self.steps
        if self.size is not None:
            out["height"], out["width"] = self.size
        return out


def _default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "pytest-sdperf"


def _pick(config: Any, option: str, ini: str, parse: Any, default: Any) -> Any:
    """Take the command-line value, else the ini value (parsed), else the default."""
    value = config.getoption(option)
    if isinstance(value, str):
        return parse(value)
    if value is not None:
        return value
    raw = config.getini(ini)
    if raw in (None, "", []):
        return default
    try:
        return parse(raw) if isinstance(raw, str) else raw
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"ini key {ini} = {raw!r}: {exc}") from None


class UsageError(Exception):
    """A bad option or ini value; the message says which and how to fix it."""


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true/false")


def settings_from_config(config: Any) -> Settings:
    """Read and validate all sdperf options (command line first, then ini twins)."""
    rootdir = Path(str(config.rootpath))
    baselines = _pick(config, "sdperf_baselines", "sdperf_baselines", _path, Path("baselines"))
    json_path = _pick(config, "sdperf_json", "sdperf_json", _path, None)
    return Settings(
        enabled=bool(config.getoption("sdperf")) or _pick_bool(config, "sdperf"),
        model=_pick(config, "sdperf_model", "sdperf_model", str, "tiny"),
        variants=_pick(config, "sdperf_variants", "sdperf_variants", variant_patterns, None),
        baselines_dir=baselines if baselines.is_absolute() else rootdir / baselines,
        update=bool(config.getoption("sdperf_update")) or _pick_bool(config, "sdperf_update"),
        update_all=bool(config.getoption("sdperf_update_all"))
        or _pick_bool(config, "sdperf_update_all"),
        rounds=_pick(config, "sdperf_rounds", "sdperf_rounds", rounds_value, DEFAULT_ROUNDS),
        warmup=_pick(config, "sdperf_warmup", "sdperf_warmup", non_negative_int, DEFAULT_WARMUP),
        cache_dir=_pick(
            config, "sdperf_cache_dir", "sdperf_cache_dir", _path, _default_cache_dir()
        ),
        json_path=json_path,
        timeout_s=_pick(
            config, "sdperf_timeout", "sdperf_timeout", positive_float, DEFAULT_TIMEOUT_S
        ),
        hang_floor_s=_pick(
            config, "sdperf_hang_floor", "sdperf_hang_floor", non_negative_float, DEFAULT_HANG_FLOOR_S
        ),
        allow_pickle=bool(config.getoption("sdperf_allow_pickle"))
        or _pick_bool(config, "sdperf_allow_pickle"),
        device=_pick(config, "sdperf_device", "sdperf_device", device_choice, "auto"),
        sets=tuple(config.getoption("sdperf_set") or ())
        + tuple(key_value(line) for line in config.getini("sdperf_set") or ()),
        memray_dir=_pick(config, "sdperf_memray_dir", "sdperf_memray_dir", _path, None),
        gate_mode=_pick(config, "sdperf_gate", "sdperf_gate", gate_mode, "relative"),
        time_budget_s=_pick(
            config, "sdperf_time_budget", "sdperf_time_budget", positive_float, 120.0
        ),
        benchmark_json=_pick(
            config, "sdperf_benchmark_json", "sdperf_benchmark_json", _path, None
        ),
        machine_key=_pick(config, "sdperf_machine_key", "sdperf_machine_key", str, None),
        reference_variant=_pick(
            config, "sdperf_reference", "sdperf_reference", str, "torch-fp32"
        ),
        html_path=_pick(config, "sdperf_html", "sdperf_html", _path, None),
        history=_pick(config, "sdperf_history", "sdperf_history", history_target, None),
        steps=_pick(config, "sdperf_steps", "sdperf_steps", positive_int, None),
        size=_pick(config, "sdperf_size", "sdperf_size", image_size, None),
        protocols=_pick(config, "sdperf_protocol", "sdperf_protocol", name_list, ()),
        rounds_given=_pick(config, "sdperf_rounds", "sdperf_rounds", rounds_value, None) is not None,
        warmup_given=_pick(config, "sdperf_warmup", "sdperf_warmup", non_negative_int, None)
        is not None,
    )


def _pick_bool(config: Any, ini: str) -> bool:
    raw = config.getini(ini)
    if raw in (None, "", []):
        return False
    if isinstance(raw, bool):
        return raw
    try:
        return _bool(str(raw))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"ini key {ini} = {raw!r}: {exc}") from None
