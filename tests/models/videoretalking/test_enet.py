"""VideoReTalking's E-Net: the official key layout, float64 parity with the release's ``models/ENet.py`` under the same
seed (fixture made by fixtures/make_enet_fixture.py: noise draws included), float32 within float32 error, the zero-noise
mode, 5-D sequences, and code breaks that miss by far more than the float32 bound.

Cost: the style encoder runs at 256 whatever the input (79 GMAC: 5.2 s in float64, 2 s in float32 on one thread), so
it runs once per dtype here (``styles``: our ``style_code`` of the reference, fed back by ``cached_style`` to every
forward, which asserts it is asked for the same reference); every forward otherwise runs as it is. The decoder runs
at the stand-in L-Net's sizes 24 -> 96 and 12 -> 48 (``seeded_enet.CASES``); the release's 96 -> 384 was compared
with the release in float64 by the fixture script (difference 0, recorded) and its shapes are checked here on the
meta device.
"""
from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fixture_tools import load_module, state_layout
from breaks import mutated
from numerics import REL64, RandomOps, assert_close64, assert_fp32_close, fp32_bound, max_abs_diff, scale_of
from talkingface.models.videoretalking.networks.enet import ENet
from talkingface.restoration.stylegan2_clean import ModulatedConv2d, StyleConv

HERE = Path(__file__).resolve().parent
seeded = load_module(HERE / "fixtures" / "seeded_enet.py", "videoretalking_seeded_enet")
layout = load_module(HERE / "layout.py", "videoretalking_layout")
SEED, CASES = seeded.SEED, seeded.CASES


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(HERE / "fixtures" / "official_enet.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module")
def nets() -> dict[torch.dtype, ENet]:
    net = seeded.seeded_enet()
    return {torch.float32: net, torch.float64: copy.deepcopy(net).double()}


class Styles(dict):
    """Our ``style_code`` of the reference per dtype, computed once (the encoder is most of a forward's cost)."""

    def __init__(self, nets):
        super().__init__()
        self.nets = nets

    def __missing__(self, dtype: torch.dtype) -> torch.Tensor:
        with torch.no_grad():
            self[dtype] = self.nets[dtype].style_code(seeded.reference().to(dtype))
        return self[dtype]


@pytest.fixture(scope="module")
def styles(nets) -> Styles:
    return Styles(nets)


@contextlib.contextmanager
def cached_style(net: ENet, style: torch.Tensor):
    """``net.style_code`` returns ``style`` (one per frame) and checks it is asked for the reference in every frame."""
    expected = seeded.reference().to(style.dtype)

    def style_code(ref: torch.Tensor) -> torch.Tensor:
        assert torch.equal(ref, expected.expand_as(ref)), "the style code is asked for another image"
        return style.expand(ref.shape[0], -1, -1)

    net.style_code = style_code
    try:
        yield
    finally:
        del net.style_code


def run(net: ENet, case: str, style: torch.Tensor, noise=None, record: bool = False):
    """``(out, low_res, random ops, next four float64 uniforms)`` of ``net`` on ``case`` with
    ``torch.manual_seed(SEED)`` right before the forward (the fixture's protocol); the global generator is restored
    afterwards."""
    net.low_res.size = CASES[case][3]
    x = {k: v.to(style.dtype) for k, v in seeded.seeded_inputs(case).items()}
    with torch.random.fork_rng(), torch.no_grad(), cached_style(net, style):
        torch.manual_seed(SEED)
        with RandomOps() as ops:
            out, low_res = net(x["audio"], x["face"], x["gt"], noise=noise)
        after = torch.rand(4, dtype=torch.float64)
    return out.numpy(), low_res.numpy(), ops.ops, after.numpy()


def bound(net: ENet, scale: float) -> float:
    """``fp32_bound`` with depth = the conv/linear layers (modulated convs and their modulations included: 35, with
    the stand-in's 2) and terms = the largest fan-in (``final_linear``: 8192)."""
    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, ModulatedConv2d))]
    fan_in = [m.weight[0, 0].numel() if isinstance(m, ModulatedConv2d) else m.weight[0].numel() for m in layers]
    return fp32_bound(scale, max(fan_in), depth=len(layers))


