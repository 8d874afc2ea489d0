"""GPEN-BFR-512 (talkingface.restoration.gpen) against GPEN's original code as VideoReTalking vendors it.

``tests/fixtures/gpen/official_gpen.npz`` holds what the original code computed on our seeded weights in float64
(``make_fixture.py``: OpenTalker/video-retalking d32e8e5, ``third_part/GPEN/face_model``; the compiled-op loader
stubbed so the official CPU fallback runs): the release's state-dict layout, ``FullGenerator`` outputs for three
configurations (``seeded.CONFIGS``), ``FaceGAN.process`` on a 64 × 64 face, and the ``upfirdn2d`` /
``fused_leaky_relu`` fallbacks on seeded inputs.

A release-size forward is not run here: 5.5–6 s in float32 on one thread of this EPYC (over the 5 s the numerics
budget allows); the ``wide`` case runs the release's widths (512/1024 channels, fan-in 9216) at 16 px instead.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.errors import CheckpointError, DataError
from talkingface.restoration.gpen import (GPEN_BFR_512, FullGenerator, ModulatedConv2d, faces_to_input,
                                          fused_leaky_relu, gpen_bfr_512, load_gpen, make_kernel, output_to_faces,
                                          restore_faces, upfirdn2d)
from talkingface.restoration.gpen import ops, restore, weights

from fixture_tools import load_module, state_layout
from numerics import REL64, assert_close64, assert_fp32_close, fp32_bound, max_abs_diff, scale_of

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gpen"
seeded = load_module(FIXTURES / "seeded.py", "gpen_seeded")
OFFICIAL = dict(np.load(FIXTURES / "official_gpen.npz"))
COMMIT = "d32e8e58248255e2d243eeaf3cba545dbe505ca8"
# float32 bound of the ``wide`` case (docs/testing.md rule 4): depth = the conv/linear layers on the longest path
# (encoder ecd0..ecd2 3, final_linear 1, mapping network 8, a modulation 1, decoder conv1 + 2 x 2 levels 5, a
# ToRGB 1: 19), terms = the largest fan-in (a decoder 3x3 conv over 512 + 512 injected channels: 9216).
DEPTH, TERMS = 19, 9216


def official(key: str) -> np.ndarray:
    return OFFICIAL[key]


def miss(ours, expected) -> float:
    """How many times the float64 parity bound ``max |ours − expected|`` is."""
    return max_abs_diff(ours, expected) / (REL64 * scale_of(expected))


@pytest.fixture(scope="module")
def nets() -> dict[str, FullGenerator]:
    return {case: seeded.seeded_generator(case) for case in seeded.CONFIGS}


@pytest.fixture(scope="module")
def nets64(nets) -> dict[str, FullGenerator]:
    return {case: copy.deepcopy(net).double() for case, net in nets.items()}


def run(net: FullGenerator, case: str, dtype=torch.float64) -> torch.Tensor:
    with torch.no_grad():
        return net(seeded.seeded_input(case).to(dtype))


# ---- layout, weights, loading ------------------------------------------------------------------------------------
def test_state_dict_is_the_release_layout_in_order():
    """Keys, shapes and dtypes, in order, of the official ``FullGenerator(512, 512, 8, 2, narrow=1)`` that
    ``make_fixture.py`` listed (blur kernels included: persistent buffers of the release), 163 entries, 71,005,223
    parameters; the three test configurations have the official layouts too."""
    net = gpen_bfr_512()
    layout = [(k, "x".join(map(str, s)), d) for k, s, d in state_layout(net)]
    assert layout == list(zip(official("release_keys"), official("release_shapes"), official("release_dtypes")))
    assert len(layout) == 163 and sum(p.numel() for p in net.parameters()) == 71_005_223
    assert int(official("release_parameters")) == 71_005_223 and str(official("official_commit")) == COMMIT
    state = net.state_dict()  # written out independently of the listing
    assert tuple(state["generator.convs.0.conv.weight"].shape) == (1, 512, 1024, 3, 3)
    assert tuple(state["generator.convs.13.activate.bias"].shape) == (128,)  # 64 channels at 512, concatenated
    assert tuple(state["ecd1.0.0.kernel"].shape) == (4, 4) and tuple(state["ecd0.0.0.weight"].shape) == (64, 3, 1, 1)
    assert tuple(state["final_linear.0.weight"].shape) == (512, 8192)
    assert torch.equal(state["generator.to_rgbs.0.upsample.kernel"], make_kernel([1, 3, 3, 1]) * 4)
    for case, config in seeded.CONFIGS.items():
        ours = [f"{k}|{'x'.join(map(str, s))}|{d}" for k, s, d in state_layout(FullGenerator(**config))]
        assert ours == list(official(f"{case}_layout")), case


def test_seeded_weights_and_inputs_are_the_fixture_ones(nets):
    for case, net in nets.items():
        assert seeded.weight_digest(net) == str(official(f"{case}_sha256_weights")), case
        assert seeded.array_digest(seeded.seeded_input(case).numpy()) == str(official(f"{case}_input_sha256"))
    assert seeded.array_digest(seeded.seeded_face()) == str(official("process_face_sha256"))


def test_release_files_load_strictly(tmp_path: Path, monkeypatch):
    """A raw state dict loads strictly (every tensor, kernels included); a file with other keys, or not a state dict,
    is refused naming the file (the release's architecture is swapped for the small one to keep this fast)."""
    config = seeded.CONFIGS["small"]
    monkeypatch.setattr(weights, "gpen_bfr_512", lambda: FullGenerator(**config))
    source = seeded.seeded_generator("small")
    torch.save(source.state_dict(), tmp_path / "GPEN-BFR-512.pth")
    loaded = load_gpen(tmp_path / "GPEN-BFR-512.pth")
    assert not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in source.state_dict().items())
    state = source.state_dict()
    state["generator.style.9.weight"] = state.pop("generator.style.8.weight")
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth does not match FullGenerator: missing keys \(1\): "
                                              r"generator\.style\.8\.weight; unexpected keys \(1\)"):
        load_gpen(tmp_path / "other.pth")
    torch.save({"params_ema": source.state_dict()}, tmp_path / "wrapped.pth")
    with pytest.raises(CheckpointError, match=r"wrapped\.pth: expected a raw GPEN state dict"):
        load_gpen(tmp_path / "wrapped.pth")


