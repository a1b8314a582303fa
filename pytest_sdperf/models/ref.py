"""Where a source model lives: the one type both model resolution and the variants use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelRef:
    """Where the source model lives.

    kind: ``tiny`` (the embedded model, built into ``path``), ``profile`` (an
        architecture-faithful profile such as ``sd15-arch``, built likewise), ``diffusers``
        (a local folder in diffusers layout), ``openvino`` (a folder holding an exported
        OpenVINO IR pipeline) or ``hub`` (a hub id, only on machines with network).
    key: a short content hash or id, used to key caches and reference images.
    arch: ``sd`` (SD 1.x/2.x pipelines), ``sdxl``, or ``""`` where unknown (a hub id).
    profile: the profile's name for kind ``profile`` (``sdxl-arch``), else ``""``.
    """

    kind: str
    location: str
    key: str
    allow_pickle: bool = False
    arch: str = ""
    profile: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the worker request."""
        return {
            "kind": self.kind,
            "location": self.location,
            "key": self.key,
            "allow_pickle": self.allow_pickle,
            "arch": self.arch,
            "profile": self.profile,
        }
