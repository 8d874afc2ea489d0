"""AudioDVP's weight files: recognised by content, converted to our submodules, written back by ``release_example``
(the inverse) in the authors' layouts, and damaged files rejected with an error naming the file."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from talkingface.errors import CheckpointError
from talkingface.models.audiodvp.networks import (ATNetEncoder, AudioExpression, NLayerDiscriminator, UnetGenerator,
                                                  convert_release, release_example, release_kind)

from fixture_tools import load_module

HERE = Path(__file__).resolve().parent
layout = load_module(HERE / "layout.py", "audiodvp_layout")
KINDS = ("audio_encoder", "audio2expression", "renderer", "discriminator")


@pytest.fixture(scope="module")
def small() -> dict[str, nn.Module]:
    """One network per file kind (the AT-net at its only size, the renderer's at small sizes), random weights, the
    BatchNorm counters set to 7 (so that a filled-in zero shows)."""
    with torch.random.fork_rng():  # seeded weights; the session's RNG left as it was
        torch.manual_seed(0)
        nets = {"audio_encoder": ATNetEncoder(), "audio2expression": AudioExpression(),
                "renderer": UnetGenerator(num_downs=5, ngf=4), "discriminator": NLayerDiscriminator(24, 4, 3)}
        for net in nets.values():
            for module in net.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.num_batches_tracked.fill_(7)
                    module.running_mean.normal_()
        return nets


def assert_state_equal(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    assert all(actual[k].dtype == v.dtype and torch.equal(actual[k], v) for k, v in expected.items())


def test_release_examples_have_the_official_layouts():
    """``release_example`` at the release's configurations writes the official files' keys, shapes and dtypes in
    order: ``AT_net``'s 52 entries (the unused landmark encoder, LSTM and head included) behind DataParallel's
    ``module.``, the others bare."""
    with torch.device("meta"):
        nets = {"audio_encoder": ATNetEncoder(), "audio2expression": AudioExpression(),
                "renderer": UnetGenerator(), "discriminator": NLayerDiscriminator()}
    for kind, net in nets.items():
        example = release_example(kind, net)
        rows = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in example.items()]
        if kind == "audio_encoder":
            assert all(k.startswith("module.") for k, _, _ in rows)
            rows = [(k[len("module."):], s, d) for k, s, d in rows]
        assert rows == layout.network_layout(kind), kind
        assert release_kind(example) == kind
    assert len(layout.network_layout("audio_encoder")) == 52


@pytest.mark.parametrize("kind", KINDS)
def test_convert_inverts_release_example(small, kind):
    """file contents -> ``{kind: state}`` equal to the network's state dict, in order (the AT-net's unused modules
    dropped); it loads strictly into a fresh network."""
    net = small[kind]
    converted = convert_release(release_example(kind, net), f"{kind}.pth")
    assert list(converted) == [kind]
    assert_state_equal(converted[kind], net.state_dict())
    copy.deepcopy(net).load_state_dict(converted[kind], strict=True)


def test_small_files_round_trip_through_torch_save(small, tmp_path: Path):
    """The contents as ``torch.load(weights_only=True)`` returns them from disk (an ``OrderedDict`` with
    ``_metadata``) convert alike."""
    for kind in ("audio2expression", "renderer", "discriminator"):
        path = tmp_path / f"{kind}.pth"
        torch.save(release_example(kind, small[kind]), path)
        contents = torch.load(path, weights_only=True)
        assert release_kind(contents) == kind
        assert_state_equal(convert_release(contents, str(path))[kind], small[kind].state_dict())


def test_the_atnet_file_without_counters_or_prefix_converts(small):
    """A pre-0.4.1 file without ``num_batches_tracked`` gets zero counters where they belong (what loading it into a
    fresh ``AT_net`` leaves), not the network's 7; a file saved without DataParallel (no ``module.``) is the same
    release; the unused modules are ignored."""
    net = small["audio_encoder"]
    example = release_example("audio_encoder", net)
    assert sum(k.startswith(("module.lmark_encoder.", "module.lstm.", "module.lstm_fc.")) for k in example) == 18
    old = {k: v for k, v in example.items() if not k.endswith("num_batches_tracked")}
    assert len(old) == 52 - 5
    converted = convert_release(old, "atnet_lstm_18.pth")["audio_encoder"]
    expected = {k: torch.tensor(0) if k.endswith("num_batches_tracked") else v for k, v in net.state_dict().items()}
    assert_state_equal(converted, expected)
    bare = {k[len("module."):]: v for k, v in example.items()}
    assert release_kind(bare) == "audio_encoder"
    assert_state_equal(convert_release(bare, "x")["audio_encoder"], net.state_dict())


def test_kinds_are_told_apart_by_content_and_others_are_not_recognised(small):
    """The generator's and the discriminator's files differ only in their keys' layout (``model.model.N`` vs
    ``model.N``); anything else is None, and ``convert_release`` names the file it rejects."""
    examples = {kind: release_example(kind, net) for kind, net in small.items()}
    assert {kind: release_kind(example) for kind, example in examples.items()} == {k: k for k in KINDS}
    tensor = torch.zeros(2)
    others = [{}, [], tensor, {"state_dict": examples["audio2expression"]}, {1: tensor},
              {"conv1.weight": tensor, "extra.weight": tensor}, {"lmark_encoder.0.weight": tensor},
              {"format": "talkingface", "state_dict": {}}, {"net_G_ema": {}}, {"model.weight": tensor}]
    for other in others:
        assert release_kind(other) is None, other
    with pytest.raises(CheckpointError, match=re.escape("some/where.pth") + " is not one of AudioDVP"):
        convert_release({"conv1.weight": tensor, "extra.weight": tensor}, "some/where.pth")


def test_damaged_files_raise_a_checkpoint_error_naming_the_file(small):
    """A recognised file with an entry that is not a tensor, a stray or missing key, or keys twice (with and without
    ``module.``) raises CheckpointError naming ``source``."""
    examples = {kind: dict(release_example(kind, net)) for kind, net in small.items()}
    atnet = examples["audio_encoder"]
    damaged = {
        "not a tensor": {**atnet, "module.audio_eocder.0.0.weight": [1.0]},
        "stray key": {**atnet, "module.audio_decoder.0.weight": torch.zeros(1)},
        "stray encoder key": {**atnet, "module.audio_eocder.9.weight": torch.zeros(1)},
        "missing key": {k: v for k, v in atnet.items() if k != "module.audio_eocder_fc.2.bias"},
        "twice": {**atnet, "audio_eocder.0.0.weight": torch.zeros(1)},
        "delta without fc.bias": {k: v for k, v in examples["audio2expression"].items() if k != "fc.bias"},
        "delta with one conv": {"conv1.weight": torch.zeros(5, 7, 3)},
        "generator with a discriminator key": {**examples["renderer"], "model.0.weight": torch.zeros(1)},
        "generator without its first convolution": {k: v for k, v in examples["renderer"].items()
                                                    if k != "model.model.0.weight"},
        "discriminator with a stray key": {**examples["discriminator"], "head.weight": torch.zeros(1)},
    }
    for what, contents in damaged.items():
        assert release_kind(contents) is not None, what
        with pytest.raises(CheckpointError, match=re.escape("/tmp/damaged.pth")):
            convert_release(contents, "/tmp/damaged.pth")


def test_release_example_rejects_an_unknown_kind(small):
    with pytest.raises(KeyError, match="delta_net"):
        release_example("delta_net", small["audio2expression"])