def test_a_missing_weights_file_is_named_with_where_to_get_it(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"GPEN-BFR-512\.pth not found at checkpoints/GPEN-BFR-512\.pth: get "
                                              r"it from GitHub release v0\.0\.1 of vinthony/video-retalking "
                                              r"\(yangxy/GPEN's GPEN-BFR-512\) \(see checkpoints/README\.md\)"):
        load_gpen()
    with pytest.raises(CheckpointError, match=r"not found at .*elsewhere\.pth"):
        load_gpen(tmp_path / "elsewhere.pth")


def test_the_weights_are_declared_and_listed():
    from talkingface.registry import BUILTIN_PLUGIN_MODULES

    assert GPEN_BFR_512.filename == "GPEN-BFR-512.pth" and GPEN_BFR_512.licence.startswith("not stated")
    assert "talkingface.restoration" in BUILTIN_PLUGIN_MODULES  # so `talkingface list --weights` imports it
    import talkingface.restoration

    assert talkingface.restoration.GPEN_BFR_512 is GPEN_BFR_512
    readme = (Path(__file__).resolve().parents[1] / "checkpoints" / "README.md").read_text()
    assert "| `GPEN-BFR-512.pth` | VideoReTalking reference enhancement (talkingface.restoration.gpen) |" in readme


