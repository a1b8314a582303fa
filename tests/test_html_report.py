"""The HTML report: content from synthetic records, three real runs with history, and how it
renders in headless Chromium (a screenshot is kept under $SDPERF_ARTIFACTS when set)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_sdperf.html_report import read_results, render
from pytest_sdperf.measure.similarity import save_png
from pytest_sdperf.session import Record
from pytest_sdperf.testing import CONFTEST, SUITE, SdperfRun

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
VARIANTS = "fake,fake-slow,fake-noisy"
IMAGE_CHECK = """<script>window.addEventListener('load', () => {
  const bad = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute('data-images', document.images.length + ':' + bad);
  document.body.setAttribute('data-rows', document.querySelectorAll('#results tbody tr').length);
});</script></body>"""


def _png(path: Path, seed: int, noise: float = 0.0) -> str:
    rng = np.random.default_rng(seed)
    img = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    if noise:
        img = np.clip(img + np.random.default_rng(9).normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    save_png(img, path)
    return str(path)


def _record(variant: str, p50: float, ssim: float, verdict: str = "pass", **kw: object) -> Record:
    return Record(test_id=f"suites/test_t.py::test_gen[{variant}]", variant=variant, model_key="m",
                  workload_key="w", verdict=verdict, p50_s=p50, p90_s=p50 * 1.1, ssim=ssim, psnr=30.0,
                  memory={"peak_rss": 300 * 2**20}, info={"images_per_s": 1 / p50}, **kw)  # type: ignore[arg-type]


def test_report_holds_table_charts_images_and_environment(tmp_path: Path) -> None:
    ref = _png(tmp_path / "ref.png", 1)
    records = [
        _record("torch-fp32", 2.0, 1.0, images=(ref,), reference_images=(ref,)),
        _record("ov-int8", 0.5, 0.62, "regression", reason="SSIM: measured 0.62, limit 0.9",
                images=(_png(tmp_path / "int8.png", 1, noise=40),), reference_images=(ref,)),
        _record("torch-lost", 1.0, 0.99, images=(str(tmp_path / "gone.png"),), reference_images=(ref,),
                detectable_pct=12.6, detectable_floor_pct=11.2, latency_limit_pct=10.0),
    ]
    header = {"machine": {"key": "x86-test-4c", "cpu": "Test CPU"}, "environment": {"torch": "2.14.1"}}
    html = render(header, records, "torch-fp32")
    # A floor over the limit is shown in the sees cell, every floor in its title.
    assert "<td title='floor 11.2%: the smallest slowdown any number of rounds" in html
    assert ">&gt;13% (floor 11%)</td>" in html
    table = html.split("id='results'")[1].split("</table>")[0]
    assert table.count("<tr>") == 4  # header + 3 rows
    assert "4.00x" in table and "2.00x" in table and "1.00x" in table  # speedups against fp32
    assert "SSIM: measured 0.62, limit 0.9" in table and "regression" in table
    assert "0.500 s" in table and "300 MiB" in table
    # charts (speedup, memory, speed/quality, latency over the baseline with intervals), images
    assert len(re.findall(r"src=\"data:image/png;base64,", html)) == 4 + 3 + 3 + 1
    assert "not available" in html  # the vanished image of torch-lost says so
    assert "max 0/255" in html and re.search(r"max \d{2,3}/255", html)  # heat-map captions
    assert "Test CPU" in html and "2.14.1" in html
    assert not re.search(r"(src|href)=[\"']?(https?:|//)", html) and "<link" not in html
    assert "History" not in html  # no history given
    assert "id='noise'" not in html  # no round spreads in these records
    noisy = [_record(name, 1.0, 1.0, round_spread_pct=now, baseline_round_spread_pct=2.0)
             for name, now in (("a", 9.0), ("b", 11.0))]
    assert ("<div class='sub' id='noise'>Round-to-round noise (a robust SD of each round&#x27;s gated ratio, "
            "median of 2 tests): 10.0% this run, 2.0% in their baselines&#x27; recordings; this machine "
            "was noisier") in render(header, noisy, "torch-fp32")


def test_read_results_round_trips_the_json_and_rejects_other_files(tmp_path: Path) -> None:
    from pytest_sdperf.report import write_json

    path = tmp_path / "r.json"
    write_json(path, {"machine": {"key": "k"}, "environment": {}},
               [_record("fake", 0.1, 1.0, samples=(0.1, 0.11)), _record("fake-slow", 0.3, 1.0)], "fake")
    header, records, reference = read_results(path)
    assert header["machine"]["key"] == "k" and reference == "fake"
    assert records[0].samples == (0.1, 0.11) and records[1].variant == "fake-slow"
    (tmp_path / "bad.json").write_text('{"results": [{"nope": 1}]}')
    with pytest.raises(ValueError, match="not an sdperf results file"):
        read_results(tmp_path / "bad.json")


class _Folder:
    """Stands in for pytester (SdperfRun reads only ``path``), so runs can be module-scoped."""

    def __init__(self, path: Path) -> None:
        self.path = path


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> SdperfRun:
    """Three runs of the suite with the fake variants, JSON, HTML and the default history."""
    root = tmp_path_factory.mktemp("three-runs")
    run = SdperfRun(_Folder(root), rounds=3)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_suite.py").write_text(SUITE.format(extra=""))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    for _ in range(3):
        args = run.args("--sdperf-variants", VARIANTS, "--sdperf-json", "results.json",
                        "--sdperf-html", "report.html", "--sdperf-history", "default")
        done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert "sdperf summary" in done.stdout, done.stdout + done.stderr
    return run


@pytest.mark.slow
def test_three_runs_give_a_report_with_trend_lines(three_runs: SdperfRun) -> None:
    root = three_runs.root
    html = (root / "report.html").read_text()
    assert {r.variant for r in read_results(root / "results.json")[1]} == set(VARIANTS.split(","))
    table = html.split("id='results'")[1].split("</table>")[0]
    assert all(f"<b>{v}</b>" in table for v in VARIANTS.split(","))
    assert "regression" in table and "SSIM: measured" in table  # fake-noisy, with its reason
    images = html.split("id='images'")[1].split("<h2>")[0]
    assert images.count("<figure><img src=\"data:image/png") == 9  # 3 variants x (own, ref, diff)
    trends = html.split("id='trends'")[1].split("</div>")[0]
    assert trends.count("<img") == 3 and "3 recorded runs on this machine" in html
    with sqlite3.connect(root / "baselines" / "history.sqlite") as db:
        assert db.execute("select count(*) from sdperf_runs").fetchone() == (3,)
        assert db.execute("select count(*) from sdperf_results").fetchone() == (9,)


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(three_runs: SdperfRun, tmp_path: Path) -> None:
    """The table and every embedded image render; the screenshot is kept as an artifact."""
    report = three_runs.root / "report.html"
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", IMAGE_CHECK))
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=tmp_path / "p1").stdout
    found = re.search(r'data-images="(\d+):(\d+)" data-rows="(\d+)"', dom)
    assert found, dom[:2000]
    assert int(found.group(1)) >= 15 and found.group(2) == "0"  # all images decoded
    assert found.group(3) == "3"
    shot = tmp_path / "report-screenshot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1400,1900", report.as_uri(), profile=tmp_path / "p2")
    from PIL import Image

    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    assert len(np.unique(pixels, axis=0)) > 500  # a page, not a blank
    for colour in ((46, 125, 50), (198, 40, 40)):  # the green pass and red regression pills/bars
        assert (np.abs(pixels - colour).sum(axis=1) < 12).sum() > 200
    artifacts = os.environ.get("SDPERF_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)
        shutil.copy(report, Path(artifacts) / "report.html")
