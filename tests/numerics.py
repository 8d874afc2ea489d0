"""Rules for comparing numbers across CPUs (docs/testing.md, "Numerical tolerances").

float32 results depend on the SIMD width, the kernel library (oneDNN, MKL, OpenBLAS), the batch size
and the thread count, because each of them changes the order in which sums are taken. So:

- weights are compared as bytes (``state_digest``), never as float sums;
- parity with another code base is checked in float64 (``assert_close64``), where reordering costs
  ~1e-16 of the scale and a tolerance of 1e-9 of the scale is still millions of times below a bug;
- float32 results are compared with a bound derived from float32 error (``fp32_bound``) and each such
  test keeps a deliberate-break check that fails by orders of magnitude more.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7: one rounding of a float32 near 1
EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16
# float64 parity tolerance, relative to the output's scale: the worst float32 amplification measured
# in these networks (DINet's generator: 3e-4 / eps32 ~ 3e3) times eps64 is ~1e-12; 1e-9 leaves 1000x.
REL64 = 1e-9


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over keys, dtypes, shapes and raw bytes of a state dict, in key order."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def max_abs_diff(a, b) -> float:
    """Largest absolute difference, computed in float64."""
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def scale_of(x) -> float:
    """The magnitude errors are measured against: max |x|, at least 1e-30."""
    return max(float(np.max(np.abs(np.asarray(x, dtype=np.float64)))), 1e-30)


def assert_close64(actual, expected, what: str = "") -> None:
    """float64 results of two code bases (or kernels) agree to ``REL64`` of the expected scale."""
    assert np.shape(actual) == np.shape(expected), (what, np.shape(actual), np.shape(expected))
    error, bound = max_abs_diff(actual, expected), REL64 * scale_of(expected)
    assert error <= bound, f"{what}: float64 difference {error:.3g} > {bound:.3g}"


def fp32_bound(scale: float, terms: int, depth: int = 1, amplification: float = 1.0) -> float:
    """Bound on how far two float32 evaluations of one computation may drift apart.

    A sum of ``terms`` products rounded in a different order differs by about ``sqrt(terms) * eps32``
    of its magnitude (rounding errors add like a random walk; the worst case is ``terms * eps32``);
    ``depth`` such layers add their errors, and ``amplification`` is how much the computation after
    them magnifies a relative change of its input (1 for a plain sum; measured for deep networks and
    stated where used). A factor 8 covers the spread of the maximum over many elements.
    """
    return 8.0 * depth * amplification * float(np.sqrt(terms)) * EPS32 * scale


def assert_fp32_close(actual, expected, bound: float, what: str = "") -> float:
    """``max |actual - expected| <= bound``; returns the difference for break checks."""
    assert np.shape(actual) == np.shape(expected), (what, np.shape(actual), np.shape(expected))
    error = max_abs_diff(actual, expected)
    assert error <= bound, f"{what}: float32 difference {error:.3g} > bound {bound:.3g}"
    return error


# ---- seeded weights that are the same bytes on every CPU -------------------------------------------------
def seeded_normal(shape, generator: torch.Generator) -> torch.Tensor:
    """N(0, 1) float32, the same on every CPU (drawn in float64, then rounded)."""
    return torch.randn(shape, generator=generator, dtype=torch.float64).float()


def seeded_uniform(shape, generator: torch.Generator) -> torch.Tensor:
    """U(0, 1) float32, the same on every CPU."""
    return torch.rand(shape, generator=generator, dtype=torch.float64).float()


def seeded_fill_(module: nn.Module, generator: torch.Generator) -> None:
    """Every floating tensor of ``module``'s state dict, in key order: weights N(0, 2/fan_in) (activations stay
    O(1)), other tensors N(0, 0.1²), BatchNorm affine U(0.5, 1.5) / N(0, 0.1²); running statistics are left
    for a calibration pass. The same bytes on every CPU."""
    state = module.state_dict()
    with torch.no_grad():
        for key in state:
            tensor = state[key]
            if not tensor.is_floating_point():
                continue
            name = key.rsplit(".", 1)[-1]
            owner = module.get_submodule(key.rsplit(".", 1)[0])
            if isinstance(owner, nn.modules.batchnorm._BatchNorm):
                if name == "weight":
                    tensor.copy_(seeded_uniform(tensor.shape, generator) + 0.5)
                elif name == "bias":
                    tensor.copy_(seeded_normal(tensor.shape, generator) * 0.1)
                continue  # running stats come from calibration
            if name == "weight":
                fan_in = tensor[0].numel()
                tensor.copy_(seeded_normal(tensor.shape, generator) * (2.0 / fan_in) ** 0.5)
            else:
                tensor.copy_(seeded_normal(tensor.shape, generator) * 0.1)


def seeded_state_(module: nn.Module, rule, generator: torch.Generator) -> nn.Module:
    """Every tensor of ``module``'s state dict, in key order, drawn N(mean, std²) with ``(mean, std) = rule(key,
    tensor)``: float64 draws rounded once, the same bytes on every CPU. Returns ``module``."""
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            mean, std = rule(key, tensor)
            tensor.copy_((torch.randn(tensor.shape, generator=generator, dtype=torch.float64) * std + mean).float())
    return module


def calibrate_batchnorm_(module: nn.Module, *inputs: torch.Tensor, norms_only: bool = False) -> nn.Module:
    """Set the running statistics of every BatchNorm in ``module`` from one train-mode pass in float64 over
    ``inputs``, as a cumulative average (momentum None: after one pass, exactly this batch's statistics), so that
    eval-mode BatchNorm really normalises; each BatchNorm's momentum is then restored. Float64 because float32
    convolutions round differently per SIMD width; the statistics are rounded once to float32. ``norms_only``: only
    the BatchNorms run in train mode (the rest, e.g. spectral norms, in eval mode). Returns ``module``, float32, in
    eval mode."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    module.double().train(not norms_only)
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    with torch.no_grad():
        module(*(x.double() for x in inputs))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return module.float().eval()


class RandomOps(TorchDispatchMode):
    """Records every random op run inside it as ``"op shape dtype device"`` (e.g. noise draws), in order."""

    WORDS = ("normal", "rand", "uniform", "bernoulli", "dropout", "exponential", "random", "multinomial",
             "cauchy", "geometric", "poisson")

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func)
        if any(word in name for word in self.WORDS):
            self.ops.append(f"{name} {tuple(out.shape)} {out.dtype} {out.device.type}")
        return out
