"""Every option declared once (``OPTIONS``), the argparse types that validate them, and the
Settings parsed once from the pytest config."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from .progress import DEFAULT_HANG_FLOOR_S, HANG_FACTOR
from .sharding import Shard, shard_value

N = TypeVar("N", int, float)
AUTO_MIN_ROUNDS = 5
#: No comparison with a baseline is decided on fewer rounds: a bootstrap interval of five
#: rounds' median is too often narrow by chance (simulated on this machine's per-round paired
#: noise, deciding from five rounds on doubled the false regressions of an unchanged pipeline).
DECIDE_MIN_ROUNDS = 10
#: A recording (no baseline yet) takes at least this many rounds before its median may be
#: called known: it is the yardstick of every later run (a recording stopped at 7 rounds by a
#: by-chance narrow interval was seen here, 2026-12-03).
RECORD_MIN_ROUNDS = 20
AUTO_MAX_ROUNDS = 60
#: A baseline entry keeps the medians of at most this many sessions: its recording, then each
#: later session whose comparison did not regress (see compare.py: a recording made while the
#: machine was in an unusual state is outweighed by the sessions after it). The baseline's part
#: of a comparison's variance, (b^2 + s_r^2)/k, is what the sessions' number narrows: on the
#: committed AVX-512 baseline (2026-12-07, ``sdperf baselines reach``, the same spreads) ten
#: sessions instead of five lower every test's floor by 0.2-2.3 points, and bring three of the
#: sixteen whose floor was over 10% under it (env-tcmalloc, ov-static, vae-slicing).
BASELINE_SESSIONS = 10
AUTO_HALFWIDTH = 0.02  # stop when the 95% CI of the median is within +-2%


def bounded_number(kind: Callable[[str], N], low: N, *, strict: bool = False) -> Callable[[str], N]:
    """A parser of ``kind`` (int or float) numbers >= ``low`` (> ``low`` when ``strict``).

    Its errors name the value, e.g. ``bounded_number(int, 1)("0")`` raises "'0' must be 1 or
    more"; NaN is refused.
    """
    noun = "an integer" if kind is int else "a number"
    if strict:
        need = "a positive number" if low == 0 else f"more than {low:g}"
    else:
        need = f"{low:g} or more"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (value > low if strict else value >= low):  # NaN compares false: refused
            raise argparse.ArgumentTypeError(f"{text!r} must be {need}")
        return value

    parse.__doc__ = f"Parse {noun} that is {need}, or raise an error naming the value."
    return parse


positive_int = bounded_number(int, 1)
non_negative_int = bounded_number(int, 0)
positive_float = bounded_number(float, 0.0, strict=True)
non_negative_float = bounded_number(float, 0.0)


def ssim_value(text: str) -> float:
    """An SSIM floor: a number from -1 to 1 (SSIM's range), or an error naming the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be from -1 to 1 (SSIM's range)")
    return value


def rounds_value(text: str) -> int:
    """A positive round count, or 'auto' (returned as 0): sample until the median is known."""
    if text.strip().lower() == "auto":
        return 0
    return positive_int(text)


DEVICES = ("auto", "cpu", "cuda")


def device_choice(text: str) -> str:
    """auto (CUDA when torch sees one, else CPU), cpu, cuda or cuda:N."""
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not one of auto, cpu, cuda, cuda:N")


GATE_MODES = ("relative", "paired", "absolute")