def noise_shapes(official) -> list[tuple[int, ...]]:
    """The shapes of the release's noise draws, in order, from the fixture's record."""
    return [tuple(int(d) for d in re.findall(r"\d+", op.split(")")[0].split("(", 1)[1]))
            for op in official["frame_f64_random_ops"]]


# ---- layout ----------------------------------------------------------------------------------------------------
def test_own_layout_parameter_count_and_frozen_lnet(official):
    with torch.device("meta"):
        net, bare = ENet(lnet=seeded.StandInLNet()), ENet()
        concat = ENet(lnet=seeded.StandInLNet(), concat=True)
    own = [row for row in state_layout(net) if not row[0].startswith("low_res.")]
    assert own == layout.enet_own_layout() and len(own) == 1785 - 1721
    assert state_layout(bare) == own  # lnet=None: the keys ENet.pth keeps after the official loader drops low_res.*
    assert sum(p.numel() for k, p in net.named_parameters() if not k.startswith("low_res.")) == 31_197_581
    assert not any(p.requires_grad for p in net.low_res.parameters())
    assert all(p.requires_grad for k, p in net.named_parameters() if not k.startswith("low_res."))
    assert [f"{k} {s}" for k, s, _ in state_layout(concat)] == list(official["concat_layout"])


def test_the_fixture_records_its_weights_commit_and_the_full_size_check(official, nets):
    assert seeded.weight_digest(nets[torch.float32]) == str(official["sha256_weights"])
    assert re.fullmatch(r"[0-9a-f]{40}", str(official["official_commit"]))
    # the release's sizes (96 -> 384), ours vs the release in float64, compared by make_enet_fixture.py
    assert tuple(official["full_shape"]) == (1, 3, 384, 384)
    assert all(d <= REL64 * s for d, s in zip(official["full_difference"], official["full_scale"]))


def test_release_sizes_and_sequences_give_the_release_shapes():
    with torch.device("meta"):
        net = ENet(lnet=seeded.StandInLNet(96))
        out, low_res = net(torch.empty(2, 1, 80, 16), torch.empty(2, 6, 384, 384), torch.empty(2, 3, 384, 384))
        assert out.shape == (2, 3, 384, 384) and low_res.shape == (2, 3, 96, 96)
        out, low_res = net(torch.empty(1, 3, 1, 80, 16), torch.empty(1, 6, 3, 384, 384),
                           torch.empty(1, 3, 3, 384, 384))
        assert out.shape == low_res.shape == (1, 3, 3, 384, 384)


def test_unsupported_configurations_raise(official):
    with torch.device("meta"):
        x = (torch.empty(1, 1, 80, 16), torch.empty(1, 6, 96, 96), torch.empty(1, 3, 96, 96))
        with pytest.raises(RuntimeError, match="no L-Net"):
            ENet()(*x)
        with pytest.raises(NotImplementedError, match="concat=True"):
            ENet(lnet=seeded.StandInLNet(), concat=True)(*x)
        with pytest.raises(ValueError, match="noise='none'"):
            ENet(noise="none")
    # the release cannot run concat=True either: the one-tensor L-Net, then an (image, 32 features) one
    unpack, skip = official["concat_errors"]
    assert "unpack" in unpack and "(3)" in skip and "(35)" in skip


# ---- parity ------------------------------------------------------------------------------------------------------
def test_outputs_and_noise_draws_equal_the_official_code_in_float64(official, nets, styles):
    """One frame under ``torch.manual_seed(SEED)``: both outputs within 1e-9 of the scale (measured 1.8e-15, 3e-16 of
    the scale 5.94, where the noise moves the output by 5.3: see the zero-noise test), the same random ops in the
    same order (``normal_`` of (1, 1, 56, 56) twice, then of (1, 1, 112, 112) twice, float64, cpu) and the same
    generator state after the forward. Not marked ``numerics`` (the float64 encoder alone takes 5.2 s on one thread;
    float64 at 1e-9 does not depend on the kernel set): the float32 test below runs under every set."""
    out, low_res, ops, after = run(nets[torch.float64], "frame", styles[torch.float64])
    assert_close64(out, official["frame_f64_out"], "out")
    assert_close64(low_res, official["frame_f64_low_res"], "low_res")
    assert ops == list(official["frame_f64_random_ops"]) and len(ops) == 4
    assert np.array_equal(after, official["frame_f64_rng_after"])
    assert np.std(official["frame_f64_out"]) > 1e4 * REL64 * scale_of(official["frame_f64_out"])


