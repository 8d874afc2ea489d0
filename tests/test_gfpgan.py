"""GFPGANv1.3 (talkingface.restoration.gfpgan, talkingface.restoration.stylegan2_clean) against GFPGAN's original
classes as VideoReTalking vendors them.

``tests/fixtures/gfpgan/official_gfpgan.npz`` holds what the original code computed on our seeded weights in float64
(``make_fixture.py``: OpenTalker/video-retalking d32e8e5, ``third_part/GFPGAN``): the release configuration's
state-dict layout, ``GFPGANv1Clean`` at two narrow configurations (random noise under a seed, the stored noise, zero
noise, the U-Net's RGB images), a bare ``StyleGAN2GeneratorClean`` (style MLP, truncation, mixing), and
``GFPGANer.enhance``'s restore step on a 32-pixel face and, at the release's size, on a 512 face (its input, output and
restored face at every 8th pixel; ours against it there in float64: difference 0, recorded).
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.errors import CheckpointError, DataError
from talkingface.restoration import stylegan2_clean
from talkingface.restoration.gfpgan import (GFPGAN_V13, GFPGANv1Clean, faces_to_input, gfpgan_v13, load_gfpgan,
                                            load_gfpgan_weights, network, output_to_faces, restore_faces)
from talkingface.restoration.stylegan2_clean import ModulatedConv2d, StyleGAN2GeneratorClean, StyleConv

from fixture_tools import load_module
from numerics import REL64, RandomOps, assert_close64, assert_fp32_close, fp32_bound, max_abs_diff, scale_of

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "gfpgan"
seeded = load_module(FIXTURES / "seeded.py", "gfpgan_seeded")
OFFICIAL = dict(np.load(FIXTURES / "official_gfpgan.npz"))
NETWORK_CASES = ("small", "variant")
STRIDE = 8
# float32 bounds (docs/testing.md rule 4): depth = conv/linear layers on the longest path (conv_body_first, two per
# down block, final_conv, final_linear, the modulation, style_conv1, two StyleConvs per stage, the last ToRGB), terms
# = the largest fan-in (a StyleConv's 3x3 over the decoder's channels)
FP32 = {"small": {"depth": 18, "terms": 128 * 9}, "variant": {"depth": 22, "terms": 64 * 9}}


def official(key: str) -> np.ndarray:
    return OFFICIAL[key]


@pytest.fixture(scope="module")
def nets64() -> dict[str, GFPGANv1Clean]:
    return {case: seeded.seeded_gfpgan(case).double() for case in NETWORK_CASES}


def seeded_forward(net, x, **options):
    """``(image, rgbs, random ops, next four float64 uniforms)`` under ``torch.manual_seed(SEED)``."""
    torch.manual_seed(seeded.SEED)
    with torch.no_grad(), RandomOps() as record:
        image, rgbs = net(x, **options)
    return image, rgbs, record.ops, torch.rand(4, dtype=torch.float64).numpy()


# ---- layout and loading ----------------------------------------------------------------------------------------
def test_release_state_dict_is_the_official_layout_in_order():
    """Keys, shapes and dtypes, in order, of ``GFPGANv1Clean(**GFPGANer's clean config)`` as the official class
    lists them (the official ``GFPGANer`` also loaded our seeded release file with ``strict=True``)."""
    net = gfpgan_v13()
    state = net.state_dict()
    layout = [(k, "x".join(map(str, v.shape)), str(v.dtype).replace("torch.", "")) for k, v in state.items()]
    assert layout == list(zip(official("official_keys"), official("official_shapes"), official("official_dtypes")))
    parameters = sum(p.numel() for p in net.parameters())
    assert len(state) == 285 and parameters == 86_444_252 == int(official("official_parameters"))
    # written out independently of the listing
    assert tuple(state["final_linear.weight"].shape) == (16 * 512, 256 * 4 * 4)  # different_w: 16 codes
    assert tuple(state["stylegan_decoder.style_convs.0.modulated_conv.weight"].shape) == (1, 512, 512, 3, 3)
    assert tuple(state["condition_scale.6.2.weight"].shape) == (32, 32, 3, 3)  # sft_half: U-Net width at 512
    assert tuple(state["stylegan_decoder.noises.noise14"].shape) == (1, 1, 512, 512)
    assert tuple(state["stylegan_decoder.style_mlp.15.weight"].shape) == (512, 512)  # 8 MLP layers (unused)
    assert all(p.requires_grad for p in net.parameters())  # fix_decoder=False


def test_seeded_weights_and_inputs_are_the_fixture_ones():
    for case in NETWORK_CASES:
        assert seeded.weight_digest(seeded.seeded_gfpgan(case)) == str(official(f"sha256_{case}")), case
    assert seeded.weight_digest(seeded.seeded_generator()) == str(official("sha256_generator"))
    for case in ("small", "release"):
        assert hashlib.sha256(seeded.seeded_face(case).tobytes()).hexdigest() == str(official(f"{case}_face_sha256"))


def test_release_files_load_strictly(tmp_path: Path):
    """``['params_ema']`` as GFPGANer reads it (strict), ``['params']`` only as its fallback; anything else is named."""
    source, other = seeded.seeded_gfpgan("small"), seeded.seeded_gfpgan("small", seed=5)
    torch.save({"params_ema": source.state_dict(), "params": other.state_dict(), "iter": 7}, tmp_path / "a.pth")
    loaded = load_gfpgan_weights(GFPGANv1Clean(**seeded.CASES["small"]), tmp_path / "a.pth").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    torch.save({"params": other.state_dict()}, tmp_path / "b.pth")
    loaded = load_gfpgan_weights(GFPGANv1Clean(**seeded.CASES["small"]), tmp_path / "b.pth").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in other.state_dict().items())
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=r"c\.pth: expected GFPGAN's \{'params_ema': state dict\} .*found a dict "
                                              r"with the keys 'state_dict', 'epoch'"):
        load_gfpgan_weights(GFPGANv1Clean(**seeded.CASES["small"]), tmp_path / "c.pth")
    state = dict(source.state_dict())
    state.pop("stylegan_decoder.noises.noise0")
    torch.save({"params_ema": state}, tmp_path / "d.pth")
    with pytest.raises(CheckpointError, match=r"d\.pth\['params_ema'\] does not match GFPGANv1Clean: missing keys "
                                              r"\(1\): stylegan_decoder\.noises\.noise0"):
        load_gfpgan_weights(GFPGANv1Clean(**seeded.CASES["small"]), tmp_path / "d.pth")


def test_a_missing_weights_file_is_named_with_where_to_get_it(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=r"GFPGANv1\.3\.pth not found at checkpoints/GFPGANv1\.3\.pth; see "
                                              r"checkpoints/README\.md \(get GFPGANv1\.3\.pth from GitHub release "
                                              r"v0\.0\.1 of vinthony/video-retalking \(TencentARC/GFPGAN v1\.3\)\)"):
        load_gfpgan()
    with pytest.raises(CheckpointError, match=r"not found at .*elsewhere\.pth"):
        load_gfpgan(tmp_path / "elsewhere.pth")
    assert GFPGAN_V13.licence.startswith("Apache-2.0")


def test_the_weights_are_declared_for_list_weights():
    from talkingface.registry import discover_plugins
    from talkingface.weights import weights_catalogue

    discover_plugins()
    assert GFPGAN_V13 in weights_catalogue()


# ---- float64 parity ---------------------------------------------------------------------------------------------
@pytest.mark.numerics
@pytest.mark.parametrize("case", NETWORK_CASES)
def test_float64_network_equals_the_official_code(case, nets64):
    """Random noise under the same seed (the same draws: ops, shapes, order and the generator state after), the
    U-Net's RGB images, the stored noise and zero noise: float64 at 1e-9 of scale (measured difference 0)."""
    net, x = nets64[case], seeded.seeded_input(case).double()
    image, rgbs, ops, after = seeded_forward(net, x)
    assert ops == list(official(f"{case}_random_ops")) and np.array_equal(after, official(f"{case}_rng_after"))
    assert_close64(image, official(f"{case}_random_image"), f"{case} image")
    assert len(rgbs) == net.log_size - 2
    for i, rgb in enumerate(rgbs):
        assert_close64(rgb, official(f"{case}_random_rgb{i}"), f"{case} rgb {i}")
    for mode in ("stored", "zero"):
        image, rgbs, ops, _ = seeded_forward(net, x, noise=mode, return_rgb=False)
        assert ops == [] and rgbs == []
        assert_close64(image, official(f"{case}_{mode}_image"), f"{case} {mode} noise")


@pytest.mark.numerics
def test_float64_generator_equals_the_official_code():
    """The bare decoder: style MLP, truncation, two codes mixed at index 3 and at the index drawn from
    ``random`` (as the release), latents returned, stored noise."""
    net = seeded.seeded_generator().double()
    styles = {k: v.double() for k, v in seeded.generator_styles().items()}
    options = dict(truncation=seeded.GENERATOR_TRUNCATION, truncation_latent=styles["mean"], return_latents=True)
    torch.manual_seed(seeded.SEED)
    with torch.no_grad(), RandomOps() as record:
        image, latent = net([styles["z1"], styles["z2"]], inject_index=seeded.GENERATOR_INJECT, **options)
    assert record.ops == list(official("generator_random_ops"))
    assert np.array_equal(torch.rand(4, dtype=torch.float64).numpy(), official("generator_rng_after"))
    assert_close64(image, official("generator_image"), "image")
    assert_close64(latent, official("generator_latent"), "latent")
    random.seed(seeded.SEED)
    torch.manual_seed(seeded.SEED)
    with torch.no_grad():
        image, latent = net([styles["z1"], styles["z2"]], **options)
        stored, _ = net([styles["z1"]], noise="stored")
    assert_close64(image, official("generator_drawn_image"), "drawn mixing index")
    assert_close64(latent, official("generator_drawn_latent"), "drawn mixing latent")
    assert_close64(stored, official("generator_stored_image"), "stored noise")


@pytest.mark.numerics
def test_restore_equals_gfpganer_enhance(nets64):
    """``restore_faces`` = ``GFPGANer.enhance(has_aligned=True)``'s restore step: on a 32-pixel face through the small
    network in float64, the same network input (bytes), output and restored face (every value equal)."""
    face = seeded.seeded_face("small")
    x = faces_to_input(face, 32)
    assert x.dtype == torch.float32 and x.shape == (1, 3, 32, 32)
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == str(official("small_restore_input_sha256"))
    torch.manual_seed(seeded.SEED)
    restored = restore_faces(nets64["small"], face)
    assert restored.dtype == np.uint8 and restored.shape == face.shape
    assert np.array_equal(restored, official("small_restored"))
    assert np.array_equal(output_to_faces(torch.from_numpy(official("small_restore_output")))[0], restored)
    torch.manual_seed(seeded.SEED)
    assert np.array_equal(restore_faces(nets64["small"], face[None])[0], restored)  # a batch of one


def test_release_size_input_and_output_conversion_equal_the_official():
    """At 512: the network input ours builds is the official one (SHA-256 of its bytes), and the official float64
    output (every 8th pixel) converts to the official restored face (every value). Ours through the whole release
    network in float64 was equal too (in ``make_fixture.py`` only: a float64 forward at 512 takes ~20 s, a float32 one
    6-9 s on one thread; recorded difference 0, restored faces equal)."""
    x = faces_to_input(seeded.seeded_face("release"))
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == str(official("release_input_sha256"))
    assert np.array_equal(x[..., ::STRIDE, ::STRIDE].numpy(), official("release_input_sub"))
    faces = output_to_faces(torch.from_numpy(official("release_output_sub")))
    assert np.array_equal(faces[0], official("release_restored_sub"))
    assert float(official("full_difference")) == 0.0 and list(official("full_restored_mismatch")) == [0, 0]
    assert float(official("full_scale")) > 1


def test_conversions_by_hand():
    """BGR -> RGB, x/255 rounded to float32, (x - 0.5) / 0.5; back: float32, clamp, (x + 1) / 2, x 255, rounded,
    RGB -> BGR."""
    face = np.zeros((2, 2, 3), np.uint8)
    face[0, 0] = (0, 128, 255)  # B, G, R
    x = faces_to_input(face, 2)
    assert x[0, :, 0, 0].tolist() == [1.0, (np.float32(128 / 255) - 0.5) / 0.5, -1.0]
    out = torch.tensor([[[[2.0, -3.0], [2 / 255 - 1, 0.0]]] * 3], dtype=torch.float64)  # (1, 3, 2, 2)
    out[0, 2, 0, 0] = -1.0
    back = output_to_faces(out)[0]
    assert back[0, 0].tolist() == [0, 255, 255] and back[0, 1].tolist() == [0, 0, 0]
    assert back[1, 0].tolist() == [1, 1, 1] and back[1, 1].tolist() == [128, 128, 128]  # 127.5 -> 128
    with pytest.raises(DataError, match=r"aligned uint8 BGR faces of \(512, 512, 3\)"):
        faces_to_input(np.zeros((256, 256, 3), np.uint8))
    with pytest.raises(DataError, match="got float32"):
        faces_to_input(np.zeros((512, 512, 3), np.float32))


# ---- float32 ---------------------------------------------------------------------------------------------------
@pytest.mark.numerics
@pytest.mark.parametrize("case", NETWORK_CASES)
def test_float32_network_within_the_float32_bound(case, nets64, monkeypatch):
    """The float32 network against the official float64 outputs, random noise given explicitly (the float64 draws
    ours makes under the seed, rounded: float32 draws differ by CPU kernel) and zero noise, within
    ``fp32_bound(scale, terms, depth)``; SFT scale and shift swapped misses the bound by orders of magnitude.

    Measured on this AVX-512 EPYC (max |float32 - float64| in eps32 x scale; native / avx2 / sse4 kernel sets):
    small random noise 6.4 / 12.0 / 12.6, zero 6.8 / 14.8 / 14.3; variant random 9.7 / 12.0 / 11.2, zero 13.2 / 13.3 /
    12.9; the bounds are 4.9e3 (small) and 4.2e3 (variant) x eps32 x scale, 330x above the worst; the break misses
    them by 1.9e3x (small) and 1.8e3x (variant)."""
    net, x = seeded.seeded_gfpgan(case), seeded.seeded_input(case)
    torch.manual_seed(seeded.SEED)
    noise64 = nets64[case].stylegan_decoder.layer_noise("random", len(x), x.double())
    noise = [n.float() for n in noise64]
    with torch.no_grad():
        image = net(x, noise=noise, return_rgb=False)[0]
        zero = net(x, noise="zero", return_rgb=False)[0]
    assert image.dtype == torch.float32
    expected = official(f"{case}_random_image")
    bound = fp32_bound(scale_of(expected), **FP32[case])
    assert_fp32_close(image, expected, bound, f"{case} random noise")
    assert_fp32_close(zero, official(f"{case}_zero_image"), fp32_bound(scale_of(official(f"{case}_zero_image")),
                                                                       **FP32[case]), f"{case} zero noise")
    monkeypatch.setattr(network, "sft", lambda out, scale, shift, half, f=network.sft: f(out, shift, scale, half))
    with torch.no_grad():
        broken = net(x, noise=noise, return_rgb=False)[0]
    assert max_abs_diff(broken, expected) > 100 * bound


@pytest.mark.numerics
def test_zero_noise_is_deterministic_and_draws_nothing():
    net, x = seeded.seeded_gfpgan("small", noise="zero"), seeded.seeded_input("small")
    state = torch.get_rng_state()
    with torch.no_grad(), RandomOps() as record:
        first, second = net(x)[0], net(x)[0]
        explicit = net(x, noise=[torch.zeros(shape) for shape in net.stylegan_decoder.noise_shapes(len(x))])[0]
    assert record.ops == [] and torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second) and torch.equal(first, explicit)
    net.noise = "random"
    with torch.no_grad():
        assert not torch.equal(net(x)[0], first)
    with pytest.raises(ValueError, match="noise='none'"):
        net.noise = "none"
    with pytest.raises(ValueError, match="expected 7 images"):
        net(x, noise=[torch.zeros(1)])


