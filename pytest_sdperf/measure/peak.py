"""The machine's FLOP/s limit: a theoretical CPU figure and a measured GEMM peak.

Theoretical: physical cores x maximum frequency x fp32 FLOPs per cycle of the vector ISA found
(an upper bound: all-core clocks under vector load run lower). Measured: the best FLOP/s of a
large ``torch.mm``, on the CPU over the session's CPUs or on the CUDA device in fp32, fp16 and
bf16; on a GPU that is the figure that counts. Usage::

    peak = MachinePeak(cpu_peak(), measured_peaks("cpu", usable_cpus()))
    peak.limit_for("cpu", "float32")   # (GFLOP/s, "measured GEMM (torch.mm float32 ...)")
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping

# CpuInfo, parse_cpuinfo, physical_cores and max_freq_khz are host facts; named here too.
from ..host import CpuInfo as CpuInfo
from ..host import cpu_info, usable_cpus
from ..host import max_freq_khz as max_freq_khz
from ..host import parse_cpuinfo as parse_cpuinfo
from ..host import physical_cores as physical_cores

# tfloat32: float32 products on the tensor cores (TF32), what PyTorch's default
# torch.backends.cudnn.allow_tf32=True gives a float32 model's convolutions on CUDA.
GPU_DTYPES = ("float32", "tfloat32", "float16", "bfloat16")


def flops_per_cycle(cpu: CpuInfo) -> tuple[int, str] | None:
    """fp32 FLOPs per cycle per core for the widest FMA the flags show, and the assumption.

    Two FMA units per core, each a multiply and an add per lane: AVX-512 64, AVX2+FMA 32,
    SSE 8, Arm NEON 16. AMD Zen 1 (family 23 below model 0x30, and Hygon's) splits 256-bit
    work into two 128-bit halves (16); Zen 4 (family 25) splits 512-bit work (32).
    """
    f = cpu.flags
    amd = cpu.vendor in ("AuthenticAMD", "HygonGenuine")
    if "avx512f" in f:
        if amd and cpu.family == 25:
            return 32, "AVX-512 on AMD Zen 4 (two 256-bit FMA units): 2 x 8 lanes x 2"
        return 64, "AVX-512 (assumes two 512-bit FMA units): 2 x 16 lanes x 2"
    if "avx2" in f and "fma" in f:
        zen1 = amd and (cpu.family == 24 or (cpu.family == 23 and (cpu.model or 0) < 0x30))
        if zen1:
            return 16, "AVX2+FMA on AMD Zen 1 (two 128-bit FMA units): 2 x 4 lanes x 2"
        return 32, "AVX2+FMA (assumes two 256-bit FMA units): 2 x 8 lanes x 2"
    if "asimd" in f:
        return 16, "Arm NEON (assumes two 128-bit FMA units): 2 x 4 lanes x 2"
    if "sse" in f:
        return 8, "SSE (no FMA): 4 lanes x (1 mul + 1 add)"
    return None


# What a CPU computes natively beside float32, from its flags, and the factor over fp32 FLOPs
# per cycle, best first: AVX512_BF16's VDPBF16PS does two bf16 products per 32-bit lane (2x);
# VNNI's VPDPBUSD four 8-bit products per 32-bit lane (4x, integer operations); without VNNI,
# AVX2's VPMADDUBSW two 8-bit products per 16-bit lane (at most 2x: OpenVINO's int8 UNet passed
# the float32 GEMM peak on such a CPU). AMX tiles do more, but the factor kept is the vector
# units' (the measured GEMM shows what a library reaches).
NATIVE_TYPES: Mapping[str, tuple[tuple[tuple[str, ...], int, str], ...]] = {
    "bfloat16": ((("avx512_bf16", "amx_bf16"), 2, "AVX512_BF16: 2 bf16 products per fp32 lane"),),
    "int8": ((("avx512_vnni", "avx_vnni", "amx_int8"), 4, "VNNI: 4 int8 products per 32-bit lane"),
             (("avx2",), 2, "AVX2 VPMADDUBSW: 2 int8 products per 16-bit lane, no VNNI")),
}


def native_type(cpu: CpuInfo | None, dtype: str) -> tuple[int, str] | None:
    """(factor over fp32, the instruction) where this CPU computes ``dtype`` natively, else None."""
    flags = cpu.flags if cpu else frozenset()
    return next(((factor, text) for need, factor, text in NATIVE_TYPES.get(dtype, ())
                 if flags & set(need)), None)


def native_types(cpu: CpuInfo | None) -> tuple[str, ...]:
    """The compute types this CPU runs natively: float32, then bfloat16 / int8 where its flags
    show the instructions."""
    return ("float32", *(t for t in NATIVE_TYPES if native_type(cpu, t)))


@dataclass(frozen=True)
class TheoreticalPeak:
    """cores x GHz x FLOPs per cycle (fp32); an upper bound, as all-core clocks run lower."""

    gflops_per_s: float
    cores: int
    ghz: float
    flops_per_cycle: int
    basis: str
    by_type: Mapping[str, float] = field(default_factory=dict)  # GFLOP/s (or GOP/s) per type

    def for_type(self, dtype: str) -> float:
        """The peak for ``dtype`` where the CPU computes it natively, else float32's."""
        return self.by_type.get(dtype, self.gflops_per_s)


def theoretical_peak(cpu: CpuInfo, cores: int, max_khz: int | None = None) -> TheoreticalPeak | None:
    """The fp32 peak from parsed facts; None when the ISA or the clock is unknown."""
    per_cycle = flops_per_cycle(cpu)
    if per_cycle is None or not (max_khz or cpu.mhz):
        return None
    ghz = max_khz / 1e6 if max_khz else (cpu.mhz or 0.0) / 1e3
    clock = "cpuinfo_max_freq" if max_khz else "current 'cpu MHz' (no cpufreq)"
    basis = (f"{cores} physical cores x {ghz:.2f} GHz ({clock}) x {per_cycle[0]} fp32 "
             f"FLOP/cycle ({per_cycle[1]})")
    fp32 = cores * ghz * per_cycle[0]
    by_type = {"float32": fp32}
    for dtype in NATIVE_TYPES:
        native = native_type(cpu, dtype)
        if native:
            by_type[dtype] = fp32 * native[0]
    return TheoreticalPeak(fp32, cores, ghz, per_cycle[0], basis, by_type)


def cpu_peak(cpus: set[int] | None = None) -> TheoreticalPeak | None:
    """The theoretical fp32 peak of ``cpus`` (default: this process's) read from the system."""
    cpus = cpus or usable_cpus()
    cpu = cpu_info()
    if cpu is None:
        return None
    return theoretical_peak(cpu, physical_cores(cpus), max_freq_khz(cpus))


@dataclass(frozen=True)
class GemmPeak:
    """The best FLOP/s of a large ``torch.mm`` on one device and dtype."""

    gflops_per_s: float
    device: str
    dtype: str
    basis: str


def gemm_peak(device: str = "cpu", dtype: str = "float32", n: int | None = None,
              budget_s: float = 0.5, min_reps: int = 3) -> GemmPeak:
    """Time ``torch.mm`` of two n x n matrices; the best of the timed products.

    Default n: 8192 on CUDA; on the CPU 1024 up to 8 threads, else 2048 (large enough to reach
    the GEMM plateau, small enough to keep the measurement near a second on a small machine).
    Runs at least ``min_reps`` timed products after one warm-up, more while within ``budget_s``.
    """
    import torch

    cuda = device.startswith("cuda")
    n = n or (8192 if cuda else 1024 if torch.get_num_threads() <= 8 else 2048)
    kind = getattr(torch, dtype)
    a, b = (torch.randn(n, n, device=device).to(kind) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=kind)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    torch.mm(a, b, out=out)
    sync()
    best, reps, start = float("inf"), 0, time.perf_counter()
    while reps < min_reps or (time.perf_counter() - start < budget_s and reps < 50):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        best, reps = min(best, time.perf_counter() - t0), reps + 1
    where = torch.cuda.get_device_name(device) if cuda else f"{torch.get_num_threads()} threads"
    basis = f"torch.mm {dtype} {n}x{n}, best of {reps}, {where}"
    return GemmPeak(2 * n**3 / best / 1e9, device, dtype, basis)


@contextlib.contextmanager
def whole_machine(cpus: set[int]) -> Iterator[None]:
    """Run on all of ``cpus`` with one torch thread per physical core, then restore.

    A variant may have pinned its worker or lowered its threads; the peak is the machine's.
    """
    import torch

    before, threads = usable_cpus(), torch.get_num_threads()
    try:
        os.sched_setaffinity(0, cpus)
        torch.set_num_threads(physical_cores(cpus))
        yield
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)


