"""The variant registry: frozen specs, name/glob selection, availability and composition.

A variant is data, not code: its loader, transforms and availability probe are
``"module:function"`` references, so a worker process can rebuild it by import alone.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import itertools
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

BACKENDS = ("torch", "openvino", "any")


class VariantError(ValueError):
    """A variant name, pattern or composition that cannot be honoured; the message says why."""


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class VariantSpec:
    """Everything needed to build and judge one pipeline variant.

    name: the user-facing name, e.g. ``torch-bf16``.
    family: a group name for listings (``torch``, ``openvino``, ``system``...).
    backend: ``torch`` or ``openvino`` for pipeline-building variants, ``any`` for variants
        that only change the worker's environment (allocators, threads, pinning).
    loader: ``module:function`` taking a BuildContext and returning a Pipeline; None means
        the default PyTorch loader (diffusers, float32).
    transforms: ``module:function`` references applied in order to the loaded Pipeline.
    requires: importable module names the variant needs.
    needs_cuda: skip unless a CUDA device is present.
    env: environment variables set before the worker process starts.
    cpus: CPU list the worker pins itself to before importing anything heavy, e.g. ``"0"``.
    checks: ``module:function`` probes, each returning None or why the variant cannot run.
    thresholds: default threshold overrides for tests of this variant.
    order: where this variant's transforms run in a composition, lowest first (ties keep the
        order the user wrote): 10 precision, 20 component swaps, 30 structure (attention,
        token merging, VAE decoding), 40 precomputation, 80 graph capture (compile, IPEX),
        90 offloading (it installs device hooks, so it goes last).
    exclusive: group names; two parts of a composition sharing one cannot stack (e.g.
        ``dtype``: torch-bf16 and torch-fp16 both decide the weights' dtype).
    recipe: what this part asks of its loader, key -> plain value, for a loader that several
        parts share (e.g. ``{"weights": "hybrid"}`` for ov-int8-hybrid); a composition merges
        its parts' recipes, two parts giving one key different values cannot stack, and the
        loader reads the merged recipe from ``BuildContext.recipe``.
    yardstick: a variant timed beside this one, round by round, whose ratio the paired latency
        gate compares instead of the ratio to the reference variant, where this variant's
        timing moves with it far more than with the reference (ov-fp32 for the OpenVINO
        variants built on its runtime: measured in docs/measurements.md, "Which yardstick holds a ratio
        steady?"); a slowdown the two share is seen by the yardstick's own test. A composition
        has it where every part names the same one.

    Example (in a conftest.py)::

        def pytest_sdperf_add_variants(registry):
            registry.add(VariantSpec(name="my-fast", family="mine",
                                     description="my scheduler tweak",
                                     transforms=("mypkg.variants:use_my_scheduler",)))
    """

    name: str
    family: str
    description: str
    backend: str = "torch"
    loader: str | None = None
    transforms: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    needs_cuda: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    cpus: str | None = None
    checks: tuple[str, ...] = ()
    thresholds: Mapping[str, float] = field(default_factory=dict)
    parts: tuple[str, ...] = ()
    order: int = 50
    exclusive: tuple[str, ...] = ()
    recipe: Mapping[str, Any] = field(default_factory=dict)
    yardstick: str = ""

    def __post_init__(self) -> None:
        reserved = ",*?[] " if self.parts else "+,*?[] "
        if not self.name or any(ch in self.name for ch in reserved):
            raise VariantError(f"variant name {self.name!r} may not be empty or hold '+,*?[] '")
        if self.backend not in BACKENDS:
            raise VariantError(f"variant {self.name}: backend {self.backend!r} not in {BACKENDS}")
        for ref in (self.loader, *self.checks, *self.transforms):
            if ref is not None and ":" not in ref:
                raise VariantError(f"variant {self.name}: {ref!r} is not a 'module:function'")
        object.__setattr__(self, "env", _frozen(self.env))
        object.__setattr__(self, "thresholds", _frozen(self.thresholds))
        object.__setattr__(self, "recipe", _frozen(self.recipe))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the worker request."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "backend": self.backend,
            "loader": self.loader,
            "transforms": list(self.transforms),
            "requires": list(self.requires),
            "needs_cuda": self.needs_cuda,
            "env": dict(self.env),
            "cpus": self.cpus,
            "checks": list(self.checks),
            "thresholds": dict(self.thresholds),
            "parts": list(self.parts),
            "order": self.order,
            "exclusive": list(self.exclusive),
            "recipe": dict(self.recipe),
            "yardstick": self.yardstick,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariantSpec:
        """The inverse of ``to_dict``."""
        kw = dict(data)
        kw["transforms"] = tuple(kw.get("transforms", ()))
        kw["requires"] = tuple(kw.get("requires", ()))
        kw["parts"] = tuple(kw.get("parts", ()))
        kw["checks"] = tuple(kw.get("checks", ()))
        kw["exclusive"] = tuple(kw.get("exclusive", ()))
        return cls(**kw)


def resolve_ref(ref: str) -> Callable[..., Any]:
    """Import ``module:qualname`` and return the object."""
    module_name, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def compose(specs: Iterable[VariantSpec]) -> VariantSpec:
    """Stack variants, ``a+b+c``: one loader at most, one backend, no conflicting env or recipe.

    Transforms run by each part's ``order`` (precision, swaps, structure, precomputation,
    graph capture, offloading), parts of equal order as written; thresholds take the
    loosest of the parts; the recipe is the union of the parts' recipes; list variables
    (LD_PRELOAD) join the parts' entries as written, other variables must agree. Every
    rejection raises VariantError saying which parts clash.
    """
    parts = list(specs)
    name = "+".join(p.name for p in parts)
    _check_stackable(name, parts)
    ordered = sorted(parts, key=lambda p: p.order)
    return VariantSpec(
        name=name,
        family="composed",
        description=" + ".join(p.description for p in parts),
        backend=next((p.backend for p in parts if p.backend != "any"), "any"),
        loader=next((p.loader for p in parts if p.loader), None),
        transforms=tuple(t for p in ordered for t in p.transforms),
        requires=tuple(dict.fromkeys(r for p in parts for r in p.requires)),
        needs_cuda=any(p.needs_cuda for p in parts),
        env=_merged_env(name, parts),
        cpus=next((p.cpus for p in parts if p.cpus), None),
        checks=tuple(dict.fromkeys(c for p in parts for c in p.checks)),
        thresholds=_loosest([p.thresholds for p in parts]),
        parts=tuple(p.name for p in parts),
        order=min(p.order for p in parts),
        exclusive=tuple(dict.fromkeys(g for p in parts for g in p.exclusive)),
        recipe=_merged_recipe(name, parts),
        yardstick=_shared_yardstick(parts),
    )


def _shared_yardstick(parts: list[VariantSpec]) -> str:
    """The yardstick every part names (none where any part names none or another)."""
    named = {p.yardstick for p in parts}
    return named.pop() if len(named) == 1 else ""


def _check_stackable(name: str, parts: list[VariantSpec]) -> None:
    """Raise VariantError when ``parts`` cannot make one pipeline and one environment."""
    if len({p.name for p in parts}) != len(parts):
        raise VariantError(f"{name}: a variant appears twice")
    groups: dict[str, str] = {}
    for p in parts:
        for group in p.exclusive:
            if group in groups:
                raise VariantError(
                    f"{name}: {groups[group]} and {p.name} both decide the {group}; "
                    "they cannot be stacked, pick one"
                )
            groups[group] = p.name
    backends = {p.backend for p in parts} - {"any"}
    if len(backends) > 1:
        raise VariantError(f"{name}: cannot stack backends {sorted(backends)} in one pipeline")
    owners = [p.name for p in parts if p.loader]
    if len({p.loader for p in parts if p.loader}) > 1:
        raise VariantError(f"{name}: {owners} each load the pipeline their own way; pick one")
    cpus = {p.cpus for p in parts if p.cpus}
    if len(cpus) > 1:
        raise VariantError(f"{name}: conflicting CPU pinning {sorted(cpus)}")


# Environment variables that hold a list: variable -> separators (the first is written back).
# ld.so reads LD_PRELOAD as paths separated by spaces or colons.
LIST_ENV: Mapping[str, str] = MappingProxyType({"LD_PRELOAD": ": \t\n"})


def join_env(var: str, *values: str) -> str:
    """The entries of list variable ``var``'s ``values``, in order, each once.

    Example: ``join_env("LD_PRELOAD", "/a.so", "/b.so /a.so")`` is ``"/a.so:/b.so"``.
    """
    seps = LIST_ENV[var]
    split = f"[{re.escape(seps)}]+"
    entries = dict.fromkeys(e for value in values for e in re.split(split, value) if e)
    return seps[0].join(entries)


def merge_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` (the parent's environment) with a variant's ``extra`` variables set.

    Scalars are replaced. A list variable (``LIST_ENV``: LD_PRELOAD) keeps ``base``'s entries
    after ``extra``'s: the user's own preloads stay, and the variant's library comes first,
    so it wins symbol lookup and the variant measures what it names.

    Example: ``merge_env({"LD_PRELOAD": "/mine.so"}, {"LD_PRELOAD": "/jemalloc.so"})``
    gives ``{"LD_PRELOAD": "/jemalloc.so:/mine.so"}``.
    """
    out = dict(base)
    for key, value in extra.items():
        out[key] = join_env(key, value, base.get(key, "")) if key in LIST_ENV else value
    return out


def _merged_env(name: str, parts: list[VariantSpec]) -> dict[str, str]:
    """Scalars must agree between parts; list variables join in the parts' order."""
    scalars = [(p.name, {k: v for k, v in p.env.items() if k not in LIST_ENV}) for p in parts]
    out: dict[str, str] = _merged(name, scalars, "{key} is set to both {old!r} and {new!r}")
    for p in parts:
        for key in sorted(LIST_ENV.keys() & p.env.keys()):
            out[key] = join_env(key, out.get(key, ""), p.env[key])
    return out


def _merged_recipe(name: str, parts: list[VariantSpec]) -> dict[str, Any]:
    return _merged(name, [(p.name, p.recipe) for p in parts],
                   "{old_part} asks its loader for {key}={old!r} and {new_part} for {key}={new!r}; "
                   "they cannot be stacked, pick one")


def _merged(name: str, maps: Sequence[tuple[str, Mapping[str, Any]]], clash: str) -> dict[str, Any]:
    """The union of the parts' ``maps``; a key two parts set differently raises ``clash``."""
    out: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for part, mapping in maps:
        for key, value in mapping.items():
            if key in out and out[key] != value:
                raise VariantError(f"{name}: " + clash.format(
                    key=key, old=out[key], new=value, old_part=owner[key], new_part=part))
            out[key], owner[key] = value, part
    return out


def _loosest(maps: list[Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for mapping in maps:
        for key, value in mapping.items():
            looser = min if key.startswith("min_") else max
            out[key] = looser(out[key], value) if key in out else value
    return out


@dataclass(frozen=True)
class VariantPattern:
    """A family of names made on demand, e.g. ``env-threads-N`` for any N.

    regex: matched against the whole name; factory: (name, match) -> VariantSpec, raising
    VariantError for a value it refuses; shown: the name listings print (``env-threads-N``).
    """

    regex: str
    factory: Callable[[str, re.Match[str]], VariantSpec]
    shown: str
    description: str

    def make(self, name: str) -> VariantSpec | None:
        """The spec for ``name``, or None if the name does not match."""
        match = re.fullmatch(self.regex, name)
        if match is None:
            return None
        spec = self.factory(name, match)
        if spec.name != name:
            raise VariantError(f"pattern {self.shown} made {spec.name!r} for {name!r}")
        return spec


class VariantRegistry:
    """Name -> VariantSpec, in registration order (torch-fp32 first), plus name patterns."""

    def __init__(self) -> None:
        self._specs: dict[str, VariantSpec] = {}
        self._patterns: list[VariantPattern] = []

    def add_pattern(self, pattern: VariantPattern) -> None:
        """Register a name pattern; registered names take precedence over patterns."""
        self._patterns.append(pattern)

    def patterns(self) -> list[VariantPattern]:
        """The registered name patterns, for listings."""
        return list(self._patterns)

    def add(self, spec: VariantSpec) -> None:
        """Register a variant; a second variant of the same name is an error."""
        if spec.name in self._specs:
            raise VariantError(f"variant {spec.name!r} is registered twice")
        self._specs[spec.name] = spec

    def replace(self, spec: VariantSpec) -> None:
        """Put ``spec`` in place of the registered variant of its name (a test harness that
        injects a fault into one variant); an unknown name is an error."""
        if spec.name not in self._specs:
            raise VariantError(f"variant {spec.name!r} is not registered")
        self._specs[spec.name] = spec

    def __iter__(self) -> Iterator[VariantSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, name: str) -> VariantSpec:
        """A registered or composed (``a+b``) variant; unknown names list the known ones."""
        if "+" in name:
            return compose(self.get(part) for part in name.split("+"))
        if name in self._specs:
            return self._specs[name]
        for pattern in self._patterns:
            spec = pattern.make(name)
            if spec is not None:
                return spec
        known = [*self._specs, *(p.shown for p in self._patterns)]
        raise VariantError(f"unknown variant {name!r}; known variants: {', '.join(known)}")

    def family_of(self, name: str) -> str:
        """``name``'s family; "" for a variant not registered (a plugin's, or one no longer
        registered): a family of its own."""
        try:
            return self.get(name).family
        except VariantError:
            return ""

    def select(self, patterns: Iterable[str] | None) -> list[VariantSpec]:
        """Every registered variant (``patterns`` None), else ``expand(patterns)``."""
        if patterns is None:
            return list(self._specs.values())
        return self.expand(patterns)

    def expand(self, patterns: Iterable[str]) -> list[VariantSpec]:
        """The variants ``patterns`` name, in pattern order, then registry order within one.

        A name (``torch-bf16``, ``env-threads-3``, ``a+b``) is that variant, or a VariantError
        saying why not. A glob (``env-*``) is every registered name it matches. A glob with
        ``+`` matches part by part: ``torch-fp16+*`` is torch-fp16 composed with each variant
        it can stack with; compositions the registry refuses, a variant composed with itself,
        and an earlier hit's parts in another order are left out. A glob that yields nothing
        is a VariantError naming it.

        Example: ``registry.expand(["torch-fp32", "torch-fp16+*"])``.
        """
        chosen: dict[str, VariantSpec] = {}
        seen: set[frozenset[str]] = set()
        for pattern in patterns:
            if not _is_glob(pattern):
                spec = self.get(pattern)
                chosen[spec.name] = spec
                seen.add(frozenset(spec.parts or (spec.name,)))
                continue
            hits = self._glob(pattern)
            if not hits:
                raise VariantError(
                    f"--sdperf-variants pattern {pattern!r} matches no variant"
                    + (" it can compose" if "+" in pattern else "")
                    + f"; known variants: {', '.join(self._specs)}"
                )
            for spec in hits:
                key = frozenset(spec.parts or (spec.name,))
                if spec.name not in chosen and key not in seen:
                    chosen[spec.name] = spec
                    seen.add(key)
        return list(chosen.values())

    def _glob(self, pattern: str) -> list[VariantSpec]:
        """A glob's variants: registered names, or (with ``+``) the valid compositions."""
        if "+" not in pattern:
            return [s for n, s in self._specs.items() if fnmatch.fnmatchcase(n, pattern)]
        choices = [self._part_names(part) for part in pattern.split("+")]
        out = []
        for names in itertools.product(*choices):
            if len(set(names)) < len(names):
                continue  # a+a: the registry refuses it anyway; say nothing
            try:
                out.append(self.get("+".join(names)))
            except VariantError:
                continue  # refused compositions are not part of what a glob means
        return out

    def _part_names(self, part: str) -> list[str]:
        """One part of a composed glob: the registered names it matches, or itself."""
        if _is_glob(part):
            return [n for n in self._specs if fnmatch.fnmatchcase(n, part)]
        self.get(part)  # an unknown plain part is the user's typo: say so
        return [part]


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")
