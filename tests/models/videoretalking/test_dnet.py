"""VideoReTalking's D-Net: the official key layout, float64 parity with the release's classes (fixture made by
tests/models/videoretalking/fixtures/make_dnet_fixture.py from OpenTalker/video-retalking at d32e8e5), float32
within float32 error, and code breaks that miss by far more."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.models.videoretalking.networks import blocks as blocks_module
from talkingface.models.videoretalking.networks import dnet as dnet_module
from talkingface.models.videoretalking.networks.dnet import DNet

from fixture_tools import load_module, state_layout
from breaks import mutated
from numerics import REL64, assert_close64, assert_fp32_close, fp32_bound, max_abs_diff, scale_of

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
OFFICIAL_COMMIT = "d32e8e58248255e2d243eeaf3cba545dbe505ca8"  # OpenTalker/video-retalking, 2023-11-04
seeded = load_module(FIXTURES / "seeded_dnet.py", "videoretalking_seeded_dnet")
layout = load_module(HERE / "layout.py", "videoretalking_layout")
OUTPUTS = seeded.OUTPUTS


def test_state_dict_layout_equals_the_official_listing():
    with torch.device("meta"):  # shapes only
        net = DNet()
    assert state_layout(net) == layout.network_layout("DNet")  # keys, shapes, dtypes, in order
    assert len(net.state_dict()) == 304 and sum(p.numel() for p in net.parameters()) == 22_519_109
    sizes = {name: sum(p.numel() for p in getattr(net, name).parameters())
             for name in ("mapping_net", "warpping_net", "editing_net")}
    assert {name: round(size / 1e6, 2) for name, size in sizes.items()} == {
        "mapping_net": 0.72, "warpping_net": 12.71, "editing_net": 9.09}  # videoretalking.md §2.3


def test_spectral_norm_keeps_the_legacy_keys():
    net = DNet(**seeded.SMALL, use_spect=True)
    keys = net.state_dict().keys()
    assert {f"editing_net.decoder.jump0.model.0.weight_{k}" for k in ("orig", "u", "v")} <= keys
    assert "warpping_net.hourglass.encoder.encoder0.conv_0.weight_u" in keys
    assert "warpping_net.hourglass.encoder.input_layer.weight" in keys  # the release never wraps these
    assert "warpping_net.flow_out.2.weight" in keys


def test_shapes_and_the_warp_stage(small):
    x = seeded.seeded_inputs("small")  # batch 2, 64×96 (the full size is checked against the fixture below)
    with torch.no_grad():
        out = small(x["input_image"], x["driving"])
        warp_only = small(x["input_image"], x["driving"], stage="warp")
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "flow_field": (2, 2, 16, 24), "warp_image": (2, 3, 64, 96), "fake_image": (2, 3, 64, 96)}
    assert set(warp_only) == {"flow_field", "warp_image"}
    assert all(torch.equal(warp_only[k], out[k]) for k in warp_only)


def test_identity_grid_and_flow_conventions():
    flow = torch.zeros(1, 2, 3, 5, dtype=torch.float64)
    grid = dnet_module.identity_grid(flow)
    assert torch.equal(grid[0, 0, :, 0], torch.tensor([-1, -0.5, 0, 0.5, 1], dtype=torch.float64))  # x along columns
    assert torch.equal(grid[0, :, 0, 1], torch.tensor([-1, 0, 1], dtype=torch.float64))  # y along rows
    flow[:, 0] = 1.0  # one pixel to the right
    assert torch.allclose(dnet_module.flow_to_deformation(flow) - grid, torch.tensor([0.5, 0.0], dtype=torch.float64))
    image = torch.arange(15, dtype=torch.float64).reshape(1, 1, 3, 5)
    warped = dnet_module.warp_image(image, dnet_module.flow_to_deformation(flow))
    # align_corners=False on a corner-based grid: samples land between pixels, as in the release
    assert not torch.equal(warped, image)


def test_the_dead_branch_never_changes_the_output():
    net = seeded.seeded_dnet("small")
    x = seeded.seeded_inputs("small")
    with torch.no_grad():
        expected = net(x["input_image"], x["driving"])["fake_image"]
        for block in net.modules():
            if isinstance(block, blocks_module.FineADAINResBlock2d):
                block.skip_dead_branch = False
                for p in (*block.conv1.parameters(), *block.norm1.parameters()):
                    p.add_(1.0)
        assert torch.equal(net(x["input_image"], x["driving"])["fake_image"], expected)


# the code breaks: (owner, name, old, new, the outputs they change)
BREAKS = {
    "flow normalised by W, not W - 1": (dnet_module, "flow_to_deformation", "flow[:, :1] / (width - 1)",
                                        "flow[:, :1] / width", ("warp_image", "fake_image")),
    "driving window reversed in the mapping net": (dnet_module.MappingNet, "forward", "self.first(driving)",
                                                   "self.first(driving.flip(-1))", OUTPUTS),
    "ADAIN gamma and beta swapped": (blocks_module.ADAIN, "forward", "normalized * (1 + gamma) + beta",
                                     "normalized * (1 + beta) + gamma", OUTPUTS),
    "the residual block as PIRenderer meant it (conv2 after the first branch)": (
        blocks_module.FineADAINResBlock2d, "forward", "self.norm2(self.conv2(x), z)",
        "self.norm2(self.conv2(self.actvn(self.norm1(self.conv1(x), z))), z)", ("fake_image",)),
    "grid_sample with align_corners=True": (dnet_module, "warp_image", 'padding_mode="zeros", align_corners=False',
                                            'padding_mode="zeros", align_corners=True', ("warp_image", "fake_image")),
}


@pytest.fixture(scope="module")
def official() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "official_dnet.npz", allow_pickle=False) as data:
        return dict(data)


@pytest.fixture(scope="module")
def small():
    return seeded.seeded_dnet("small")


def run(net: DNet, case: str, dtype=torch.float32, stage=None) -> dict[str, np.ndarray]:
    x = {k: v.to(dtype) for k, v in seeded.seeded_inputs(case).items()}
    with torch.no_grad():
        out = net.to(dtype)(x["input_image"], x["driving"], stage=stage)
    return {k: v.numpy() for k, v in seeded.strided(case, out).items()}


def live_layers(module: torch.nn.Module):
    """Conv/linear layers of ``module`` that run (not the dead branch of ``FineADAINResBlock2d``)."""
    return [m for name, m in module.named_modules()
            if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))
            and not re.search(r"\.res\d+\.(conv1|norm1)\b", name)]


def fan_in(layer: torch.nn.Module) -> int:
    if isinstance(layer, torch.nn.Linear):
        return layer.in_features
    return layer.in_channels * int(np.prod(layer.kernel_size))  # a transposed convolution's upper bound too


def depth_and_terms(net: DNet, output: str) -> tuple[int, int]:
    """``depth``: the conv/linear layers ``output`` goes through (flow and warp: mapping and warping nets; the
    edited image: all three); ``terms``: their largest fan-in."""
    parts = [net.mapping_net, net.warpping_net] + ([net.editing_net] if output == "fake_image" else [])
    layers = [layer for part in parts for layer in live_layers(part)]
    return len(layers), max(fan_in(layer) for layer in layers)


def bounds(net: DNet, official: dict, case: str) -> dict[str, float]:
    return {name: fp32_bound(scale_of(official[f"{case}_{name}"]), depth_and_terms(net, name)[1],
                             depth_and_terms(net, name)[0]) for name in OUTPUTS}


def test_the_fixture_records_its_weights_and_commit(official, small):
    assert str(official["official_commit"]) == OFFICIAL_COMMIT
    assert seeded.weight_digest(small) == str(official["sha256_small"])
    assert int(official["seed"]) == seeded.SEED and str(official["sha256_full"])  # full: checked where it is built


@pytest.mark.numerics
def test_outputs_equal_the_official_code_in_float64(official, small):
    """The small configuration (every depth, kernel and skip as released, narrow widths; batch 2, 64×96) in
    float64: measured difference 0 for all three outputs (bound 1e-9 of each output's scale)."""
    out = run(copy.deepcopy(small), "small", torch.float64)
    for name in OUTPUTS:
        expected = official[f"small_{name}"]
        assert_close64(out[name], expected, name)
        assert np.std(expected) > 1e4 * REL64 * scale_of(expected)


@pytest.mark.numerics
def test_float32_is_within_float32_error_of_the_official_code(official, small, monkeypatch):
    """float32 as the model runs, against the official float64 outputs. Bound ``8 · depth · sqrt(terms) · eps32 ·
    scale`` per output; depth: the conv/linear layers the output goes through (flow and warped image: mapping and
    warping nets, 82; edited image: all three, 117; the dead branch not counted); terms: their largest fan-in (the
    7×7 ``flow_out`` convolution: 3136 small, 12544 full). Measured on an AVX-512 EPYC (native kernels):

    - small (64×96, batch 2): flow 5.9e-6 (bound 1.7e-2), warped 3.6e-5 (4.4e-3), edited 4.3e-5 (6.3e-3);
    - full ``DNet()`` (256×256, batch 1; 1.7 s on one thread): flow 1.0e-5 (4.8e-2), warped 4.5e-5 (8.6e-3),
      edited 1.0e-4 (1.3e-2).

    Break in the same test: ADAIN's gamma and beta swapped, the full network run to its warp stage: the flow
    misses its bound 104×, the warped image 209×.
    """
    measured = {}
    for name, value in run(copy.deepcopy(small), "small").items():
        measured[f"small {name}"] = assert_fp32_close(value, official[f"small_{name}"],
                                                      bounds(small, official, "small")[name], f"small {name}")
    full = seeded.seeded_dnet("full")
    assert seeded.weight_digest(full) == str(official["sha256_full"])
    full_bounds = bounds(full, official, "full")
    for name, value in run(full, "full").items():
        measured[f"full {name}"] = assert_fp32_close(value, official[f"full_{name}"], full_bounds[name], f"full {name}")
    owner, function, old, new, _ = BREAKS["ADAIN gamma and beta swapped"]
    mutated(monkeypatch, owner, function, old, new)
    broken = run(full, "full", stage="warp")
    misses = {name: max_abs_diff(broken[name], official[f"full_{name}"]) / full_bounds[name]
              for name in ("flow_field", "warp_image")}
    assert max(misses.values()) >= 100, (measured, misses)


@pytest.mark.parametrize("what", list(BREAKS))
def test_code_breaks_miss_the_official_output_by_far_more_than_the_float32_bound(official, small, monkeypatch,
                                                                                   what):
    """Each break changes the code under test (small configuration, float32) and must miss the float32 bound of an
    output it affects by at least 100×. Measured (miss / bound; flow, warped, edited image where affected): flow
    normalised by W: -, 210, 152; driving window reversed: 290, 405, 316; ADAIN gamma/beta swapped: 256, 410, 320;
    the intended residual block: -, -, 294; ``align_corners=True``: -, 270, 235."""
    owner, function, old, new, affected = BREAKS[what]
    mutated(monkeypatch, owner, function, old, new)
    out, limits = run(copy.deepcopy(small), "small"), bounds(small, official, "small")
    misses = {name: max_abs_diff(out[name], official[f"small_{name}"]) / limits[name] for name in affected}
    assert max(misses.values()) >= 100, misses
