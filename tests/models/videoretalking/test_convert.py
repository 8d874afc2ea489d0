"""VideoReTalking's released files recognised by content and selected as the official loader selects
(talkingface.models.videoretalking.networks.convert), on hand-built files in the releases' layouts
(``layout.py``: the official key listing): ``LNet.pth`` with DataParallel's ``module.`` prefix, ``ENet.pth`` with its
``low_res.*`` copy of an L-Net (dropped: the inner L-Net comes from LNet.pth), ``DNet.pt`` with ``net_G``,
``net_G_ema`` and optimiser entries (``net_G_ema`` taken). Each converted state dict loads strictly into our network
(on the meta device) and every tensor lands under its own key; a file named after another release, a DINet file and
an ``ENet.pth`` whose keys were renamed are refused or named."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from fixture_tools import load_module
from talkingface.checkpoint import load_state_dict_strict
from talkingface.errors import CheckpointError
from talkingface.models.videoretalking.networks import DNet, ENet, LNet
from talkingface.models.videoretalking.networks.convert import convert_release, release_kind

layout = load_module(Path(__file__).resolve().parent / "layout.py", "videoretalking_layout_convert")


def official_state(name: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The listing's tensors, each filled with its row number (so a key that lands elsewhere shows)."""
    state = {}
    for row, (key, shape, dtype) in enumerate(layout.network_layout(name)):
        state[prefix + key] = torch.full(shape, row, dtype=getattr(torch, dtype))
    return state


def release(kind: str) -> dict:
    if kind == "lnet":
        return {"state_dict": official_state("LNet", "module."), "global_step": 1}
    if kind == "enet":
        return {"state_dict": official_state("ENet", "module."), "global_step": 1}
    return {"net_G": official_state("DNet"), "net_G_ema": official_state("DNet"), "opt_G": {}}


NETWORKS = {"lnet": (LNet, "LNet"), "enet": (ENet, "ENet"), "dnet": (DNet, "DNet")}


@pytest.mark.parametrize("kind", ["lnet", "enet", "dnet"])
def test_each_release_is_recognised_and_loads_strictly(kind):
    checkpoint = release(kind)
    assert release_kind(checkpoint) == kind
    (converted_kind, state), = convert_release(checkpoint, f"{kind}.file").items()
    assert converted_kind == kind
    network_class, listing = NETWORKS[kind]
    with torch.device("meta"):
        net = network_class()
    expected_keys = [k for k, *_ in layout.network_layout(listing) if not k.startswith("low_res.")]
    assert list(state) == expected_keys  # official order, low_res dropped, module. removed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loading into meta tensors only checks keys and shapes
        load_state_dict_strict(net, state, f"{kind}.file")
    rows = {key: row for row, (key, *_) in enumerate(layout.network_layout(listing))}
    for key, tensor in state.items():
        assert float(tensor.reshape(-1)[0]) == rows[key], key


def test_other_files_are_refused_with_their_name():
    dinet = {"state_dict": {"net_g": {"conv.weight": torch.zeros(1)}}}
    assert release_kind(dinet) is None
    with pytest.raises(CheckpointError, match="clip_training_DINet_256mouth.pth is not one of VideoReTalking"):
        convert_release(dinet, "clip_training_DINet_256mouth.pth")
    assert release_kind({"net_G_ema": {"conv.weight": torch.zeros(1)}}) is None
    assert release_kind(torch.zeros(3)) is None
    renamed = release("enet")
    renamed["state_dict"] = {k.replace("style_convs", "styleconvs"): v for k, v in renamed["state_dict"].items()}
    (kind, state), = convert_release(renamed, "ENet.pth").items()  # still an E-Net file (conv_body_first etc.) ...
    with torch.device("meta"):
        net = ENet()
    with warnings.catch_warnings(), pytest.raises(CheckpointError, match=r"ENet.pth.*style_convs"):
        warnings.simplefilter("ignore")
        load_state_dict_strict(net, state, "ENet.pth")  # ... whose renamed keys are named