def measured_peaks(device: str = "cpu", cpus: set[int] | None = None) -> dict[str, GemmPeak]:
    """GEMM peaks by dtype: on the CPU (over ``cpus``) float32, and bfloat16 and int8 where the
    CPU computes them natively (``native_types``); fp32, TF32, fp16 and bf16 on CUDA."""
    if device.startswith("cuda"):
        return {d: _gpu_gemm_peak(device, d) for d in GPU_DTYPES}
    cpu = cpu_info()
    types = native_types(cpu)
    with whole_machine(cpus or usable_cpus()):
        found = {"float32": gemm_peak("cpu", "float32")}
        if "bfloat16" in types:
            found["bfloat16"] = gemm_peak("cpu", "bfloat16")
        # torch._int_mm is oneDNN's VNNI kernel; on AVX2 alone it is a slow reference loop
        # (2 GOP/s against 180 GFLOP/s in float32 here), no measure of what AVX2 int8 reaches.
        if (native_type(cpu, "int8") or (0, ""))[0] >= 4:
            int8 = int8_gemm_peak()
            if int8 is not None:
                found["int8"] = int8
        return found


def int8_gemm_peak(n: int = 1024, budget_s: float = 0.5, min_reps: int = 3) -> GemmPeak | None:
    """The best rate of an 8-bit matrix product on the CPU (``torch._int_mm``: int8 x int8 to
    int32, through oneDNN), in GOP/s; None where this torch has no CPU kernel for it."""
    import torch

    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is None:
        return None
    a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    try:
        int_mm(a, b)
    except (RuntimeError, NotImplementedError):
        return None
    best, reps, start = float("inf"), 0, time.perf_counter()
    while reps < min_reps or (time.perf_counter() - start < budget_s and reps < 50):
        t0 = time.perf_counter()
        int_mm(a, b)
        best, reps = min(best, time.perf_counter() - t0), reps + 1
    basis = f"torch._int_mm int8 {n}x{n}, best of {reps}, {torch.get_num_threads()} threads"
    return GemmPeak(2 * n**3 / best / 1e9, "cpu", "int8", basis)