# ---- the two custom ops --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(seeded.UPFIRDN_CASES))
def test_upfirdn2d_equals_the_official_cpu_path(case):
    """Seeded asymmetric kernels, up 1–3, down 1–2, negative pads: float64 equal to ``upfirdn2d_native``
    (measured difference 0)."""
    _, _, up, down, pad = seeded.UPFIRDN_CASES[case]
    x, kernel = seeded.upfirdn_inputs(case)
    out = upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    assert_close64(out, official(f"upfirdn_{case}"), case)
    assert max_abs_diff(out, official(f"upfirdn_{case}")) == 0.0


@pytest.mark.parametrize("case", list(seeded.LRELU_CASES))
def test_fused_leaky_relu_equals_the_official_cpu_path(case):
    _, slope, scale = seeded.LRELU_CASES[case]
    x, bias = seeded.lrelu_inputs(case)
    assert max_abs_diff(fused_leaky_relu(x, bias, slope, scale), official(f"lrelu_{case}")) == 0.0


def test_upfirdn2d_by_hand():
    """An impulse through up 2 / pad (2, 1) / the [1, 3, 3, 1] kernel ×4 (``ToRGB``'s upsampling) is the kernel
    placed at 2·position − 1 (the half-pixel phase), and down 2 keeps the even samples of the filtered signal."""
    x = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    x[0, 0, 1, 1] = 1.0
    kernel = make_kernel([1, 3, 3, 1]).double() * 4
    up = upfirdn2d(x, kernel, up=2, pad=(2, 1))
    assert up.shape == (1, 1, 6, 6)
    expected = torch.zeros(6, 6, dtype=torch.float64)
    expected[1:5, 1:5] = kernel
    assert torch.equal(up[0, 0], expected)
    ramp = torch.arange(8, dtype=torch.float64).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    box = torch.full((1, 2), 0.5, dtype=torch.float64)  # [0.5, 0.5] along x only
    down = upfirdn2d(ramp, box, down=2)
    assert down.shape == (1, 1, 4, 4) and down[0, 0, 0].tolist() == [0.5, 2.5, 4.5, 6.5]
    assert make_kernel([1, 3, 3, 1]).sum() == 1.0 and make_kernel([[1, 2], [3, 4]])[1, 1] == 0.4


def test_breaking_the_ops_misses_by_orders_of_magnitude(monkeypatch):
    """Planted in our ops: the kernel not flipped (seen with asymmetric kernels; GPEN's [1, 3, 3, 1] kernels are
    symmetric, so there it changes nothing, asserted below), the padding off by one, the ×√2 gain dropped.
    Measured in docs/videoretalking.md, "GPEN-BFR-512"."""
    flipped = ops.conv_kernel
    monkeypatch.setattr(ops, "conv_kernel", lambda kernel: kernel.view(1, 1, *kernel.shape))
    misses = []
    for case, (_, _, up, down, pad) in seeded.UPFIRDN_CASES.items():
        x, kernel = seeded.upfirdn_inputs(case)
        misses.append(miss(upfirdn2d(x, kernel, up=up, down=down, pad=pad), official(f"upfirdn_{case}")))
    assert min(misses) > 1e6, misses
    symmetric = make_kernel([1, 3, 3, 1])
    assert torch.equal(ops.conv_kernel(symmetric), flipped(symmetric))
    monkeypatch.setattr(ops, "conv_kernel", flipped)
    original = ops.upfirdn2d
    for case, (_, _, up, down, pad) in seeded.UPFIRDN_CASES.items():
        x, kernel = seeded.upfirdn_inputs(case)
        out = original(x, kernel, up=up, down=down, pad=(pad[0] + 1, pad[1] - 1))
        assert miss(out, official(f"upfirdn_{case}")) > 1e6, case
    x, bias = seeded.lrelu_inputs("map")
    assert miss(fused_leaky_relu(x, bias, scale=1.0), official("lrelu_map")) > 1e6