def test_sequences_equal_the_official_code_in_float64(official, nets, styles, monkeypatch):
    """5-D input, batch 2 × 2 frames, run frame-major as the release does (measured difference 4e-14, 7e-15 of the
    scale), with the same draws ((4, 1, 32, 32) × 2, (4, 1, 64, 64) × 2); flattening batch-major instead (a break of
    the code) misses by far more than the float32 bound."""
    net, style = nets[torch.float64], styles[torch.float64]
    out, low_res, ops, after = run(net, "sequence", style)
    assert out.shape == low_res.shape == (2, 3, 2, 48, 48)
    assert_close64(out, official["sequence_f64_out"], "out")
    assert_close64(low_res, official["sequence_f64_low_res"], "low_res")
    assert ops == list(official["sequence_f64_random_ops"])
    assert np.array_equal(after, official["sequence_f64_rng_after"])
    mutated(monkeypatch, ENet, "forward", ("torch.cat(x.unbind(dim), dim=0)", "x.movedim(dim, 1).flatten(0, 1)"))
    broken = run(net, "sequence", style)[0]
    limit = bound(net, scale_of(official["sequence_f64_out"]))
    assert max_abs_diff(broken, official["sequence_f64_out"]) > 100 * limit


@pytest.mark.numerics
def test_float32_is_within_float32_error_of_the_official_code(official, nets, styles):
    """One frame in float32 against the release, bound 8 × 35 layers × sqrt(8192) × eps32 × 5.94 = 1.8e-2:
    with the release's float64 noise draws rounded to float32 (``noise=``) against its float64 output (measured on
    one thread 1.0e-5 native AVX-512, 1.1e-5 AVX2, 1.3e-5 SSE4.1: 14 to 18 eps32 × scale), and in the random mode
    under the seed (float32 draws, whose last bits depend on the kernels) against the release's float32 output under
    the same seed, made with two threads on AVX-512 (7.9e-6, 1.5e-5, 1.2e-5)."""
    net = nets[torch.float32]
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        noise = [torch.randn(shape, dtype=torch.float64).float() for shape in noise_shapes(official)]
    expected = official["frame_f64_out"]
    limit = bound(net, scale_of(expected))
    out, low_res, ops, _ = run(net, "frame", styles[torch.float32], noise=noise)
    assert ops == []  # explicit noise: nothing drawn
    error64 = assert_fp32_close(out, expected, limit, "float32 vs float64 release")
    assert_fp32_close(low_res, official["frame_f64_low_res"], bound(net, 1.0), "low_res")
    out, _, ops, _ = run(net, "frame", styles[torch.float32])
    error32 = assert_fp32_close(out, official["frame_f32_out"], limit, "float32 vs float32 release, same seed")
    print(f"float32 vs release: {error64:.3g} (float64 release), {error32:.3g} (float32 release, same seed); "
          f"bound {limit:.3g}")


def test_random_mode_is_these_randn_calls_in_order(official, nets, styles):
    """``noise="random"`` under a seed equals explicit noise made by ``torch.randn`` of the release's recorded shapes
    in the release's order (bit for bit, float32), so the float64 parity above pins the calls, not only the sum."""
    net = nets[torch.float32]
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        noise = [torch.randn(shape) for shape in noise_shapes(official)]
    drawn, _, ops, _ = run(net, "frame", styles[torch.float32])
    given, _, _, _ = run(net, "frame", styles[torch.float32], noise=noise)
    assert np.array_equal(drawn, given)
    assert ops == [op.replace("float64", "float32") for op in official["frame_f64_random_ops"]]


