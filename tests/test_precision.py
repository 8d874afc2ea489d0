"""Dubbing dtypes: bf16 only where the CPU computes it natively (refused with the reason elsewhere), fp16 on CUDA,
and the bf16 generator's output within the bound of docs/benchmarks.md ("bf16 on CPU")."""
import os

import numpy as np
import pytest
import torch

import talkingface
from talkingface import device as devices
from talkingface.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_the_default_dtype_is_fp16_on_cuda_with_amp_and_fp32_otherwise():
    assert devices.resolve_dtype(CPU, None, amp=True) == "fp32"
    assert devices.resolve_dtype(CUDA, None, amp=True) == "fp16"
    assert devices.resolve_dtype(CUDA, None, amp=False) == "fp32"
    assert devices.resolve_dtype(CPU, "FP32") == "fp32"
    with pytest.raises(ConfigError, match="one of"):
        devices.resolve_dtype(CPU, "int8")
    with pytest.raises(ConfigError, match="fp16 is for CUDA"):
        devices.resolve_dtype(CPU, "fp16")


def test_bf16_is_refused_on_a_cpu_without_bf16_arithmetic(monkeypatch):
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    with pytest.raises(ConfigError, match="no bf16 arithmetic.*avx512_bf16.*amx_bf16"):
        devices.resolve_dtype(CPU, "bf16")


def test_bf16_is_refused_when_the_kernels_are_held_below_it(monkeypatch):
    flags = {"avx2", "avx512f", "avx512_bf16"}
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert "ATEN_CPU_CAPABILITY" in devices.cpu_bf16_refusal(flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert "ONEDNN_MAX_CPU_ISA" in devices.cpu_bf16_refusal(flags)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", True)
    assert devices.cpu_bf16_refusal(flags | {"amx_bf16"}) is None
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert "oneDNN" in devices.cpu_bf16_refusal(flags)


@pytest.mark.numerics
def test_bf16_is_accepted_exactly_under_the_kernel_sets_that_compute_it():
    """scripts/test_kernels.sh runs this under forced kernel sets: refused under avx2, sse4 and no-onednn whatever
    the CPU; under this CPU's own kernels, accepted exactly when /proc/cpuinfo lists bf16 arithmetic."""
    reason = devices.cpu_bf16_refusal()
    kernel_set = os.environ.get("TALKINGFACE_KERNEL_SET", "native")
    if kernel_set in ("avx2", "sse4", "no-onednn"):
        assert reason is not None
    elif devices.cpu_flags() & set(devices.CPU_BF16_FLAGS):
        assert reason is None
    else:
        assert reason is not None and "no bf16 arithmetic" in reason


def _dinet_generator():
    torch.manual_seed(0)
    model = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64, "audio_feature": "mfcc"},
                                              "progress": False}).eval()
    height, width = model.networks.image_size
    generator = torch.Generator().manual_seed(1)
    inputs = (torch.rand(2, 3, height, width, generator=generator), torch.rand(2, 15, height, width, generator=generator),
              torch.randn(2, model.networks.audio_channel, 5, generator=generator))
    return model.networks.generator, inputs


