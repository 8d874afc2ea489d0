"""Every registered model: one training step and one generate on tiny inputs.

New plugins are covered automatically; a model declares the dataset it trains on out of the box
with ``default_dataset``.
"""
from pathlib import Path

import pytest
import torch

import talkingface
from talkingface.data import ClipStore
from talkingface.media import probe_video
from talkingface.pipeline import preprocess
from talkingface.training import Trainer

from fixture_tools import load_module, state_layout

MODELS = talkingface.list_models()


def test_the_registry_is_not_empty():
    assert "example_inpainter" in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_one_step_and_generates(name: str, tiny, tmp_path: Path):
    cls = talkingface.MODELS.get(name)
    if cls.default_dataset is None:
        pytest.fail(f"model {name!r} must set default_dataset so that it can be smoke-tested")
    overrides = tiny(example=name == "example_inpainter", train={"max_steps": 1, "batch_size": 2},
                     evaluate={"enabled": False}, plugins=["talkingface_example", "killer_plugin"])
    for section, values in cls.smoke_config.items():  # the model's own tiny sizes
        overrides[section] = {**overrides.get(section, {}), **values} if isinstance(values, dict) else values
    config = talkingface.load_config(name, cls.default_dataset, config=overrides)
    store: ClipStore = preprocess(cls.default_dataset, config)
    model = talkingface.build_model(name, config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = Trainer(model, config, tmp_path / "run").fit(model.build_dataset(store, "train"))
    assert result["step"] == 1
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "one optimizer step must change the weights"

    clip = store.split("test")[0]
    model.eval()
    with torch.no_grad():
        out = model.generate(clip.video_path, clip.audio_path, tmp_path / "out.mp4")
    info = probe_video(out)
    source = probe_video(clip.video_path)
    assert info.has_audio
    assert (info.width, info.height) == (source.width, source.height)
    assert abs(info.frame_count - source.frame_count) <= 1


RELEASES = [(name, release) for name in MODELS for release in talkingface.MODELS.get(name).releases]


def test_declared_releases_exist():
    assert {(n, r.filename) for n, r in RELEASES} >= {("dinet", "clip_training_DINet_256mouth.pth"),
                                                       ("dinet", "syncnet_256mouth.pth")}


@pytest.mark.parametrize("name,release", RELEASES, ids=[f"{n}-{r.filename}" for n, r in RELEASES])
def test_each_declared_release_loads_strictly_into_what_it_fills(name, release, tmp_path: Path):
    """A file in the release's official layout, made from one model's weights, loads into another model through
    the one checkpoint route: the submodules it ``fills`` equal the first model's, every other one is untouched."""
    cls = talkingface.MODELS.get(name)
    config = talkingface.load_config(name, cls.default_dataset, config=cls.smoke_config)
    torch.manual_seed(0)
    source = talkingface.build_model(name, config)
    torch.manual_seed(1)
    target = talkingface.build_model(name, config)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    assert release.fills and all(target.get_submodule(fill) is not None for fill in release.fills)
    path = tmp_path / release.filename
    torch.save(source.release_example(release), path)
    assert target.load_checkpoint(path) is target
    for key, value in target.state_dict().items():
        filled = any(key.startswith(fill + ".") for fill in release.fills)
        expected = source.state_dict()[key] if filled else before[key]
        assert torch.equal(value, expected), (key, "filled" if filled else "untouched")
    assert any(not torch.equal(before[k], v) for k, v in target.state_dict().items())


@pytest.mark.parametrize("name,release", RELEASES, ids=[f"{n}-{r.filename}" for n, r in RELEASES])
def test_each_declared_release_fills_submodules_laid_out_as_the_official_listing(name, release):
    """Every submodule a release fills has, in the model's default (released) configuration, the state-dict
    layout of the official key listing that ``tests/models/<name>/layout.py`` reads."""
    layout_file = Path(__file__).resolve().parent / "models" / name / "layout.py"
    assert layout_file.is_file(), f"a model with releases needs {layout_file} (official_layout())"
    official = load_module(layout_file, f"{name}_layout").official_layout()
    model = talkingface.build_model(name)
    for fill in release.fills:
        assert state_layout(model.get_submodule(fill)) == official[fill], fill
