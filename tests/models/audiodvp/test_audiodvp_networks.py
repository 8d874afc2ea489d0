"""AudioDVP's networks: the official state-dict layouts, float64 parity with the official classes (fixture made by
``fixtures/make_fixture.py`` from xinwen-cs/AudioDVP's own ``vendor/ATVGnet/code/models.py``, ``models/networks.py``
and ``vendor/neural-face-renderer/models/networks.py``), float32 within the bound of ``docs/testing.md``, and breaks
of our code that miss that bound by far.

Parity runs at the seeded cases of ``fixtures/seeded.py``: the AT-net encoder and Audio2Expression at the release's
sizes, the generator at ``num_downs=6, ngf=8`` (64²) and ``num_downs=8, ngf=4`` (256², the release's depth), the
discriminator at ``ndf=8`` (64²) and at the release's ``ndf=64`` (256²).
"""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from talkingface.models.audiodvp.networks import ATNetEncoder, AudioExpression, NLayerDiscriminator, UnetGenerator
from talkingface.models.audiodvp.networks import atnet, audio2expression, renderer

from breaks import mutated
from fixture_tools import load_module, state_layout
from numerics import assert_close64, assert_fp32_close, fp32_bound, max_abs_diff, scale_of

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
seeded = load_module(FIXTURES / "seeded.py", "audiodvp_seeded")
layout = load_module(HERE / "layout.py", "audiodvp_layout")


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "official_audiodvp.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module")
def nets() -> dict[str, nn.Module]:
    """The seeded networks (float32, eval), built once."""
    return {"atnet": seeded.seeded_atnet(), "audio2expression": seeded.seeded_audio2expression(),
            **{f"generator_{case}": seeded.seeded_generator(case) for case in seeded.GENERATORS},
            **{f"discriminator_{case}": seeded.seeded_discriminator(case) for case in seeded.DISCRIMINATORS}}


def inputs(name: str) -> torch.Tensor:
    """The float64 input of a seeded case (every value a float32 number)."""
    if name == "atnet":
        return seeded.atnet_input()
    if name == "audio2expression":
        return seeded.expression_input()
    kind, case = name.split("_")
    return seeded.generator_input(case) if kind == "generator" else seeded.discriminator_input(case)


