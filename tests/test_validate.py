"""The gate-validation harness, reduced: one repetition of each condition on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")


def test_harness_faults_trip_the_right_gates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_sdperf import validate

    json_out = tmp_path / "gates.json"
    assert validate.main(["--runs", "1", "--rounds", "3", "--slowdowns", "25",
                          "--cache-dir", str(tmp_path / "cache"), "--json", str(json_out)]) == 0
    printed = capsys.readouterr().out
    assert "| A/A | 1 |" in printed and "| +25% work | 1 |" in printed
    import json

    tallies = json.loads(json_out.read_text())
    assert tallies["quality fault"]["similarity_failed"] == 1
    assert tallies["memory fault"]["memory_failed"] == 1
    assert tallies["A/A"]["similarity_failed"] == 0 and tallies["A/A"]["memory_failed"] == 0
    assert tallies["+25% work"]["similarity_failed"] == 0
    assert tallies["A/A"]["rounds"] == [3]  # fixed rounds: as asked