def _gpu_gemm_peak(device: str, dtype: str) -> GemmPeak:
    """8192-square products, or 4096 where the variant's model leaves too little memory;
    ``tfloat32`` is a float32 product with TF32 allowed for it alone."""
    if dtype == "tfloat32":
        with _tf32_matmuls():
            found = _gpu_gemm_peak(device, "float32")
        return GemmPeak(found.gflops_per_s, found.device, dtype,
                        found.basis.replace("float32", "float32 on TF32 tensor cores", 1))
    try:
        return gemm_peak(device, dtype)
    except RuntimeError:  # torch.cuda.OutOfMemoryError is one
        return gemm_peak(device, dtype, n=4096)


@contextlib.contextmanager
def _tf32_matmuls() -> Iterator[None]:
    import torch

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@dataclass(frozen=True)
class MachinePeak:
    """The theoretical CPU peak (None when undetermined) and the measured GEMM peaks by dtype."""

    theoretical: TheoreticalPeak | None = None
    measured: Mapping[str, GemmPeak] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"theoretical": asdict(self.theoretical) if self.theoretical else None,
                "measured": {k: asdict(v) for k, v in self.measured.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachinePeak:
        """The inverse of ``to_dict``."""
        theo = data.get("theoretical")
        return cls(TheoreticalPeak(**theo) if theo else None,
                   {k: GemmPeak(**v) for k, v in (data.get("measured") or {}).items()})

    def limit_for(self, device: str, dtype: str = "float32") -> tuple[float, str] | None:
        """(GFLOP/s, basis) a variant on ``device`` computing in ``dtype`` is held to: the
        measured GEMM peak of that type, else (a type this machine does not compute natively,
        or whose peak was not measured) float32's, the basis saying so."""
        gpu = device.startswith("cuda")
        same = {k: v for k, v in self.measured.items() if v.device.startswith("cuda") == gpu}
        gemm, fp32 = same.get(dtype), same.get("float32")
        if gemm is not None and fp32 is not None and gemm.gflops_per_s < fp32.gflops_per_s:
            gemm = None  # a narrower type's GEMM slower than float32's is no kernel of its own
        theo = self.theoretical
        if gemm is None and fp32 and not gpu and theo and dtype != "float32" and dtype in theo.by_type:
            factor = theo.by_type[dtype] / theo.gflops_per_s
            return (fp32.gflops_per_s * factor,
                    f"measured GEMM ({fp32.basis}) x {factor:g}, {dtype}'s theoretical rate over "
                    f"float32's on this CPU (no faster {dtype} GEMM measured)")
        note = ""
        if gemm is None:
            gemm = same.get("float32")
            if dtype != "float32":
                note = f"; {dtype} held to the float32 peak: {self._why_not(dtype, gpu)}"
        if gemm:
            return gemm.gflops_per_s, f"measured GEMM ({gemm.basis}){note}"
        if self.theoretical and not gpu:
            return (self.theoretical.for_type(dtype),
                    f"theoretical {dtype if dtype in self.theoretical.by_type else 'float32'} "
                    f"({self.theoretical.basis})")
        return None

    def _why_not(self, dtype: str, gpu: bool) -> str:
        if not gpu and self.theoretical and self.theoretical.by_type and dtype not in self.theoretical.by_type:
            return "this CPU does not compute it natively"
        return "its peak was not measured here"
