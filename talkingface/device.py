"""Choosing the compute device and the compute dtype it runs at full speed."""
from __future__ import annotations

import contextlib
import os

import torch

from .errors import ConfigError


def resolve_device(spec: str | None = "auto") -> torch.device:
    """``auto`` -> the local rank's CUDA device when CUDA is available, else CPU; or an explicit name."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"device {spec!r} is not a valid torch device ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available; use device=auto or cpu")
    return device


DTYPES = ("fp32", "bf16", "fp16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still include bf16 dot products (avx512_core_bf16 and above)
_ONEDNN_BF16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "ALL", "DEFAULT"}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo_field(*names: str) -> str | None:
    """The value of the first /proc/cpuinfo line that starts with one of ``names`` (None without one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(names):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    return set((cpuinfo_field("flags", "Features") or "").split())


def cpu_bf16_refusal(flags: set[str] | None = None) -> str | None:
    """Why bf16 would not run at bf16 speed on this CPU (None: it does): the CPU lacks bf16 dot products
    (AVX512-BF16 or AMX), or ATen's kernels or oneDNN are held below them (ATEN_CPU_CAPABILITY,
    ONEDNN_MAX_CPU_ISA, oneDNN disabled). PyTorch would emulate bf16 there, slower than fp32."""
    flags = cpu_flags() if flags is None else flags
    if not flags & set(CPU_BF16_FLAGS):
        return f"this CPU has no bf16 arithmetic (neither of {', '.join(CPU_BF16_FLAGS)} in /proc/cpuinfo)"
    capability = str(torch.backends.cpu.get_cpu_capability())
    if not capability.startswith(("AVX512", "AMX")):
        return f"PyTorch's CPU kernels are held at {capability} (ATEN_CPU_CAPABILITY), below AVX-512"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().upper()
    if isa and isa not in _ONEDNN_BF16_ISAS:
        return f"oneDNN is held at {isa} (ONEDNN_MAX_CPU_ISA), below AVX512_CORE_BF16"
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return "oneDNN (mkldnn) is not available or disabled in this PyTorch"
    return None


def resolve_dtype(device: torch.device, dtype: str | None, amp: bool = False) -> str:
    """The compute dtype of a dub: ``dtype`` checked against ``device`` (ConfigError with the reason where it would
    not run at its speed), or by default fp16 on CUDA with ``amp`` and fp32 otherwise."""
    if dtype is None:
        return "fp16" if amp and device.type == "cuda" else "fp32"
    dtype = str(dtype).lower()
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype == "fp32":
        return dtype
    if device.type == "cuda":
        if dtype == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"dtype bf16: {torch.cuda.get_device_name(device)} has no bf16 arithmetic; use fp16")
        return dtype
    if dtype == "fp16":
        raise ConfigError("dtype fp16 is for CUDA devices; on a CPU use bf16 (where it has bf16 arithmetic) or fp32")
    reason = cpu_bf16_refusal()
    if reason:
        raise ConfigError(f"dtype bf16 refused: {reason}; use fp32 (emulated bf16 is slower than fp32)")
    return dtype


def autocast_for(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` (``resolve_dtype``'s answer) on ``device``; a no-op for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if dtype == "bf16" else torch.float16)


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in fp32 when it is bf16 or fp16 (a layer without a reduced-precision kernel, under autocast);
    fp32 and float64 tensors unchanged."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps")


def autocast_off(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """No autocast for the work on ``tensor``'s device (a no-op where there is no autocast, e.g. the meta device)."""
    kind = tensor.device.type
    return torch.autocast(kind, enabled=False) if kind in AUTOCAST_DEVICES else contextlib.nullcontext()


def fp32_call(module: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` outside autocast, its tensor inputs in at least fp32: a layer that needs full precision
    under bf16 or fp16 autocast, e.g. a generator's output layer (a bf16 picture in [0, 1] holds 8 bits: about one
    grey level of 0-255 lost). The same call as ``module(*inputs)`` in fp32 or float64."""
    with autocast_off(next(t for t in inputs if torch.is_tensor(t))):
        return module(*(at_least_fp32(t) if torch.is_tensor(t) else t for t in inputs))