def _layer_calls(network: torch.nn.Module, inputs: tuple, dtype: str) -> list[tuple[torch.nn.Module, torch.Tensor,
                                                                                  torch.Tensor]]:
    """(layer, its input, its output) of every convolution and linear layer in a forward under ``dtype``."""
    calls = []
    layers = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)
    hooks = [m.register_forward_hook(lambda m, args, out: calls.append((m, args[0], out)))
             for m in network.modules() if isinstance(m, layers)]
    try:
        with torch.no_grad(), devices.autocast_for(CPU, dtype):
            network(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def _apply(layer: torch.nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if isinstance(layer, torch.nn.Linear):
        return torch.nn.functional.linear(x, weight, bias)
    conv = torch.nn.functional.conv1d if isinstance(layer, torch.nn.Conv1d) else torch.nn.functional.conv2d
    return conv(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


U = 2.0 ** -9  # bf16's unit roundoff (8 significant bits, round to nearest)
FP32_U = 2.0 ** -24


def _violation(layer: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The largest |y - exact| / bound over the layer's outputs, where exact is the layer in float64 on the same
    input and the fp32 weights, and the bound the derived one: the rounding of the weights and (when it came in
    fp32) of the input to bf16 (U relative to each product for each), the fp32 accumulation of K products
    (K * 2^-24 of the sum of magnitudes), and up to two roundings of the output to bf16 (the sum, then the bias added
    to it where a kernel adds it separately: 2 U of the magnitudes)."""
    x64, w64 = x.detach().double(), layer.weight.detach().double()
    bias = layer.bias.detach().double() if layer.bias is not None else None
    exact = _apply(layer, x64, w64, bias)
    magnitude = _apply(layer, x64.abs(), w64.abs(), bias.abs() if bias is not None else None)
    roundings = 1 if x.dtype == torch.bfloat16 else 2
    terms = layer.weight[0].numel()
    bound = ((1 + U) ** roundings - 1 + terms * FP32_U) * magnitude + 2 * U * (exact.abs() + magnitude) + 1e-30
    return float(((y.detach().double() - exact).abs() / bound).max())


def test_each_bf16_layer_of_the_generator_stays_within_its_derived_bound():
    """Every convolution and linear layer of DINet's generator under CPU autocast to bf16 (whether or not this CPU
    computes bf16 natively: emulated kernels round alike): bf16 inputs and weights, fp32 accumulation, a bf16
    output, each layer's error within its rounding bound; and a layer with its kernel flipped left to right (a
    conversion bug) is caught by more than an order of magnitude (40x here)."""
    network, inputs = _dinet_generator()
    calls = _layer_calls(network, inputs, "bf16")
    full = [layer for layer, _, out in calls if out.dtype == torch.float32]
    # the AdaAT's parameter layers and the output convolution run in fp32 (their channel coordinate and the
    # picture need more than bf16's 8 bits), every other layer in bf16
    assert full == [*(m for m in network.adaAT.modules() if isinstance(m, torch.nn.Linear)), network.out_conv[-2]]
    assert sum(out.dtype == torch.bfloat16 for _, _, out in calls) > 30
    worst = max(_violation(layer, x, out) for layer, x, out in calls)
    assert 0.05 < worst <= 1.0  # within the bound, and the bound is not vacuous
    layer, x, _ = next(call for call in calls[len(calls) // 2:] if call[0].weight.dim() == 4)
    with torch.no_grad():
        broken = _apply(layer, x.float(), layer.weight.flip(-1), layer.bias)
    assert _violation(layer, x, broken) > 20


def test_the_loop_runs_the_generator_in_the_dubs_dtype(tmp_path, monkeypatch):
    """``generate(..., dtype=)`` and the config's ``infer_dtype`` reach the generator as CPU autocast (bf16 allowed
    here whatever this CPU is)."""
    from talkingface.data.demo import write_demo_clip
    from talkingface.media import read_audio, write_wav
    from talkingface.models.dinet.dubbing import DINetDubbing

    clip = write_demo_clip(tmp_path / "clip", 0)
    audio = write_wav(tmp_path / "short.wav", read_audio(clip)[:16000 // 5])  # 5 frames
    seen = []
    original = DINetDubbing.generate

    def spy(self, generator, faces, audio_windows):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
        return original(self, generator, faces, audio_windows)

    monkeypatch.setattr(DINetDubbing, "generate", spy)
    monkeypatch.setattr(devices, "cpu_bf16_refusal", lambda flags=None: None)
    torch.manual_seed(0)
    model = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64, "audio_feature": "mfcc"},
                                              "progress": False}).eval()
    for dtype, expected in (("fp32", torch.float32), ("bf16", torch.bfloat16), (None, torch.float32)):
        seen.clear()
        with torch.no_grad():
            model.generate(clip, audio, tmp_path / f"{dtype}.mp4", dtype=dtype, batch=8, progress=False)
        assert seen and set(seen) == {expected}
    with pytest.raises(ConfigError, match="dtype must be one of"):
        model.generate(clip, audio, tmp_path / "bad.mp4", dtype="fp8", progress=False)
    assert not (tmp_path / "bad.mp4").exists()
    torch.manual_seed(0)  # the config's infer_dtype (e.g. `talkingface evaluate ... --infer_dtype=bf16`)
    configured = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64, "audio_feature": "mfcc"},
                                                   "progress": False, "infer_dtype": "bf16"}).eval()
    seen.clear()
    with torch.no_grad():
        configured.generate(clip, audio, tmp_path / "configured.mp4", batch=8, progress=False)
    assert set(seen) == {torch.bfloat16}
