"""Instances: N workers of one variant, each pinned to its own CPUs, driven as one (Intel's
multi-instance recipe for PyTorch throughput: ``ipex.cpu.launch --ninstances N``).

The sweep's ``instances`` axis (``@pytest.mark.sdperf(sweep="instances", ...)``) measures a
variant as ``InstanceGroup``: the usable CPUs are split into N contiguous shares, each worker
pinned to its share (``sched_setaffinity``, as taskset does) with its OpenMP/MKL threads set to
the share's size, all started together (each builds and warms up in its own process). A round
sends every instance its call at once and lasts until the last one answers (the slowest
instance's seconds: the N images are all made then); only the first instance times the
calibration workload, with the others idle. The result is the first instance's (its images,
memory and environment: memory is per instance), its rounds replaced by the group's,
``info["instances"]`` and ``info["instance_cpus"]`` added. The group has ``DrivenWorker``'s
interface, so ``pairing.measure_paired`` drives it beside the reference worker as it drives
one worker.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from .host import cpu_list, usable_cpus
from .measure.latency import LatencyStats
from .protocol import WorkerRequest
from .runner import DrivenWorker, WorkerOutcome


class InstancesError(ValueError):
    """More instances than CPUs, or a variant already pinned; the message says which."""


def split_cpus(cpus: list[int], count: int) -> list[list[int]]:
    """``cpus`` in ``count`` contiguous shares as even as they can be (the first ones larger);
    InstancesError with fewer CPUs than instances."""
    ordered = sorted(cpus)
    if count < 1 or count > len(ordered):
        raise InstancesError(f"instances={count}: this machine offers {len(ordered)} CPU(s) "
                             f"({ordered}); each instance needs its own")
    size, extra = divmod(len(ordered), count)
    shares, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        shares.append(ordered[start:end])
        start = end
    return shares


class InstanceGroup:
    """``count`` pinned workers of ``request``'s variant driven together, on shares of the
    request's ``machine_cpus`` (see the module)."""

    def __init__(self, request: WorkerRequest, workdir: Path, timeout_s: float, env: Mapping[str, str],
                 hang_floor_s: float, count: int) -> None:
        if request.variant.cpus:
            raise InstancesError(f"{request.variant.name} pins itself to CPUs {request.variant.cpus}; "
                                 "instances pin each worker to its own share")
        self.shares = split_cpus(sorted(request.machine_cpus or usable_cpus()), count)
        self.walls: list[float] = []
        self.workers: list[DrivenWorker] = []
        self.last_reply: dict[str, Any] = {}
        try:
            for i, share in enumerate(self.shares):
                text, threads = cpu_list(share), str(len(share))
                req = dataclasses.replace(
                    request, variant=dataclasses.replace(request.variant, cpus=text),
                    out_dir=workdir / f"instance{i}" / "images",
                    measure_peak=request.measure_peak and i == 0,
                    memray_capture=request.memray_capture if i == 0 else None)
                self.workers.append(DrivenWorker(
                    req, workdir / f"instance{i}", timeout_s,
                    {**env, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}, hang_floor_s))
        except BaseException:
            self.close()
            raise
        self.proc = self.workers[0].proc

    def start(self) -> None:
        """Wait until every instance is built and warm."""
        for worker in self.workers:
            worker.start()
        self.last_reply = self.workers[0].last_reply

    def ask(self, **cmd: Any) -> dict[str, Any]:
        """A round: every instance's call at once, its seconds the slowest's (the first
        instance's calibration, when asked); any other command: each instance in turn."""
        if cmd.get("cmd") == "round":
            for i, worker in enumerate(self.workers):
                worker.send(**{**cmd, "calibrate": bool(cmd.get("calibrate")) and i == 0})
            replies = [worker.reply() for worker in self.workers]
            seconds = max(float(r["seconds"]) for r in replies)
            self.walls.append(seconds)
            self.last_reply = {**replies[0], "seconds": seconds}
            return self.last_reply
        if cmd.get("cmd") == "restart":
            self.walls = []
        replies = [worker.ask(**cmd) for worker in self.workers]
        self.last_reply = replies[0]
        return self.last_reply

    def finish(self, reference: list[float] | None = None) -> WorkerOutcome:
        """The first instance's result, its rounds the group's; the others closed."""
        for worker in self.workers[1:]:
            worker.close()
        outcome = self.workers[0].finish(reference)
        result = outcome.measured
        if result is None or result.latency is None:
            return outcome
        lat = result.latency
        group = LatencyStats.from_samples(self.walls, lat.first_call_s, lat.stages, lat.calibration,
                                          lat.calibration_kernel, lat.reference)
        info = {**result.info, "instances": len(self.workers),
                "instance_cpus": [cpu_list(s) for s in self.shares]}
        return dataclasses.replace(outcome, result=dataclasses.replace(result, latency=group, info=info))

    def close(self) -> None:
        """End every instance."""
        for worker in self.workers:
            worker.close()