def _one_of(text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
    return text


def gate_mode(text: str) -> str:
    """relative (latency over the interleaved calibration workload), paired (over the reference
    variant run in the same worker, rounds interleaved) or absolute (seconds)."""
    return _one_of(text, GATE_MODES)


def glibc_malloc_mode(text: str) -> str:
    """fixed (glibc's malloc thresholds set for every worker) or dynamic (glibc's defaults)."""
    from .glibc_malloc import MODES

    return _one_of(text, MODES)


def key_value(text: str) -> tuple[str, str]:
    """'tome_ratio=0.5' -> ('tome_ratio', '0.5')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. tome_ratio=0.5)")
    if "," in value and not all(item.strip() for item in value.split(",")):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item in its list of values "
                                         "(e.g. tome_ratio=0.3,0.5)")
    return key.strip(), value.strip()


def speedup_floor(text: str) -> tuple[str, float]:
    """'ov-static=1.3' -> ('ov-static', 1.3): a variant name or glob and its least speedup."""
    try:
        pattern, value = key_value(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not VARIANT=X (e.g. ov-static=1.3)") from None
    return pattern, non_negative_float(value)


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


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true/false")


def _default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "pytest-sdperf"


class UsageError(Exception):
    """A bad option or ini value; the message says which and how to fix it."""


Kind = Literal["value", "flag", "list"]


@dataclass(frozen=True)
class Option:
    """One sdperf option, declared once: the plugin adds it and its ini twin from this, the
    settings read it, and its help states its default.

    ``kind``: "value" (``--flag X``), "flag" (on/off; a bool ini key) or "list" (repeatable;
    one item a line in the ini key). ``field`` is the ``Settings`` attribute it fills (None:
    the plugin reads it itself). ``default`` is a value, or a function of no arguments for a
    default looked up when settings are read. ``help`` may name ``{default}``.
    """

    flag: str
    field: str | None
    parse: Callable[[str], Any] = str
    default: Any = None
    help: str = ""
    metavar: str | None = None
    kind: Kind = "value"
    ini: bool = True  # has a sdperf_* ini twin

    @property
    def ini_key(self) -> str:
        """``--sdperf-rounds`` -> ``sdperf_rounds`` (argparse derives the same dest)."""
        return ini_key(self.flag)

    def initial(self) -> Any:
        """The default value (a default function is called now)."""
        return self.default() if callable(self.default) else self.default

    @property
    def help_text(self) -> str:
        """The help with its default formatted in (floats as 900, not 900.0)."""
        shown = self.default
        if isinstance(shown, float):
            shown = f"{shown:g}"
        return self.help.format(default=shown)


def ini_key(flag: str) -> str:
    """The ini key (and argparse dest) of an option: ``--sdperf-rounds`` -> ``sdperf_rounds``."""
    return flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--sdperf", "enabled", _bool, False, "run the sdperf benchmark tests (skipped otherwise)",
           kind="flag"),
    Option("--sdperf-update", "update", _bool, False,
           "rewrite the baseline entries of tests that fail (they still fail)", kind="flag"),
    Option("--sdperf-update-all", "update_all", _bool, False,
           "rewrite every baseline entry and reference image, and pass", kind="flag"),
    Option("--sdperf-list-variants", None, _bool, False,
           "list the registered variants, whether they run here, and exit", kind="flag", ini=False),
    Option("--sdperf-strict", "strict", _bool, False,
           "fail a test whose baseline entry or reference image is missing (recorded now), or "
           "whose comparison is inconclusive; for nightly CI (default: such a test passes with a "
           "warning)", kind="flag"),
    Option("--sdperf-allow-pickle", "allow_pickle", _bool, False,
           "allow pickle (.bin/.ckpt) weights in --sdperf-model folders", kind="flag"),
    Option("--sdperf-model", "model", str, "tiny",
           "'{default}' (default, built locally), a profile (sd15-arch, sd21-arch, sdxl-arch: "
           "full-size architectures with random weights, built locally), a diffusers or OpenVINO "
           "folder, or a hub id", "MODEL"),
    Option("--sdperf-steps", "steps", positive_int, None,
           "denoising steps of every test, overriding markers and the model's default", "N"),
    Option("--sdperf-size", "size", image_size, None,
           "image size of every test (e.g. 256x256), overriding markers and the model's default",
           "HxW"),
    Option("--sdperf-protocol", "protocols", name_list, (),
           "run these published-protocol tests (e.g. reference-b, or 'all'); skipped otherwise",
           "LIST"),
    Option("--sdperf-variants", "variants", variant_patterns, None,
           "comma list of variant names, globs or a+b compositions (default: all)", "LIST"),
    Option("--sdperf-baselines", "baselines_dir", _path, Path("baselines"),
           "baseline folder (default: {default}/)", "DIR"),
    Option("--sdperf-rounds", "rounds", rounds_value, 0,
           "timed rounds, or 'auto' (the default): at least "
           f"{AUTO_MIN_ROUNDS}, then until the comparison with the baseline is decided, on at "
           f"least {DECIDE_MIN_ROUNDS} rounds: a possible regression (measured again in fresh workers), or a pass that could have seen a slowdown of the "
           f"limit, or once more rounds would not narrow the interval (with no baseline, {RECORD_MIN_ROUNDS} rounds and until the median is known "
           f"to +-{AUTO_HALFWIDTH:.0%}), or "
           "the time budget is spent", "N"),
    Option("--sdperf-time-budget", "time_budget_s", positive_float, 30.0,
           "seconds of timed rounds per test with --sdperf-rounds auto (default {default})", "S"),
    Option("--sdperf-warmup", "warmup", non_negative_int, 1, "warm-up calls (default {default})",
           "N"),
    Option("--sdperf-cache-dir", "cache_dir", _path, _default_cache_dir,
           "model/artifact cache (default $XDG_CACHE_HOME/pytest-sdperf, else "
           "~/.cache/pytest-sdperf)", "DIR"),
    Option("--sdperf-json", "json_path", _path, None, "write this run's results as JSON", "PATH"),
    Option("--sdperf-bmf", "bmf_path", _path, None,
           "write this run's results in Bencher Metric Format (latency, throughput, peak-memory, "
           "ssim, psnr), for `bencher run --adapter json`", "PATH"),
    Option("--sdperf-benchmark-json", "benchmark_json", _path, None,
           "write the timed rounds in pytest-benchmark's JSON format (for pytest-benchmark "
           "compare)", "PATH"),
    Option("--sdperf-timeout", "timeout_s", positive_float, 900.0,
           "worker timeout, the hard cap (default {default})", "S"),
    Option("--sdperf-hang-floor", "hang_floor_s", non_negative_float, DEFAULT_HANG_FLOOR_S,
           f"a worker silent for the larger of this and {HANG_FACTOR:g}x its first call is hung: "
           "its stacks are taken and it is killed (default {default}; 0: only --sdperf-timeout)",
           "S"),
    Option("--sdperf-device", "device", device_choice, "auto", "{default} (default), cpu, cuda",
           "DEV"),
    Option("--sdperf-fork-server", "fork_server", _bool, True,
           "on (default): fork workers from one interpreter that has imported torch and diffusers "
           "once, instead of starting each afresh; a worker whose environment differs (env-* "
           "variants), a pinned variant's, a custom loader's, and any where the fork server "
           "cannot be had, are spawned as before; off: spawn every worker", "on|off"),
    Option("--sdperf-glibc-malloc", "glibc_malloc", glibc_malloc_mode, "fixed",
           "{default} (default): every worker runs with glibc's malloc thresholds set "
           "(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_; yours are kept), so a variant that "
           "allocates large temporaries runs at one speed, not at one of two chosen at process "
           "start; dynamic: glibc's defaults. Entries measured under the other setting are "
           "recorded again", "fixed|dynamic"),
    Option("--sdperf-memray-dir", "memray_dir", _path, None,
           "keep each variant's memray capture here", "DIR"),
    Option("--sdperf-gate", "gate_mode", gate_mode, "paired",
           "{default} (default: latency over the reference variant, timed in its own worker "
           "process, rounds interleaved ABBA; the reference's own test over calibration), "
           "relative (over an interleaved calibration workload) or absolute (seconds)",
           "MODE"),
    Option("--sdperf-machine-key", "machine_key", str, None,
           "compare with another machine's baseline file, by calibration-relative latency only",
           "KEY"),
    Option("--sdperf-reference", "reference_variant", str, "torch-fp32",
           "the variant whose images are the reference and speedups' base (default {default})",
           "VARIANT"),
    Option("--sdperf-html", "html_path", _path, None,
           "write a self-contained HTML report (table, charts, images, trends) to PATH", "PATH"),
    Option("--sdperf-history", "history", history_target, None,
           "append results to a history database: a SQLAlchemy URL (postgresql+psycopg://...), "
           "a SQLite file, or 'default' (<baselines>/history.sqlite)", "URL_OR_PATH"),
    Option("--sdperf-latency-pct", "latency_pct", non_negative_float, None,
           "latency limit in percent over the baseline, for every test of the session (ranks "
           "above the variant's, below a baseline entry's hand edit and the marker's)", "PCT"),
    Option("--sdperf-memory-pct", "memory_pct", non_negative_float, None,
           "peak-memory limit in percent over the baseline, for every test (ranked as above)",
           "PCT"),
    Option("--sdperf-min-ssim", "min_ssim", ssim_value, None,
           "SSIM floor against the reference image, -1 to 1, for every test (ranked as above)",
           "X"),
    Option("--sdperf-min-psnr", "min_psnr", non_negative_float, None,
           "PSNR floor in dB against the reference image, for every test (ranked as above)",
           "DB"),
    Option("--sdperf-min-speedup", "min_speedups", speedup_floor, (),
           "the least speedup over the reference variant timed beside it (paired gating) for "
           "the variants a name or glob matches, e.g. ov-static=1.3 (repeatable; one a line in "
           "the ini key; ranked as above)", "VARIANT=X", kind="list"),
    Option("--sdperf-shard", "shard", shard_value, None,
           "run shard I of N (e.g. 2/3) of the selected tests, split by the durations recorded in "
           "the baseline file (README: running on many machines); its baseline updates go to "
           "<key>.shard-I-of-N.json for `sdperf baselines merge`, its results to its own "
           "--sdperf-json for `sdperf merge`", "I/N"),
    Option("--sdperf-against", "against", _path, None,
           "time each test's variant here and, beside it, under this other Python interpreter "
           "(another environment's, e.g. .tox/diffusers035/bin/python), rounds interleaved; each "
           "test is judged this environment over that one, and no baseline is read or written",
           "PYTHON"),
    Option("--sdperf-set", "sets", key_value, (),
           "a variant setting, e.g. tome_ratio=0.5 (repeatable; one a line in the ini key)",
           "NAME=VALUE", kind="list"),
)
_BY_FIELD = {o.field: o for o in OPTIONS if o.field}


def option_for(name: str) -> Option:
    """The option that fills the ``Settings`` attribute ``name``."""
    return _BY_FIELD[name]


def default_of(name: str) -> Any:
    """The default of the ``Settings`` attribute ``name``, e.g. ``default_of("timeout_s")``."""
    return option_for(name).initial()


def _default(name: str) -> Any:
    """The dataclass field of the ``Settings`` attribute ``name``, its default from the table."""
    default = option_for(name).default
    if callable(default):
        return dataclasses.field(default_factory=default)
    return dataclasses.field(default=default)


@dataclass(frozen=True)
class Settings:
    """Everything the plugin reads from options and ini keys, validated once.

    Each default comes from the option's declaration in ``OPTIONS``; code that runs workers
    outside pytest (validate, soak) names only what it changes, e.g.
    ``Settings(enabled=True, device="cpu")``.
    """

    enabled: bool = _default("enabled")
    model: str = _default("model")
    variants: tuple[str, ...] | None = _default("variants")
    baselines_dir: Path = _default("baselines_dir")
    update: bool = _default("update")
    update_all: bool = _default("update_all")
    rounds: int = _default("rounds")  # 0 means auto: sample until the median is known to AUTO_HALFWIDTH
    warmup: int = _default("warmup")
    cache_dir: Path = _default("cache_dir")
    json_path: Path | None = _default("json_path")
    timeout_s: float = _default("timeout_s")
    allow_pickle: bool = _default("allow_pickle")
    hang_floor_s: float = _default("hang_floor_s")  # progress.Watchdog (0: off)
    device: str = _default("device")
    fork_server: bool = _default("fork_server")  # fork workers from a pre-imported zygote
    sets: tuple[tuple[str, str], ...] = _default("sets")
    memray_dir: Path | None = _default("memray_dir")
    glibc_malloc: str = _default("glibc_malloc")  # glibc_malloc.py: fixed or dynamic
    reference_variant: str = _default("reference_variant")
    gate_mode: str = _default("gate_mode")
    time_budget_s: float = _default("time_budget_s")
    benchmark_json: Path | None = _default("benchmark_json")
    bmf_path: Path | None = _default("bmf_path")
    machine_key: str | None = _default("machine_key")
    html_path: Path | None = _default("html_path")
    history: str | None = _default("history")  # a database URL, a SQLite file path, or 'default'
    steps: int | None = _default("steps")  # overrides every test's steps
    size: tuple[int, int] | None = _default("size")  # overrides every test's height, width
    protocols: tuple[str, ...] = _default("protocols")  # protocol tests to run ('all')
    strict: bool = _default("strict")
    latency_pct: float | None = _default("latency_pct")
    memory_pct: float | None = _default("memory_pct")
    min_ssim: float | None = _default("min_ssim")
    min_psnr: float | None = _default("min_psnr")
    min_speedups: tuple[tuple[str, float], ...] = _default("min_speedups")
    shard: Shard | None = _default("shard")  # --sdperf-shard I/N
    against: Path | None = _default("against")  # --sdperf-against PYTHON
    rounds_given: bool = False  # rounds/warmup came from an option or ini key, not defaults
    warmup_given: bool = False

    def threshold_overrides(self, variant: str = "") -> dict[str, float]:
        """The session's limits (--sdperf-latency-pct, ...), where given; for ``variant``, also
        the last --sdperf-min-speedup whose name or glob matches it."""
        from fnmatch import fnmatchcase

        given = {"latency_pct": self.latency_pct, "memory_pct": self.memory_pct,
                 "min_ssim": self.min_ssim, "min_psnr": self.min_psnr}
        for pattern, floor in self.min_speedups:
            if variant and fnmatchcase(variant, pattern):
                given["min_speedup"] = floor
        return {k: v for k, v in given.items() if v is not None}

    def fixed_sets(self) -> dict[str, str]:
        """The --sdperf-set settings with one value (the last given for a name wins)."""
        return {k: v for k, v in dict(self.sets).items() if "," not in v}

    def swept_sets(self) -> list[dict[str, str]]:
        """Every combination of the --sdperf-set settings given a list of values
        (``tome_ratio=0.3,0.5``), in the order given; [] when none is a list. Each combination
        parametrizes every benchmark test (its id carries the values)."""
        import itertools

        lists = {k: [x.strip() for x in v.split(",")] for k, v in dict(self.sets).items() if "," in v}
        if not lists:
            return []
        return [dict(zip(lists, combo, strict=True)) for combo in itertools.product(*lists.values())]

    def workload_overrides(self) -> dict[str, int]:
        """What --sdperf-steps and --sdperf-size impose on every test's workload."""
        out: dict[str, int] = {}
        if self.steps is not None:
            out["steps"] = self.steps
        if self.size is not None:
            out["height"], out["width"] = self.size
        return out


def settings_from_config(config: Any) -> Settings:
    """Read and validate every option of ``OPTIONS``: command line first, then its ini twin,
    then its declared default. A relative baseline folder is under the rootdir."""
    values = {o.field: _read(config, o) for o in OPTIONS if o.field}
    baselines: Path = values["baselines_dir"]
    if not baselines.is_absolute():
        values["baselines_dir"] = Path(str(config.rootpath)) / baselines
    return Settings(**values, rounds_given=_given(config, option_for("rounds")),
                    warmup_given=_given(config, option_for("warmup")))


def _read(config: Any, option: Option) -> Any:
    """One option's value; a bad ini value is a UsageError naming the key."""
    value = config.getoption(option.ini_key)
    if option.kind == "flag":
        return bool(value) or bool(option.ini and _from_ini(config, option, False))
    if option.kind == "list":
        return tuple(value or ()) + tuple(_from_ini(config, option, ()))
    return value if value is not None else _from_ini(config, option, option.initial())


def _from_ini(config: Any, option: Option, default: Any) -> Any:
    """The ini twin's value, parsed (a linelist: each line), or ``default`` when unset."""
    raw = config.getini(option.ini_key)
    if raw in (None, "", []):
        return default
    try:
        if isinstance(raw, list):
            return [option.parse(line) for line in raw]
        return option.parse(raw) if isinstance(raw, str) else raw
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"ini key {option.ini_key} = {raw!r}: {exc}") from None


def _given(config: Any, option: Option) -> bool:
    """Whether the option was set on the command line or in its ini twin."""
    return config.getoption(option.ini_key) is not None or config.getini(option.ini_key) not in (
        None, "", [])
