"""The fork server: workers forked from it measure as spawned ones do, the rule says which may
be forked, and every way it can fail (a refusal, a killed child, its own death) ends in a
spawned worker or an outcome, never a hang.

Most tests use a light server that preloads the fake pipeline's modules and serves the fake
variants (``pytest_sdperf.testing``), so no model is built; one starts the real one.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest

from pytest_sdperf.models.ref import ModelRef
from pytest_sdperf.protocol import WorkerRequest
from pytest_sdperf.runner import DrivenWorker, WorkerGone, run_worker, worker_env
from pytest_sdperf.testing import fake_specs, make_fake_model
from pytest_sdperf.variants.registry import VariantSpec
from pytest_sdperf.workload import Workload
from pytest_sdperf.zygote import ForkedWorker, Zygote

LIGHT = ("pytest_sdperf.worker", "pytest_sdperf.bench", "pytest_sdperf.protocol", "pytest_sdperf.testing")
FAKES = ("pytest_sdperf.testing:",)
TIMEOUT_S = 60.0


def _request(tmp_path: Path, name: str = "fake", **changes: object) -> WorkerRequest:
    spec = {s.name: s for s in fake_specs()}[name]
    if changes:
        spec = VariantSpec.from_dict({**spec.to_dict(), **changes})
    model = make_fake_model(tmp_path / "model")
    return WorkerRequest(variant=spec, model=ModelRef("diffusers", str(model), "fake-0000"),
                         workload=Workload(steps=2, height=32, width=32), cache_dir=tmp_path / "cache",
                         device="cpu", out_dir=tmp_path / "images", rounds=2, warmup=0)


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    """A light fork server for the fake variants."""
    server = Zygote(worker_env({}), preload=LIGHT, loaders=FAKES, ready_s=120.0)
    server.start()
    yield server
    server.close()


def _driven(tmp_path: Path, zygote: Zygote, name: str = "w") -> DrivenWorker:
    worker = DrivenWorker(_request(tmp_path / name), tmp_path / name, TIMEOUT_S, {}, 0.0, zygote)
    worker.start()
    assert isinstance(worker.proc, ForkedWorker)
    return worker


def test_a_forked_worker_measures_a_fake_variant(tmp_path: Path, zygote: Zygote) -> None:
    outcome = run_worker(_request(tmp_path), tmp_path, TIMEOUT_S, {}, launcher=zygote)
    assert outcome.measured is not None, outcome.failure_text("fake", TIMEOUT_S)
    assert (zygote.forked, zygote.spawned, outcome.returncode) == (1, 0, 0)
    assert outcome.measured.latency is not None and len(outcome.measured.latency.samples) == 2


def test_two_driven_workers_alive_at_once_each_get_their_exit_status(tmp_path: Path,
                                                                     zygote: Zygote) -> None:
    reference, variant = _driven(tmp_path, zygote, "ref"), _driven(tmp_path, zygote, "var")
    for worker in (variant, reference, reference, variant):  # ABBA
        assert float(worker.ask(cmd="round", calibrate=False)["seconds"]) > 0
    done = variant.finish([1.0])
    assert done.measured is not None and done.returncode == 0
    assert reference.finish().returncode == 0 and zygote.forked == 2


def test_a_different_environment_a_pinned_variant_or_another_loader_spawns(tmp_path: Path,
                                                                           zygote: Zygote) -> None:
    fake = _request(tmp_path).variant
    plain = worker_env({})
    assert zygote.why_spawned(fake, plain) == ""
    assert "environment" in zygote.why_spawned(fake, worker_env({"OMP_NUM_THREADS": "1"}))
    assert "pinned" in zygote.why_spawned(_request(tmp_path, cpus="0").variant, plain)
    torch_fp32 = VariantSpec(name="torch-fp32", family="torch", description="d")  # default loader
    assert "loader" in zygote.why_spawned(torch_fp32, plain)
    assert Zygote(plain).why_spawned(torch_fp32, plain) == ""  # the real server serves it
    outcome = run_worker(_request(tmp_path), tmp_path, TIMEOUT_S, {"SDPERF_ZYGOTE_TEST": "1"},
                         launcher=zygote)
    assert outcome.measured is not None and (zygote.forked, zygote.spawned) == (0, 1)


def test_a_child_that_dies_is_a_crash_with_its_exit_status(tmp_path: Path, zygote: Zygote) -> None:
    crashed = run_worker(_request(tmp_path / "c", "fake-crash"), tmp_path / "c", TIMEOUT_S, {},
                         launcher=zygote)
    assert (crashed.status, crashed.returncode) == ("crash", 3)  # os._exit(3) in the fake
    hung = run_worker(_request(tmp_path / "h", "fake-hang"), tmp_path / "h", 3.0, {}, launcher=zygote)
    assert hung.status == "timeout" and zygote.forked == 2  # the parent's killpg reached it
    worker = _driven(tmp_path, zygote)
    os.kill(worker.proc.pid, signal.SIGKILL)
    with pytest.raises(WorkerGone) as gone:
        worker.ask(cmd="round")
    assert (gone.value.outcome.status, gone.value.outcome.returncode) == ("crash", -signal.SIGKILL)


def test_the_server_killed_while_its_children_run_hangs_nothing(tmp_path: Path, zygote: Zygote) -> None:
    finishing, killed = _driven(tmp_path, zygote, "a"), _driven(tmp_path, zygote, "b")
    assert zygote.proc is not None
    zygote.proc.kill()
    zygote.proc.wait()
    assert float(finishing.ask(cmd="round")["seconds"]) > 0  # it works on without the server
    done = finishing.finish()  # its result is there; its exit status went with the server
    assert done.measured is not None and done.returncode is None
    os.kill(killed.proc.pid, signal.SIGKILL)
    with pytest.raises(WorkerGone) as gone:
        killed.ask(cmd="round")
    assert (gone.value.outcome.status, gone.value.outcome.returncode) == ("crash", None)
    after = run_worker(_request(tmp_path / "c"), tmp_path / "c", TIMEOUT_S, {}, launcher=zygote)
    assert after.measured is not None and zygote.spawned == 1 and "exited" in zygote.problem


def test_a_server_with_a_second_thread_refuses_and_the_worker_is_spawned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sdperf_second_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    server = Zygote(worker_env({}), preload=(*LIGHT, "sdperf_second_thread"), loaders=FAKES,
                    ready_s=120.0)
    try:
        outcome = run_worker(_request(tmp_path), tmp_path / "w", TIMEOUT_S, {}, launcher=server)
    finally:
        server.close()
    assert outcome.measured is not None, outcome.failure_text("fake", TIMEOUT_S)
    assert (server.forked, server.spawned) == (0, 1)
    assert "not single-threaded (2 threads)" in server.refusals[0]


def test_the_real_server_is_single_threaded_and_never_loads_openvino(tmp_path: Path) -> None:
    """numpy's and scipy's OpenBLAS start threads as they load; the server ends them (as their
    fork handlers do), or it would refuse every fork."""
    pytest.importorskip("diffusers")
    server = Zygote(worker_env({}), loaders=(*FAKES, "pytest_sdperf.variants."), ready_s=120.0)
    try:
        outcome = run_worker(_request(tmp_path), tmp_path / "w", TIMEOUT_S, {}, launcher=server)
        assert server.proc is not None
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    finally:
        server.close()
    assert outcome.measured is not None, outcome.failure_text("fake", TIMEOUT_S)
    assert (server.forked, server.refusals, server.problem) == (1, [], "")
    assert "libtorch" in maps and "openvino" not in maps and "nncf" not in maps


def test_a_server_not_ready_in_time_is_given_up_and_off_means_never(tmp_path: Path) -> None:
    from pytest_sdperf.config import Settings, option_for
    from pytest_sdperf.session import SdperfState
    from pytest_sdperf.variants.registry import VariantRegistry

    server = Zygote(worker_env({}), preload=LIGHT, loaders=FAKES, ready_s=0.0)
    try:
        outcome = run_worker(_request(tmp_path), tmp_path / "w", TIMEOUT_S, {}, launcher=server)
    finally:
        server.close()
    assert outcome.measured is not None and (server.forked, server.spawned) == (0, 1)
    assert "not ready within 0 s" in server.problem
    assert option_for("fork_server").parse("off") is False
    off = SdperfState(Settings(fork_server=False), VariantRegistry(), tmp_path)
    assert off.fork_server() is None
    assert SdperfState(Settings(), VariantRegistry(), tmp_path).fork_server() is not None