# ---- the generator: float64 parity, float32 bound, breaks ----------------------------------------------------------
@pytest.mark.numerics
def test_float64_generator_equals_the_official_code(nets64):
    """float64 parity at 1e-9 of scale for the small case (batch 2: the grouped per-sample convs), the other
    constructor switches (additive injection, a 3-tap blur with odd padding), the release's widths (``wide``), and
    the style code from the encoder (measured differences: docs/videoretalking.md, "GPEN-BFR-512")."""
    for case in ("small", "other", "wide"):
        assert_close64(run(nets64[case], case), official(f"{case}_output"), case)
    with torch.no_grad():
        code, _ = nets64["small"].encode(seeded.seeded_input("small"))
    assert_close64(code, official("small_code"), "style code")


@pytest.mark.numerics
def test_the_generator_draws_no_noise_and_batches_per_sample(nets64):
    """The decoder's ``NoiseInjection`` layers take the encoder's features (the release's FullGenerator), so the
    output does not depend on the random state (bit-identical under two seeds; the official two runs were equal
    too), and each face of a batch gets its own result (float64, 1e-9)."""
    net, x = nets64["small"], seeded.seeded_input("small")
    assert float(official("small_second_run_difference")) == 0.0
    with torch.no_grad():
        torch.manual_seed(1)
        first = net(x)
        torch.manual_seed(2)
        assert torch.equal(net(x), first)
        for index in range(2):
            assert_close64(net(x[index:index + 1])[0], official("small_output")[index], f"face {index} alone")


def _no_demodulation(monkeypatch, net):
    for module in net.modules():
        if isinstance(module, ModulatedConv2d) and module.demodulate:
            monkeypatch.setattr(module, "demodulate", False)


GENERATOR_BREAKS = {
    "upfirdn pad off by one": lambda mp, net: mp.setattr(
        ops, "upfirdn2d", lambda x, k, up=1, down=1, pad=(0, 0), f=ops.upfirdn2d: f(x, k, up, down,
                                                                                    (pad[0] + 1, pad[1] - 1))),
    "demodulation off": _no_demodulation,
    "fused leaky ReLU without its gain": lambda mp, net: mp.setattr(
        ops, "fused_leaky_relu", lambda x, b, negative_slope=0.2, scale=1.0, f=ops.fused_leaky_relu: f(
            x, b, negative_slope, 1.0)),
    "mapping network skipped (input_is_latent, as GFPGAN runs)": lambda mp, net: mp.setattr(
        net.generator.style, "forward", lambda z: z),
}


@pytest.mark.numerics
@pytest.mark.parametrize("name", list(GENERATOR_BREAKS))
def test_breaking_the_generator_misses_by_orders_of_magnitude(name, nets64, monkeypatch):
    """Each break changes our code and must miss the float64 bound by >= 1e4 (measured 3.8e8 to 4.2e9 x the bound:
    docs/videoretalking.md, "GPEN-BFR-512"). The kernel-not-flipped break is the next test's subject."""
    net = nets64["small"]
    GENERATOR_BREAKS[name](monkeypatch, net)
    assert miss(run(net, "small"), official("small_output")) >= 1e4, name


@pytest.mark.numerics
def test_an_unflipped_kernel_changes_nothing_in_gpen(nets64, monkeypatch):
    """Why the kernel-flip break is checked on the op (asymmetric kernels) and not here: every kernel GPEN uses is
    the outer product of [1, 3, 3, 1], symmetric under the flip, so the output is bit-identical without it."""
    good = run(nets64["small"], "small")
    monkeypatch.setattr(ops, "conv_kernel", lambda kernel: kernel.view(1, 1, *kernel.shape))
    assert torch.equal(run(nets64["small"], "small"), good)


