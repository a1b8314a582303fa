"""The key under which the session's state lives in ``config.stash`` (``SdperfState``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .session import SdperfState  # noqa: F401  (named in a string below)

STATE = pytest.StashKey["SdperfState"]()