def run(net: nn.Module, name: str, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """``net`` on the case's input in ``dtype``, as the fixture records it (AT-net: the stacked list of
    ``encode_sequence``; the deep generator: every 3rd row and column), float64; ``net`` is left in float32."""
    x = inputs(name).to(dtype)
    try:
        with torch.no_grad():
            if name == "atnet":
                out = torch.stack(atnet.encode_sequence(net.to(dtype), x))  # looked up here: breaks patch it
            else:
                out = net.to(dtype)(x)
    finally:
        net.float()
    if name == "generator_deep":
        out = out[..., ::seeded.STRIDE["deep"], ::seeded.STRIDE["deep"]]
    return out.double().numpy()


def depth_and_terms(net: nn.Module) -> tuple[int, int]:
    """``(depth, terms)`` of ``fp32_bound``: the conv/linear layers and their largest fan-in (a 4×4 stride-2
    transposed convolution sums ``in_channels · 2 · 2`` products per output)."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]

    def fan_in(m: nn.Module) -> int:
        if isinstance(m, nn.ConvTranspose2d):
            return m.in_channels * math.prod(k // s for k, s in zip(m.kernel_size, m.stride))
        return m.weight[0].numel()

    return len(layers), max(fan_in(m) for m in layers)


def bound(net: nn.Module, expected: np.ndarray) -> float:
    depth, terms = depth_and_terms(net)
    return fp32_bound(scale_of(expected), terms, depth)


# ---- layouts ---------------------------------------------------------------------------------------------------------
def test_state_dict_layouts_equal_the_official_listing(official):
    """At the release's configurations (built on the meta device: shapes only) every network's state dict has the
    official keys, shapes and dtypes in order, and the parameter counts of the reference notes (§3)."""
    with torch.device("meta"):
        ours = {"audio_encoder": ATNetEncoder(), "audio2expression": AudioExpression(),
                "renderer": UnetGenerator(), "discriminator": NLayerDiscriminator()}
    expected = layout.official_layout()
    counts = {"audio_encoder": (34, 27_833_536), "audio2expression": (8, 16_232), "renderer": (194, 140_874_627),
              "discriminator": (22, 2_787_137)}
    for name, net in ours.items():
        assert state_layout(net) == expected[name], name
        assert (len(net.state_dict()), sum(p.numel() for p in net.parameters())) == counts[name], name
    assert int(official["parameters_generator"]) == 140_874_627
    assert int(official["parameters_discriminator"]) == 2_787_137
    assert int(official["parameters_audio2expression"]) == 16_232
    assert int(official["parameters_atnet"]) == 30_071_750  # with the unused landmark encoder, LSTM and head
    assert len(layout.network_layout("audio_encoder")) == 52


def test_other_configurations_follow_the_official_construction(official, nets):
    """The seeded configurations, a generator without refine modules at depth 7 and a 2-layer discriminator have
    the official classes' layouts at the same arguments (recorded by the fixture)."""
    with torch.device("meta"):
        others = {"plain": UnetGenerator(21, 3, 7, 8, use_refine=False), "d2": NLayerDiscriminator(24, 16, 2)}
    cases = {**{k: v for k, v in nets.items() if k != "atnet"}, **others}
    for name, net in cases.items():
        lines = [f"{k}\t{'x'.join(map(str, s))}\t{d}" for k, s, d in state_layout(net)]
        assert lines == list(official[f"layout_{name}"]), name


def test_dropout_sits_where_the_release_puts_it():
    """``use_dropout``: Dropout(0.5) closes the innermost level and every ngf·8 middle level but the outermost of them,
    and sits in their refine modules (the release: 3 levels, 3 + 3 · 2 dropout layers); none with
    ``use_dropout=False``."""
    with torch.device("meta"):
        net, plain = UnetGenerator(), UnetGenerator(use_dropout=False)
    blocks = [m for m in net.modules() if isinstance(m, renderer.UnetBlock)]  # outermost ... innermost
    assert [isinstance(block.model[-1], nn.Dropout) for block in blocks] == [False] * 5 + [True] * 3
    refines = [next(layer for layer in block.model if isinstance(layer, renderer.RefineModule)) for block in blocks]
    assert [any(isinstance(layer, nn.Dropout) for layer in m.modules()) for m in refines] == [False] * 5 + [True] * 3
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3 + 3 * 2
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_the_fixture_records_the_official_commit_and_our_weights(official, nets):
    commit = str(official["official_commit"])
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and commit.startswith("54aafc9"), commit
    for name, net in nets.items():
        assert seeded.weight_digest(net) == str(official[f"{name}_sha256"]), name
        assert seeded.array_digest(inputs(name).numpy()) == str(official[f"{name}_input_sha256"]), name
    norms = [m for m in nets["generator_small"].modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 1 and float(m.running_var.min()) > 0 for m in norms)


# ---- float64 parity ------------------------------------------------------------------------------------------------
@pytest.mark.numerics
def test_outputs_equal_the_official_code_in_float64(official, nets):
    """Every seeded case in float64 against the official classes in float64: within 1e-9 of the scale (measured: 0,
    exactly, for all six on an AVX-512 EPYC)."""
    for name, net in nets.items():
        expected = official[f"{name}_out"]
        assert_close64(run(net, name, torch.float64), expected, name)
        assert np.std(expected) > 1e-2 * scale_of(expected), name  # not a constant


# ---- float32 against the official float64, with deliberate breaks ----------------------------------------------------
# Measured max |float32 - float64 official| / scale on an AVX-512 EPYC (native 2 threads / AVX2 / SSE4.1 / oneDNN off,
# one thread each), against the bound 8 · depth · sqrt(terms) · eps32 (depth = conv/linear layers, terms = the largest
# fan-in: ``depth_and_terms``).
def within_bound(net: nn.Module, name: str, expected: np.ndarray) -> float:
    """Assert ``net``'s float32 output of case ``name`` is within the float32 bound; returns the bound."""
    limit = bound(net, expected)
    error = assert_fp32_close(run(net, name), expected, limit, name)
    scale = scale_of(expected)
    print(f"{name}: float32 error {error / scale:.2g} of the scale, bound {limit / scale:.2g}")
    return limit


def break_misses(monkeypatch, net: nn.Module, name: str, expected: np.ndarray, limit: float,
                 breaks: dict) -> dict:
    """``{break: max error / bound}`` with each ``(owner, function, *edits)`` of ``breaks`` planted by ``mutated``."""
    misses = {}
    for what, (owner, function, *edits) in breaks.items():
        with monkeypatch.context() as patch:
            mutated(patch, owner, function, *edits)
            misses[what] = max_abs_diff(run(net, name), expected) / limit
    print(f"{name}: breaks miss the bound by {misses}")
    return misses


@pytest.mark.numerics
def test_atnet_float32_is_within_float32_error(official, nets, monkeypatch):
    """The AT-net encoder over 3 steps in float32: 7 layers, largest fan-in 12288 (the first linear layer), bound
    7.4e-4 of the scale; measured 1.4e-6 / 2.2e-6 / 2.2e-6 / 1.3e-6. Breaks: the (512, 12, 2) map flattened
    channel-last instead of channel-major (990× the bound); ``encode_sequence`` giving each step the next step's
    window (1030×)."""
    net, expected = nets["atnet"], official["atnet_out"]
    limit = within_bound(net, "atnet", expected)
    misses = break_misses(monkeypatch, net, "atnet", expected, limit, {
        "channel-last flattening": (atnet.ATNetEncoder, "forward", "features.flatten(1)",
                                    "features.transpose(1, 3).flatten(1)"),
        "steps out of order": (atnet, "encode_sequence", "mfcc[:, step]", "mfcc[:, (step + 1) % mfcc.shape[1]]")})
    assert min(misses.values()) > 10, misses


@pytest.mark.numerics
def test_audio2expression_float32_is_within_float32_error(official, nets, monkeypatch):
    """Audio2Expression in float32: 4 layers, fan-in 250, bound 6.0e-5 of the scale; measured 2.7e-7 / 3.1e-7 /
    2.8e-7 / 3.4e-7. Break: a ReLU after the first convolution (the release has no activations): 1.1e4× the bound."""
    net, expected = nets["audio2expression"], official["audio2expression_out"]
    limit = within_bound(net, "audio2expression", expected)
    misses = break_misses(monkeypatch, net, "audio2expression", expected, limit, {
        "a ReLU": (audio2expression.AudioExpression, "forward", "self.conv2(self.conv1(features))",
                   "self.conv2(torch.relu(self.conv1(features)))")})
    assert min(misses.values()) > 10, misses


@pytest.mark.numerics
@pytest.mark.parametrize("case", list(seeded.GENERATORS))
def test_generator_float32_is_within_float32_error(official, nets, monkeypatch, case):
    """The generator in float32. small: 24 layers, largest fan-in 128·9 = 1152 (a refine convolution), bound 7.8e-4
    of the scale, measured 2.4e-5 / 2.6e-5 / 2.2e-5 / 2.1e-5; deep: 32 layers, fan-in 64·9 = 576, bound 7.3e-4,
    measured 3.5e-5 / 2.4e-5 / 3.6e-5 / 2.0e-5 (20× below). Breaks: the refine modules skipped (2560× and 2710× the
    bound); the skip concatenated after the inner output instead of before it (2570×, 2680×). (The release's in-place
    LeakyReLU makes its skips carry ``LeakyReLU(x)``, ours ``x``; the float64 parity shows that this changes nothing,
    since the enclosing up path starts with a ReLU, so it is no break.)"""
    name = f"generator_{case}"
    net, expected = nets[name], official[f"{name}_out"]
    limit = within_bound(net, name, expected)
    misses = break_misses(monkeypatch, net, name, expected, limit, {
        "refine skipped": (renderer.RefineModule, "forward", "return self.model(x)", "return x"),
        "concat order": (renderer.UnetBlock, "forward", "torch.cat([x, self.model(x)], 1)",
                         "torch.cat([self.model(x), x], 1)")})
    assert min(misses.values()) > 10, misses


@pytest.mark.numerics
@pytest.mark.parametrize("case", list(seeded.DISCRIMINATORS))
def test_discriminator_float32_is_within_float32_error(official, nets, case):
    """The PatchGAN in float32, 5 layers. small: largest fan-in 64·16 = 1024, bound 1.5e-4 of the scale, measured
    8.7e-7 / 1.2e-6 / 1.0e-6 / 9.1e-7; release: fan-in 512·16 = 8192, bound 4.3e-4, measured 1.0e-6 / 3.2e-6 /
    4.2e-6 / 2.8e-6. Breaks (mutated modules): LeakyReLU slope 0.01 instead of 0.2 (2780× and 1090× the bound);
    BatchNorm on batch statistics (train mode) instead of its running ones (1730×, 131×)."""
    name = f"discriminator_{case}"
    net, expected = nets[name], official[f"{name}_out"]
    limit = within_bound(net, name, expected)
    slope = copy.deepcopy(net)
    for module in slope.modules():
        if isinstance(module, nn.LeakyReLU):
            module.negative_slope = 0.01
    training = copy.deepcopy(net).train()
    misses = {what: max_abs_diff(run(broken, name), expected) / limit
              for what, broken in {"slope 0.01": slope, "train-mode BatchNorm": training}.items()}
    print(f"{name}: breaks miss the bound by {misses}")
    assert min(misses.values()) > 10, misses


# ---- shapes and arguments -------------------------------------------------------------------------------------------
def test_shapes_and_argument_checks():
    """Input checks name the expected shapes; ``feature_dim`` and ``exp_dim`` follow the arguments; the demo's
    64² configuration runs."""
    net = AudioExpression(window=5, feature_dim=40, exp_dim=16)
    assert net.fc.in_features == 34 and net(torch.zeros(2, 5, 40)).shape == (2, 16, 1)
    with pytest.raises(ValueError, match=r"\(B, 5, 40\)"):
        net(torch.zeros(2, 7, 40))
    with pytest.raises(ValueError, match="num_downs >= 5"):
        UnetGenerator(num_downs=4)
    generator = UnetGenerator(num_downs=6, ngf=4).eval()
    with torch.no_grad():
        assert generator(torch.zeros(1, 21, 64, 128)).shape == (1, 3, 64, 128)
    with pytest.raises(ValueError, match="divisible by 64"):
        generator(torch.zeros(1, 21, 48, 64))
    with torch.device("meta"):
        encoder = ATNetEncoder()
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 12\)"):
        encoder(torch.zeros(2, 28, 12))
    assert NLayerDiscriminator(24, 4, 3).eval()(torch.zeros(1, 24, 256, 256)).shape == (1, 1, 30, 30)