@pytest.mark.numerics
def test_float32_at_the_release_widths_within_the_float32_bound(nets, monkeypatch):
    """The ``wide`` case (the release's 512/1024-channel layers at 4–16 px) in float32 against the official float64
    output, within ``fp32_bound(scale, 9216, 19)``; the small case too; demodulation switched off misses the wide
    bound by >= 10x. Measured (max |float32 − float64| in eps32 × scale): docs/videoretalking.md."""
    for case in ("wide", "small"):
        expected = official(f"{case}_output")
        out = run(nets[case], case, torch.float32)
        assert out.dtype == torch.float32
        assert_fp32_close(out, expected, fp32_bound(scale_of(expected), TERMS, DEPTH), case)
    expected = official("wide_output")
    _no_demodulation(monkeypatch, nets["wide"])
    broken = max_abs_diff(run(nets["wide"], "wide", torch.float32), expected)
    assert broken >= 10 * fp32_bound(scale_of(expected), TERMS, DEPTH)


# ---- FaceGAN.process ------------------------------------------------------------------------------------------------
def test_conversions_equal_face_gans():
    """``faces_to_input`` gives the float32 bytes ``img2tensor`` gave; ``output_to_faces`` on the official float64
    output gives ``tensor2img``'s uint8 image (truncation, BGR)."""
    x = faces_to_input(seeded.seeded_face())
    assert x.dtype == torch.float32 and x.shape == (1, 3, 64, 64)
    assert seeded.array_digest(x.numpy()) == str(official("process_input_sha256"))
    assert str(official("process_input_dtype")) == "torch.float32"
    assert np.array_equal(output_to_faces(torch.from_numpy(official("process_output")))[0], official("process_result"))
    assert faces_to_input(seeded.seeded_face(), torch.float64).dtype == torch.float64


CONVERSION_BREAKS = {
    "no BGR to RGB": lambda mp: mp.setattr(restore, "_bgr_to_rgb", lambda x: x),
    "rounding instead of truncation": lambda mp: mp.setattr(restore, "_to_uint8",
                                                            lambda x: np.round(x).astype(np.uint8)),
}


@pytest.mark.parametrize("name", list(CONVERSION_BREAKS))
def test_breaking_the_conversions_changes_the_result(name, monkeypatch):
    CONVERSION_BREAKS[name](monkeypatch)
    ours = output_to_faces(torch.from_numpy(official("process_output")))[0].astype(int)
    wrong = np.mean(ours != official("process_result"))
    assert wrong > 0.2, (name, wrong)


@pytest.mark.numerics
def test_restore_faces_equals_face_gan_process(nets64, nets):
    """In float64, ``restore_faces`` returns exactly ``FaceGAN.process``'s uint8 face (the pre-truncation values are
    >= 4.6e-5 from an integer, 1e5x the parity bound); in float32 (how it runs) every pixel within one level;
    a batch of two gives each face's own result."""
    face = seeded.seeded_face()
    expected = official("process_result")
    assert float(official("process_integer_margin")) > 1e-5
    assert np.array_equal(restore_faces(nets64["small"], face), expected)
    restored = restore_faces(nets["small"], face)
    assert restored.dtype == np.uint8 and restored.shape == (64, 64, 3)
    assert np.abs(restored.astype(int) - expected).max() <= 1
    batch = restore_faces(nets64["small"], np.stack([face, face[::-1]]))
    assert batch.shape == (2, 64, 64, 3) and np.array_equal(batch[0], expected)
    assert np.array_equal(batch[1], restore_faces(nets64["small"], face[::-1]))


def test_restore_faces_rejects_what_is_not_an_aligned_face(nets):
    net = nets["other"]
    for bad in (np.zeros((64, 64, 3), np.uint8), np.zeros((32, 32, 3), np.float32), np.zeros((32, 32), np.uint8),
                np.zeros((32, 32, 4), np.uint8)):
        with pytest.raises(DataError, match="GPEN"):
            restore_faces(net, bad)
    assert restore_faces(net, np.zeros((32, 32, 3), np.uint8)).shape == (32, 32, 3)
