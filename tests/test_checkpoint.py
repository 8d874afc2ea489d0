import collections
from pathlib import Path

import pytest
import torch

import talkingface
from talkingface.errors import CheckpointError
from talkingface.checkpoint import read_checkpoint, strip_prefix
from talkingface_example import ExampleInpainter

TINY = {"example_inpainter": {"channels": 8}}


def test_native_checkpoint_roundtrip(tmp_path: Path):
    a = talkingface.build_model("example", TINY)
    b = talkingface.build_model("example", TINY)
    path = a.save_weights(tmp_path / "w.pth")
    b.load_checkpoint(path)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])


def test_strict_mismatch_names_missing_unexpected_and_shapes(tmp_path: Path):
    model = talkingface.build_model("example", TINY)
    state = model.state_dict()
    state.pop("out.bias")
    state["extra.weight"] = torch.zeros(1)
    state["out.weight"] = torch.zeros(3, 9, 1, 1)
    payload = {"format": "talkingface", "version": 1, "model": "example_inpainter", "state_dict": state}
    torch.save(payload, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        model.load_checkpoint(tmp_path / "bad.pth")
    message = str(info.value)
    assert "missing keys (1): out.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "out.weight: checkpoint (3, 9, 1, 1) vs model (3, 8, 1, 1)" in message


def test_other_models_checkpoint_is_rejected(tmp_path: Path):
    model = talkingface.build_model("example", TINY)
    torch.save({"format": "talkingface", "model": "dinet", "state_dict": model.state_dict()}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="holds a 'dinet' checkpoint"):
        model.load_checkpoint(tmp_path / "x.pth")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_weights_only_refuses_pickled_code(tmp_path: Path, capsys):
    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="cannot be read as a weights-only checkpoint"):
        read_checkpoint(tmp_path / "evil.pth")
    assert "pwned" not in capsys.readouterr().out


def test_missing_and_truncated_files(tmp_path: Path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "none.pth")
    model = talkingface.build_model("example", TINY)
    path = model.save_weights(tmp_path / "w.pth")
    (tmp_path / "cut.pth").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.pth"):
        model.load_checkpoint(tmp_path / "cut.pth")


class OfficialLayoutInpainter(ExampleInpainter):
    """Pretends the authors released {'state_dict': {'net': {'module.<key>': ...}}}."""

    registered_name = "official_layout_test"

    def convert_official_checkpoint(self, checkpoint, source):
        if isinstance(checkpoint, dict) and "net" in checkpoint.get("state_dict", {}):
            return {"": strip_prefix(checkpoint["state_dict"]["net"], "module.")}
        return None


def test_official_release_goes_through_the_model_converter(tmp_path: Path):
    config = talkingface.load_config("example", config=TINY)
    source = OfficialLayoutInpainter(config)
    official = {"state_dict": {"net": collections.OrderedDict(
        (f"module.{k}", v) for k, v in source.state_dict().items())}, "epoch": 3}
    torch.save(official, tmp_path / "release.pth")
    target = OfficialLayoutInpainter(config)
    target.load_checkpoint(tmp_path / "release.pth")
    assert torch.equal(target.out.weight, source.out.weight)
    torch.save({"something": {}}, tmp_path / "unknown.pth")
    with pytest.raises(CheckpointError, match="neither a talkingface checkpoint nor an official"):
        target.load_checkpoint(tmp_path / "unknown.pth")


def test_safetensors_files_load(tmp_path: Path):
    safetensors = pytest.importorskip("safetensors.torch")
    model = talkingface.build_model("example", TINY)
    safetensors.save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = read_checkpoint(tmp_path / "w.safetensors")
    assert set(loaded) == set(model.state_dict())
