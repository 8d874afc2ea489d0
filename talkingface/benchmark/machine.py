"""What a benchmark ran on, and that machine's limit: the CPU (model, SIMD flags, threads) or GPU, the software,
and the best matrix-product rate of the device and dtype measured in the same run."""
from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch

from ..device import CPU_BF16_FLAGS, cpu_flags, cpuinfo_field

# the flags that decide which kernels run (AVX2 / AVX-512 / bf16 dot products / AMX tiles)
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", *CPU_BF16_FLAGS, "amx_tile", "amx_int8")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """The facts that make two reports comparable: CPU model and flags, cores and threads, PyTorch's kernel level,
    versions, the device's name."""
    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_flags": [f for f in REPORTED_FLAGS if f in flags], "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "aten_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device | None = None, dtype: str = "fp32", size: int | None = None,
                       repeats: int = 5) -> float:
    """The best of ``repeats`` ``size`` x ``size`` matrix products in ``dtype`` on ``device`` (default the CPU), in
    GFLOP/s: the machine's practical limit for dense work (4096 on a CPU, 8192 on a GPU by default)."""
    device = device or torch.device("cpu")
    size = size or (8192 if device.type == "cuda" else 4096)
    kind = TORCH_DTYPES[dtype]
    a = torch.randn(size, size, device=device).to(kind)
    b = torch.randn(size, size, device=device).to(kind)
    with torch.no_grad():
        a @ b  # warm-up: kernel choice, caches
        _sync(device)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def busy_other_cores(before: tuple[int, int], after: tuple[int, int], seconds: float) -> float | None:
    """Cores kept busy by other processes between two ``cpu_times`` readings over ``seconds`` (a disturbed run shows
    here); None where /proc is absent."""
    if not before or not after or seconds <= 0:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    other = (after[0] - before[0]) - (after[1] - before[1])
    return round(max(other, 0) / hz / seconds, 3)


def cpu_times() -> tuple[int, int] | tuple[()]:
    """(the machine's busy clock ticks, this process's and its waited-for children's) from /proc; () without it."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:9]]
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return ()
    return sum(values) - values[3] - values[4], sum(int(v) for v in fields[11:15])
