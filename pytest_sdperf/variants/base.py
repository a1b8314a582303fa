"""Worker-side types that loaders and transforms receive and return.

A loader is ``def load(ctx: BuildContext) -> Pipeline``; a transform is
``def apply(pipeline: Pipeline, ctx: BuildContext) -> None`` (it mutates ``pipeline``).
Nothing here imports torch, so plugin code can import it cheaply.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, TypeVar

from ..models.ref import ModelRef
from ..workload import Workload

__all__ = ["BuildContext", "ModelRef", "Pipeline", "SkipVariant"]

T = TypeVar("T")


class SkipVariant(Exception):
    """Raised by a loader or transform when this machine cannot run the variant."""


# Token merging (tomesd), shared by the PyTorch ``tome`` and the OpenVINO ``ov-tome`` variants.
DEFAULT_TOME_RATIO = 0.4  # reference A's ratio
MAX_TOME_RATIO = 0.75  # tomesd's limit for its 2x2 stride: 1 - 1/(sx*sy)


def parse_tome_ratio(text: str) -> float:
    """A token-merging ratio (setting ``tome_ratio``) in (0, 0.75)."""
    ratio = float(text)
    if not 0.0 < ratio < MAX_TOME_RATIO:
        raise ValueError(f"must be above 0 and below {MAX_TOME_RATIO}")
    return ratio


def parse_bool(text: str) -> bool:
    """A yes/no setting: 1/0, true/false, yes/no (any case)."""
    lowered = text.lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no"):
        raise ValueError("must be true or false")
    return lowered in ("1", "true", "yes")


@dataclass(frozen=True)
class BuildContext:
    """What a loader or transform may read: model, workload, cache, device and settings.

    variant: the full variant name being built (``a+b`` for a composition), for messages.
    recipe: the variant's ``VariantSpec.recipe`` (for a composition, the parts' recipes as the
        registry merged them), so a loader that several parts share learns what they ask of it
        without reading the name (e.g. ``{"weights": "hybrid", "tome": True}``).
    """

    model: ModelRef
    workload: Workload
    cache_dir: Path
    device: str = "cpu"
    settings: Mapping[str, str] = field(default_factory=dict)
    variant: str = ""
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A plain dict: builders get the context pickled into a child process, and a frozen
        # spec's recipe (a mappingproxy) cannot be pickled.
        object.__setattr__(self, "recipe", dict(self.recipe))

    def setting(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        """A ``--sdperf-set name=value`` setting parsed with ``parse``, else ``default``."""
        raw = self.settings.get(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ValueError(f"--sdperf-set {name}={raw!r}: {exc}") from None


@dataclass
class Pipeline:
    """A runnable pipeline plus how to call it.

    pipe: the diffusers-style pipeline object.
    backend: ``torch`` or ``openvino``.
    call_kwargs: extra keyword arguments for every call (e.g. prompt embeddings).
    contexts: factories of context managers entered around every call (e.g. autocast).
    info: figures the build produced (``export_s``, ``compile_s``, ``model_size_bytes``...).
    generate: replaces the default call when set (e.g. throughput mode); takes
        (pipeline, workload, latents) and returns images as a float array (N, H, W, 3).
    prepare_latents: turns the workload's float32 numpy latents into what ``pipe`` takes;
        default: a torch tensor of the UNet's dtype on the pipeline's device.
    """

    pipe: Any
    backend: str = "torch"
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    contexts: list[Callable[[], ContextManager[Any]]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    generate: Callable[[Pipeline, Workload, Any], Any] | None = None
    prepare_latents: Callable[[Any, Pipeline, BuildContext], Any] | None = None

    def entered(self) -> contextlib.ExitStack:
        """An ExitStack with every call context entered."""
        stack = contextlib.ExitStack()
        for factory in self.contexts:
            stack.enter_context(factory())
        return stack
