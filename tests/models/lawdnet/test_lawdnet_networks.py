"""LawDNet's generator: the official key layout, float64 parity with the release's classes (fixture made by
tests/models/lawdnet/fixtures/make_fixture.py), the scrambled coarse grid, the dead warp layer."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.models.lawdnet.networks import LawDNetGenerator, standard_grid

from fixture_tools import load_module
from numerics import REL64, assert_close64, assert_fp32_close, fp32_bound, max_abs_diff, scale_of

FIXTURES = Path(__file__).resolve().parent / "fixtures"


seeded = load_module(FIXTURES / "seeded.py", "lawdnet_seeded_fixture")
PUBLISHED = {"source_in_conv": 378_496, "ref_in_conv": 416_128, "trans_conv": 7_046_528, "audio_encoder": 364_672,
             "appearance_conv_list": 4_720_640, "lawLayer_list": 4_737_024, "out_conv": 1_199_107,
             "cross_attention": 2_220_096}


def test_state_dict_layout_equals_the_official_listing():
    listing = [line.split("\t")[:2] for line in (FIXTURES / "lawdnet_keys.txt").read_text().splitlines()
               if "\t" in line]
    generator = LawDNetGenerator(3, 15, 29)
    assert [(k, str(tuple(v.shape))) for k, v in generator.state_dict().items()] == [(k, s) for k, s in listing]
    assert len(listing) == 128 and sum(p.numel() for p in generator.parameters()) == 21_082_691
    for part, count in PUBLISHED.items():
        assert sum(p.numel() for p in getattr(generator, part).parameters()) == count, part
    # ResBlock1d keeps the two BatchNorms it never runs (their keys are in the release)
    assert {k for k in generator.state_dict() if ".norm" in k} == {
        f"audio_encoder.{i}.norm{j}.{name}" for i in (1, 3) for j in (1, 2)
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


@pytest.mark.parametrize("mouth,size", [(64, (104, 80)), (128, (208, 160)), (256, (416, 320)), (288, (468, 360))])
def test_every_stage_size_runs(mouth, size):
    with torch.device("meta"):  # shapes only
        out = LawDNetGenerator()(torch.empty(2, 3, *size), torch.empty(2, 15, *size), torch.empty(2, 29, 5))
    assert out.shape == (2, 3, *size)


def test_standard_grid_is_pixel_centres_in_x_y_order():
    grid = standard_grid(4)
    assert torch.allclose(grid[0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # x runs along columns
    assert torch.allclose(grid[:, 0, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # y along rows


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "official_outputs.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module")
def generators():
    generator = seeded.seeded_generator()
    return generator, copy.deepcopy(generator).double()


def run(generator, case: str, dtype=torch.float32) -> np.ndarray:
    x = {k: v.to(dtype) for k, v in seeded.seeded_inputs(case).items()}
    stride = seeded.STRIDE[case]
    with torch.no_grad():
        return generator(x["source_img"], x["ref_img"], x["audio_feature"]).numpy()[..., ::stride, ::stride]


def test_seeded_weights_are_the_fixture_weights(official, generators):
    assert seeded.weight_digest(generators[0]) == str(official["sha256_generator"])


@pytest.mark.numerics
def test_outputs_equal_the_official_code_in_float64(official, generators):
    """Mouth 64: the 8×6 resize of the alignment code and the antialiased shrink of the coarse grid, the
    scrambled grid, the dead layer skipped; measured difference 0."""
    expected = official["m64_out"]
    assert_close64(run(generators[1], "m64", torch.float64), expected, "m64")
    assert np.std(expected) > 1e4 * REL64 * scale_of(expected)


def _bound(generator, scale: float) -> float:
    layers = [m for m in generator.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))]
    return fp32_bound(scale, max(m.weight[0].numel() for m in layers), depth=len(layers))


@pytest.mark.numerics
def test_float32_at_mouth_288_is_within_float32_error_of_the_official_code(official, generators):
    """The released checkpoint's size (the native 8×6 alignment code, the coarse grid enlarged) in float32:
    measured 1.5e-4 against a bound of 8 × 53 layers × sqrt(15488) × eps32 = 6.3e-3."""
    expected = official["m288_out"]
    bound = _bound(generators[0], scale_of(expected))
    assert_fp32_close(run(generators[0], "m288"), expected, bound, "m288")
    unscrambled = seeded.seeded_generator(scrambled_grid=False)
    assert max_abs_diff(run(unscrambled, "m288"), expected) > 10 * bound  # the quirk matters at 288 too


def test_the_unscrambled_grid_and_swapped_references_miss_by_far_more(official, generators):
    expected = official["m64_out"]
    bound = _bound(generators[0], scale_of(expected))
    unscrambled = copy.deepcopy(generators[0])
    for layer in unscrambled.lawLayer_list:
        layer.scrambled_grid = False
    assert max_abs_diff(run(unscrambled, "m64"), expected) > 10 * bound
    x = seeded.seeded_inputs("m64")
    refs = torch.cat([x["ref_img"][:, 3:6], x["ref_img"][:, :3], x["ref_img"][:, 6:]], 1)
    with torch.no_grad():
        swapped = generators[0](x["source_img"], refs, x["audio_feature"]).numpy()[..., ::2, ::2]
    assert max_abs_diff(swapped, expected) > 10 * bound


def test_the_dead_warp_layer_never_changes_the_output(generators):
    generator = generators[0]
    computed = copy.deepcopy(generator)
    computed.skip_dead_layers = False
    assert np.array_equal(run(computed, "m64"), run(generator, "m64"))  # same ops for the layer that counts
    with torch.no_grad():
        for p in computed.lawLayer_list[0].parameters():
            p.add_(1.0)
    assert np.array_equal(run(computed, "m64"), run(generator, "m64"))


def test_cpu_channel_chunks_compute_the_same_coarse_grid(monkeypatch):
    from talkingface.models.lawdnet.networks import warp as warp_module

    gen = torch.Generator().manual_seed(3)
    kpoints = torch.rand(2, 5, 24, 2, generator=gen) * 2 - 1
    radius = torch.rand(2, 5, 24, 1, generator=gen)
    similarity = torch.rand(2, 5, 24, 4, generator=gen) * 2 - 1
    layer = warp_module.LocalAffineWarp(feature_ch=24, grid_size=12)
    chunked = layer.coarse_grid(kpoints, radius, similarity)  # 3 chunks of 8 channels
    monkeypatch.setattr(warp_module, "CPU_CHANNEL_CHUNK", 24)
    whole = layer.coarse_grid(kpoints, radius, similarity)
    # the same elementwise ops per element; only a SIMD tail may round exp/sin/cos differently (a few ulp)
    bound = 64 * torch.finfo(torch.float32).eps * float(whole.abs().max())
    assert max_abs_diff(chunked.numpy(), whole.numpy()) <= bound
    rolled = layer.coarse_grid(kpoints.roll(1, dims=2), radius, similarity)  # channels paired wrongly
    assert max_abs_diff(rolled.numpy(), whole.numpy()) > 1e4 * bound