def test_zero_noise_is_deterministic_and_leaves_the_generator_alone(official, nets, styles):
    """``noise="zero"``: two runs equal bit for bit, nothing drawn, the generator untouched; it differs from the
    seeded output by far more than the float32 bound (measured 5.3, mean 0.68, of a scale of 5.94: 296× the bound;
    the noise strengths are 0.3 ± 0.03, see seeded_enet.py)."""
    net = copy.deepcopy(nets[torch.float32])
    net.noise = "zero"
    state = torch.get_rng_state()
    first, _, ops, _ = run(net, "frame", styles[torch.float32])
    second = run(net, "frame", styles[torch.float32])[0]
    assert np.array_equal(first, second) and ops == [] and torch.equal(torch.get_rng_state(), state)
    limit = bound(net, scale_of(official["frame_f32_out"]))
    assert max_abs_diff(first, official["frame_f32_out"]) > 100 * limit


def test_the_lnet_is_frozen_and_its_output_not_detached(nets, styles):
    """The release's ``low_res_img.detach()`` discards its result: gradients reach ``gt`` through the L-Net, whose
    own parameters get none (``requires_grad=False``)."""
    net = copy.deepcopy(nets[torch.float32])
    net.noise = "zero"
    net.low_res.size = CASES["frame"][3]
    x = seeded.seeded_inputs("frame")
    gt = x["gt"].requires_grad_()
    with cached_style(net, styles[torch.float32]):
        out, _ = net(x["audio"], x["face"], gt)
    out.sum().backward()
    assert gt.grad is not None and float(gt.grad.abs().max()) > 0
    assert all(p.grad is None for p in net.low_res.parameters())
    assert net.style_convs[0].modulated_conv.weight.grad is not None


# ---- breaks ------------------------------------------------------------------------------------------------------
BREAKS = {
    "noise drawn in another order (column-major)": (StyleConv, "forward", (
        "out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()",
        "out.new_empty(out.shape[0], 1, *out.shape[2:][::-1]).normal_().transpose(2, 3)")),
    "noise drawn in float64": (StyleConv, "forward", (
        "out.new_empty(out.shape[0], 1, *out.shape[2:])",
        "out.new_empty(out.shape[0], 1, *out.shape[2:], dtype=torch.float64)")),
    "demodulation off": (ModulatedConv2d, "forward", ("if self.demodulate:", "if False:")),
    "zero padding instead of reflect": (ENet, "decode", ('mode="reflect"', 'mode="constant"')),
    "crop offset by one pixel": (ENet, "decode", (
        "skip[:, :, CROP:-CROP, CROP:-CROP]", "skip[:, :, CROP + 1:-CROP + 1, CROP + 1:-CROP + 1]")),
    "upsampling after the conv": (ModulatedConv2d, "forward", (
        'if self.sample_mode == "upsample":\n        x = _resample(x, 2)\n    elif', "if"), (
        "return out.view(batch, self.out_channels, *out.shape[2:])",
        "out = out.view(batch, self.out_channels, *out.shape[2:])\n"
        '    return _resample(out, 2) if self.sample_mode == "upsample" else out')),
}


def test_code_breaks_miss_the_official_output_by_far_more_than_the_float32_bound(official, nets, styles,
                                                                               monkeypatch):
    """Each break changes our code (float32, random mode under the seed, against the release's float32 output under
    the same seed) and must miss the float32 bound (1.8e-2) by 100× or more. Measured (the same under the native,
    AVX2, SSE4.1 and no-oneDNN kernel sets): noise in column-major order 342×, noise drawn in float64 374×,
    demodulation off 987×, zero padding 116×, crop one pixel off 336×, upsampling after the conv 111×. The last
    two act on edges only (a ×2 bilinear upsampling and a 3×3 conv commute on flat areas), hence the stand-in's
    high-contrast texture; replicate instead of reflect padding moves the output by only 5× to 100× the bound."""
    net, expected = nets[torch.float32], official["frame_f32_out"]
    limit = bound(net, scale_of(expected))
    misses = {}
    for name, (owner, method, *replacements) in BREAKS.items():
        with monkeypatch.context() as patch:
            mutated(patch, owner, method, *replacements)
            misses[name] = max_abs_diff(run(net, "frame", styles[torch.float32])[0], expected) / limit
    print({name: f"{miss:.0f}x" for name, miss in misses.items()})
    assert all(miss >= 100 for miss in misses.values()), misses
