"""The CI workflow: valid against GitHub's workflow schema (and actionlint where installed),
and doing what the project needs: nightly suite gating on baselines, per-push tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "nightly.yml"


def _schema_check(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is not installed")
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key 'on' as true
    return doc


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_workflow_matches_githubs_schema(schema: str) -> None:
    done = _schema_check(WORKFLOW, schema)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04"))
    assert _schema_check(broken, "vendor.github-workflows").returncode != 0


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not installed")
def test_actionlint_passes() -> None:
    done = subprocess.run(["actionlint", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _run_lines(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job["steps"])


def test_nightly_job_gates_on_baselines_and_uploads_json_and_html(workflow: dict[str, Any]) -> None:
    assert workflow["on"]["schedule"][0]["cron"]
    job = workflow["jobs"]["nightly"]
    assert "schedule" in job["if"]
    script = _run_lines(job)
    assert "pytest --sdperf suites/" in script
    assert "--sdperf-json sdperf-out/results.json" in script and "--sdperf-html sdperf-out/report.html" in script
    assert "baselines/$key.json" in script and "this_machine().key" in script
    suite = next(s for s in job["steps"] if "--sdperf suites/" in str(s.get("run", "")))
    assert not suite.get("continue-on-error") and "|| true" not in suite["run"]  # regressions fail the job
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert "sdperf-out/results.json" in upload["with"]["path"] and "sdperf-out/report.html" in upload["with"]["path"]


def test_push_job_runs_the_tests(workflow: dict[str, Any]) -> None:
    assert "push" in workflow["on"] and "pull_request" in workflow["on"]
    job = workflow["jobs"]["tests"]
    script = _run_lines(job)
    assert "bash .ci/bootstrap" in script and "pytest tests/" in script
    assert "push" in job["if"]
