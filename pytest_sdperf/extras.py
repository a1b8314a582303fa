"""Optional features and the pip extra each needs; a missing one is told by name, early.

``pip install pytest-sdperf`` gives the plugin and its gates. The HTML report and the
pytest-benchmark JSON need the ``report`` extra, the history the ``history`` extra. Whether a
module is there is asked with ``importlib.util.find_spec``, which imports nothing. Usage::

    problem = HTML_REPORT.problem()   # None, or "the HTML report needs matplotlib: pip install ..."
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings


@dataclass(frozen=True)
class Feature:
    """A feature, the extra that installs it, and the (import name, distribution) it needs."""

    name: str
    extra: str
    modules: tuple[tuple[str, str], ...]

    def missing(self) -> list[str]:
        """The distributions whose modules cannot be found (a None in sys.modules counts)."""
        return [dist for module, dist in self.modules if _find(module) is None]

    def problem(self) -> str | None:
        """None when the feature can run, else a one-line message with the pip command."""
        gone = self.missing()
        if not gone:
            return None
        return f"{self.name} needs {' and '.join(gone)}: pip install 'pytest-sdperf[{self.extra}]'"


def _find(module: str) -> object | None:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return None


HTML_REPORT = Feature("the HTML report", "report", (("matplotlib", "matplotlib"),))
BENCHMARK_JSON = Feature("the pytest-benchmark JSON", "report", (("pytest_benchmark", "pytest-benchmark"),))
HISTORY = Feature("the history", "history", (("sqlalchemy", "SQLAlchemy"), ("ruptures", "ruptures")))


def settings_problems(settings: Settings) -> list[str]:
    """What the options of an ``--sdperf`` session ask for that is not installed."""
    if not settings.enabled:
        return []
    wanted = ((settings.html_path, HTML_REPORT), (settings.benchmark_json, BENCHMARK_JSON),
              (settings.history, HISTORY))
    return [problem for asked, feature in wanted if asked and (problem := feature.problem())]