# ---- deliberate breaks of our code -----------------------------------------------------------------------------
def _set_all(attribute: str, value):
    """Set ``attribute`` on every demodulating ``ModulatedConv2d`` of the network."""
    def apply(monkeypatch, net):
        for module in net.modules():
            if isinstance(module, ModulatedConv2d) and module.demodulate:
                monkeypatch.setattr(module, attribute, value)
    return apply


def _first_half_sft(out, scale, shift, half):
    modulated, same = torch.split(out, out.size(1) // 2, dim=1)
    return torch.cat([modulated * scale + shift, same], dim=1)


def _pairs_swapped(self, noise, batch, like):
    images = _ORIGINAL_LAYER_NOISE(self, noise, batch, like)  # layer 0 is style_conv1, then a pair per stage
    return images[:1] + [images[i + 1 if i % 2 else i - 1] for i in range(1, len(images))]


def _drawn_in_reverse(self, noise, batch, like):
    if (self.noise if noise is None else noise) == "random":
        return [like.new_empty(shape).normal_() for shape in self.noise_shapes(batch)[::-1]][::-1]
    return _ORIGINAL_LAYER_NOISE(self, noise, batch, like)


_ORIGINAL_LAYER_NOISE = StyleGAN2GeneratorClean.layer_noise
BREAKS = {
    "demodulation off": _set_all("demodulate", False),
    "demodulation eps 0": _set_all("eps", 0.0),
    "demodulation eps 1e-6": _set_all("eps", 1e-6),
    "SFT scale and shift swapped": lambda mp, net: mp.setattr(
        network, "sft", lambda out, scale, shift, half, f=network.sft: f(out, shift, scale, half)),
    "SFT on the first half": lambda mp, net: mp.setattr(network, "sft", _first_half_sft),
    "SFT skipped": lambda mp, net: mp.setattr(network, "sft", lambda out, scale, shift, half: out),
    "noise of a stage's two StyleConvs swapped": lambda mp, net: mp.setattr(StyleGAN2GeneratorClean, "layer_noise",
                                                                            _pairs_swapped),
    "noise drawn in reverse layer order": lambda mp, net: mp.setattr(StyleGAN2GeneratorClean, "layer_noise",
                                                                     _drawn_in_reverse),
    "noise strength ignored": lambda mp, net: mp.setattr(
        StyleConv, "forward", lambda self, x, style, noise="random", f=StyleConv.forward: f(self, x, style, "zero")),
}


@pytest.mark.numerics
@pytest.mark.parametrize("name", list(BREAKS))
def test_breaking_our_code_misses_by_orders_of_magnitude(name, nets64, monkeypatch):
    """Each break changes our code (a module's switch or constant, a function or method) and must miss the float64
    bound (1e-9 of scale) by >= 1e7 on the small case (the release's switches; random noise under the seed).
    Measured: docs/videoretalking.md, "GFPGANv1.3"."""
    net, x = nets64["small"], seeded.seeded_input("small").double()
    BREAKS[name](monkeypatch, net)
    image = seeded_forward(net, x, return_rgb=False)[0]
    expected = official("small_random_image")
    miss = max_abs_diff(image, expected) / (REL64 * scale_of(expected))
    print(f"{name}: {miss:.3g} x the bound")
    assert miss >= 1e7, f"{name}: only {miss:.3g} x the bound"


def test_sft_half_off_on_a_half_network_cannot_run(nets64, monkeypatch):
    """The flag is read: a ``sft_half`` network's maps cover half the channels, so SFT on all of them fails."""
    monkeypatch.setattr(nets64["small"].stylegan_decoder, "sft_half", False)
    with pytest.raises(RuntimeError, match="size of tensor"), torch.no_grad():
        nets64["small"](seeded.seeded_input("small").double(), noise="zero")


def test_shapes_are_checked():
    net = GFPGANv1Clean(**seeded.CASES["small"])
    with pytest.raises(ValueError, match=r"expects \(B, 3, 32, 32\) images, got \(1, 3, 64, 64\)"):
        net(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="sample_mode='nearest'"):
        ModulatedConv2d(4, 4, 3, 8, sample_mode="nearest")
    with pytest.raises(ValueError, match="noise='gaussian'"):
        StyleConv(4, 4, 3, 8)(torch.zeros(1, 4, 4, 4), torch.zeros(1, 8), noise="gaussian")
    assert stylegan2_clean.channel_table(1, 2) == {"4": 512, "8": 512, "16": 512, "32": 512, "64": 512, "128": 256,
                                                   "256": 128, "512": 64, "1024": 32}
