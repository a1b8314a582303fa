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


def test_nightly_job_gates_on_baselines_in_shards(workflow: dict[str, Any]) -> None:
    assert workflow["on"]["schedule"][0]["cron"]
    job = workflow["jobs"]["nightly"]
    assert "schedule" in job["if"]
    matrix = job["strategy"]["matrix"]
    assert matrix["shard"] == list(range(1, int(job["env"]["SHARDS"]) + 1))  # every shard of SHARDS
    assert not job["strategy"]["fail-fast"]  # one regressed shard does not cancel the others
    script = _run_lines(job)
    assert "pytest --sdperf suites/" in script and "--sdperf-strict" in script
    assert '--sdperf-shard "${{ matrix.shard }}/$SHARDS"' in script
    assert "baselines/$key.json" in script and "this_machine().key" in script
    suite = next(s for s in job["steps"] if "--sdperf suites/" in str(s.get("run", "")))
    assert not suite.get("continue-on-error") and "|| true" not in suite["run"]  # regressions fail the job
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert "sdperf-out/" in upload["with"]["path"] and "baselines/*.shard-*-of-*.json" in upload["with"]["path"]


def test_merge_job_fans_in_every_shard_and_fails_on_a_regression(workflow: dict[str, Any]) -> None:
    shards, merge = workflow["jobs"]["nightly"], workflow["jobs"]["nightly-merge"]
    assert merge["needs"] == "nightly" and merge["if"].startswith("always()")  # runs after failed shards too
    assert merge["strategy"]["matrix"]["machine_key"] == shards["strategy"]["matrix"]["machine_key"]
    download = next(s for s in merge["steps"] if str(s.get("uses", "")).startswith("actions/download-artifact"))
    assert download["with"]["pattern"] == "sdperf-${{ matrix.machine_key }}-shard-*"
    script = _run_lines(merge)
    assert "sdperf merge sdperf-out/results.json shards/*/sdperf-out/results-*.json" in script
    assert '--summary "$GITHUB_STEP_SUMMARY"' in script and '--history "$SDPERF_HISTORY"' in script
    assert "sdperf report sdperf-out/results.json --html sdperf-out/report.html" in script
    assert 'exit "$status"' in script  # the merge's exit status (1: a regression) is the job's


def test_pull_request_job_runs_a_subset_against_mains_baseline(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["pr-suite"]
    assert "pull_request" in job["if"] and "head.repo.full_name == github.repository" in job["if"]
    script = _run_lines(job)
    assert 'git checkout "origin/${{ github.base_ref }}" -- baselines/' in script
    assert '--sdperf-variants "$VARIANTS"' in script
    assert 'sdperf summary sdperf-out/results.json >> "$GITHUB_STEP_SUMMARY"' in script


def test_push_job_runs_the_tests(workflow: dict[str, Any]) -> None:
    assert "push" in workflow["on"] and "pull_request" in workflow["on"]
    job = workflow["jobs"]["tests"]
    script = _run_lines(job)
    assert "bash .ci/bootstrap" in script and "pytest tests/" in script
    assert "push" in job["if"]


def test_weekly_jobs_run_the_tox_matrix_and_the_package_sets_head_to_head(workflow: dict[str, Any]) -> None:
    import configparser

    crons = [c["cron"] for c in workflow["on"]["schedule"]]
    assert len(crons) == 2 and crons[0] in workflow["jobs"]["nightly"]["if"]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(WORKFLOW.parents[2] / "tox.ini")
    envs = {name.split(":", 1)[1] for name in tox.sections() if name.startswith("testenv:")}
    matrix = workflow["jobs"]["tox-matrix"]
    assert crons[1] in matrix["if"]
    assert set(matrix["strategy"]["matrix"]["env"]) == {"torch213", "torch214", "diffusers035", "diffusers039",
                                                       "ov2025", "ov2026"}
    against = workflow["jobs"]["tox-against"]
    assert crons[1] in against["if"] and "bash .ci/bootstrap" in _run_lines(against)
    wanted = _run_lines(against).split("tox -e ", 1)[1].split()[0].split(",")
    assert set(wanted) == {e for e in envs if e.startswith("vs-")}  # every head-to-head env runs
    assert "--sdperf-against" in tox["vs"]["commands"]
