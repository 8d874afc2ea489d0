"""Every registered model: one training step and one generate on tiny inputs.

New plugins are covered automatically; a model declares the dataset it trains on out of the box
with ``default_dataset``.
"""
from pathlib import Path

import pytest
import torch

import talkingface
from talkingface.data import ClipStore
from talkingface.dubbing import LOOP_STAGES
from talkingface.profiling import OUTSIDE, StageRecorder
from talkingface.media import VideoWriter, iter_frames, probe_video, read_audio
from talkingface.pipeline import preprocess
from talkingface.training import Trainer

from fixture_tools import load_module, state_layout

MODELS = talkingface.list_models()


def test_the_registry_is_not_empty():
    assert "example_inpainter" in MODELS


SMOKE_FRAMES = 16  # the dub's length: the whole 3 s test clip took 20 s of DINet's and 90 s of LawDNet's test


def first_frames(video: Path, audio_path: Path, frames: int, out: Path) -> Path:
    """The first ``frames`` frames of ``video`` with the same stretch of ``audio_path`` (a short dub for the smoke
    test)."""
    info = probe_video(video)
    audio = read_audio(audio_path)[: int(frames / info.fps * 16000)]
    with VideoWriter(out, info.fps, audio=audio) as writer:
        for _, frame in zip(range(frames), iter_frames(video)):
            writer.write(frame)
    return out


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
    source_video = first_frames(clip.video_path, clip.audio_path, SMOKE_FRAMES, tmp_path / "source.mp4")
    model.eval()
    with torch.no_grad(), StageRecorder() as recorder:
        out = model.generate(source_video, source_video, tmp_path / "out.mp4")
    hooks = model.dubbing_hooks()
    if hooks is not None:  # `talkingface benchmark` reports the loop's stages and the ones the hooks declare
        recorded = set(recorder.stats) - {OUTSIDE}
        assert recorded <= {*LOOP_STAGES, *hooks.stages}, f"undeclared stages: {recorded - {*LOOP_STAGES, *hooks.stages}}"
        assert {"decode", "face tracking", "generator", "encode"} <= recorded
        assert recorder.stats["generator"].calls >= 1
    info = probe_video(out)
    source = probe_video(source_video)
    assert info.has_audio
    assert (info.width, info.height) == (source.width, source.height)
    assert abs(info.frame_count - source.frame_count) <= 1


RELEASES = [(name, release) for name in MODELS for release in talkingface.MODELS.get(name).releases]


def test_declared_releases_exist():
    assert {(n, r.filename) for n, r in RELEASES} >= {("dinet", "clip_training_DINet_256mouth.pth"),
                                                       ("dinet", "syncnet_256mouth.pth")}


@pytest.mark.parametrize("name,release", RELEASES, ids=[f"{n}-{r.filename}" for n, r in RELEASES])
def test_each_declared_release_round_trips_through_release_example(name, release, tmp_path: Path):
    """A round trip through production code: ``release_example`` (the inverse of the model's converter) writes
    one model's weights as the release, and the file loads into another model through the one checkpoint route:
    the submodules it ``fills`` equal the first model's, every other one is untouched. The converter and its
    inverse agree; that the layout is the authors' is checked by the hand-built files below."""
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


def official_layout(name: str) -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """``{submodule: [(key, shape, dtype), ...]}`` of ``name``'s released networks, from the official key listing
    that ``tests/models/<name>/layout.py`` reads."""
    layout_file = Path(__file__).resolve().parent / "models" / name / "layout.py"
    assert layout_file.is_file(), f"a model with releases needs {layout_file} (official_layout())"
    return load_module(layout_file, f"{name}_layout").official_layout()


def _optimizer_state(count: int, weight_decay: float) -> dict:
    """An Adam / AdamW ``state_dict()`` as torch writes it for ``count`` parameters (no step taken)."""
    return {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": weight_decay,
                                           "amsgrad": False, "params": list(range(count))}]}


# How the authors' scripts save each declared release, written out from their code and the release notes
# (docs/dinet_networks.md, docs/lawdnet.md "Checkpoints"), not from release_example: (top-level entries besides
# ``state_dict``, ``{state_dict entry: our submodule}``, the key prefix).
_TRAINING_NETS = {"net_g": "networks.generator", "net_dI": "networks.frame_discriminator",
                  "net_dV": "networks.clip_discriminator"}
OFFICIAL_CONTAINERS = {
    # MRzzm/DINet train_DINet_clip.py: torch.save({'epoch': epoch + 1, 'state_dict': {'net_g', 'net_dI', 'net_dV'},
    # 'optimizer': {same keys: optim.Adam state}}) of nn.DataParallel networks (keys ``module.``)
    "clip_training_DINet_256mouth.pth": (lambda counts: {"epoch": 161, "optimizer": {
        entry: _optimizer_state(n, 0.0) for entry, n in counts.items()}}, _TRAINING_NETS, "module."),
    # read by DINet's SyncNetPerception: torch.load(path)['state_dict']['net'] into a plain SyncNet (no prefix)
    "syncnet_256mouth.pth": (lambda counts: {}, {"net": "networks.syncnet"}, ""),
    # LawDNet train_LawDNet_clip_distributed.py: the same under DDP (``module.``) with optim.AdamW, and (the
    # release, docs/lawdnet.md) the LambdaLR states by network
    "checkpoint_epoch_170.pth": (lambda counts: {
        "epoch": 171, "optimizer": {entry: _optimizer_state(n, 0.01) for entry, n in counts.items()},
        "scheduler": {entry: {"base_lrs": [1e-4], "last_epoch": 170, "_step_count": 171,
                              "_get_lr_called_within_step": False, "_last_lr": [1e-4], "lr_lambdas": [None]}
                      for entry in counts}}, _TRAINING_NETS, "module."),
}


def listed_tensor(index: int, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
    """The ``index``-th listed tensor's values: its position in the tensor plus ``index`` (distinct per key and
    per element, exact bytes on every CPU); BatchNorm counters 170."""
    if dtype != "float32":
        return torch.full(shape, 170, dtype=getattr(torch, dtype))
    count = int(torch.Size(shape).numel())
    return (torch.arange(count, dtype=torch.float64) * 1e-6 + index).float().reshape(shape)


def _listed(rows: list, prefix: str = "") -> dict:
    return {prefix + key: listed_tensor(i, shape, dtype) for i, (key, shape, dtype) in enumerate(rows)}


def _videoretalking_file(filename: str, layout: dict) -> tuple[dict, dict]:
    """OpenTalker/video-retalking's files as its loaders read them (models/__init__.py: ``torch.load(path)``,
    ``['state_dict']`` with DataParallel's ``module.`` stripped, ENet.pth's ``low_res.*`` copy of the L-Net dropped;
    DNet.pt ``['net_G_ema']`` from a PIRender-style trainer that also saves ``net_G`` and its optimizer)."""
    if filename == "DNet.pt":
        filled = {"dnet": _listed(layout["dnet"])}
        return {"net_G": _listed(layout["dnet"]), "net_G_ema": filled["dnet"], "epoch": 100}, filled
    if filename == "LNet.pth":
        filled = {"lnet": _listed(layout["lnet"])}
        return {"state_dict": {"module." + k: v for k, v in filled["lnet"].items()}}, filled
    filled = {"enet": _listed(layout["enet"])}
    low_res = {f"module.low_res.{k}": torch.zeros(shape, dtype=getattr(torch, dtype)) for k, shape, dtype in layout["lnet"]}
    return {"state_dict": {**{"module." + k: v for k, v in filled["enet"].items()}, **low_res}}, filled


AUDIODVP_FILES = {"atnet_lstm_18.pth": "audio_encoder", "delta_net.pth": "audio2expression",
                  "latest_net_G.pth": "renderer", "latest_net_D.pth": "discriminator"}


def _audiodvp_file(filename: str, layout: dict) -> tuple[dict, dict]:
    """xinwen-cs/AudioDVP's files as its code writes them, bare state dicts (``torch.save(net.cpu().state_dict())``:
    ``train_exp.py`` for delta_net.pth, neural-face-renderer's ``save_networks`` for ``{epoch}_net_G/D.pth``); and
    ATVGnet's atnet_lstm_18.pth, ``AT_net``'s whole state dict saved from ``nn.DataParallel`` (``module.`` on every
    key; the unused ``lmark_encoder``, ``lstm`` and ``lstm_fc`` included: 52 entries), of which the model keeps the
    encoder."""
    submodule = AUDIODVP_FILES[filename]
    if submodule != "audio_encoder":
        filled = {submodule: _listed(layout[submodule])}
        return dict(filled[submodule]), filled
    layout_file = Path(__file__).resolve().parent / "models" / "audiodvp" / "layout.py"
    whole = _listed(load_module(layout_file, "audiodvp_layout").network_layout("audio_encoder"))
    assert len(whole) == 52
    encoder = {k: v for k, v in whole.items() if k.startswith(("audio_eocder.", "audio_eocder_fc."))}
    return {"module." + k: v for k, v in whole.items()}, {"audio_encoder": encoder}


def _gsmoothface_taft_file(filename: str, layout: dict) -> tuple[dict, dict]:
    """GSmoothFace_TAFT's trainer checkpoint (``trainers/base.py: _save_checkpoint``): ``{net_G, net_G_ema, opt_G,
    sch_G, current_epoch, current_iteration}``, ``net_G`` from the DistributedDataParallel-wrapped generator
    (``module.``), ``net_G_ema`` bare; two different generators."""
    ema = _listed(layout["taft"])
    trained = {k: v + 0.5 for k, v in _listed(layout["taft_train"]).items()}
    contents = {"net_G": {"module." + k: v for k, v in trained.items()}, "net_G_ema": ema,
                "opt_G": _optimizer_state(len(trained), 0.0), "sch_G": {"step_size": 300000, "gamma": 0.2},
                "current_epoch": 200, "current_iteration": 300000}
    return contents, {"taft": ema, "taft_train": trained}


OFFICIAL_FILES = {**{name: _videoretalking_file for name in ("LNet.pth", "ENet.pth", "DNet.pt")},
                  **{name: _audiodvp_file for name in AUDIODVP_FILES}, "taft_checkpoint.pt": _gsmoothface_taft_file}


def hand_built_release(filename: str, layout: dict) -> tuple[dict, dict]:
    """``(file contents, {submodule: {key: tensor}})`` of ``filename`` built directly from the key listing:
    every listed key with its shape and dtype in the authors' container."""
    if filename in OFFICIAL_FILES:
        return OFFICIAL_FILES[filename](filename, layout)
    extra, entries, prefix = OFFICIAL_CONTAINERS[filename]
    filled = {}
    for entry, module in entries.items():
        filled[module] = {key: listed_tensor(i, shape, dtype) for i, (key, shape, dtype) in enumerate(layout[module])}
    counts = {entry: sum(1 for _, _, dtype in layout[module] if dtype == "float32")
              for entry, module in entries.items()}
    contents = {**extra(counts), "state_dict": {entry: {prefix + key: tensor for key, tensor in filled[module].items()}
                                                for entry, module in entries.items()}}
    return contents, filled


@pytest.mark.parametrize("name,release", RELEASES, ids=[f"{n}-{r.filename}" for n, r in RELEASES])
def test_each_declared_release_loads_a_hand_built_official_file(name, release, tmp_path: Path):
    """A file built by the test from the official key listing in the authors' container (no production code
    writes it) loads strictly into the model's released configuration: every submodule the release ``fills``
    holds exactly the file's tensors, every other one is untouched."""
    assert release.filename in {**OFFICIAL_CONTAINERS, **OFFICIAL_FILES}, f"write out how the authors save {release.filename}"
    layout = official_layout(name)
    contents, filled = hand_built_release(release.filename, layout)
    assert set(filled) == set(release.fills)
    path = tmp_path / release.filename
    torch.save(contents, path)
    model = talkingface.build_model(name)
    inside = lambda key: any(key.startswith(module + ".") for module in filled)  # noqa: E731
    before = {k: v.clone() for k, v in model.state_dict().items() if not inside(k)}
    initial = {module: model.get_submodule(module).state_dict() for module in filled}
    initial = {module: {k: v.clone() for k, v in tensors.items()} for module, tensors in initial.items()}
    assert model.load_checkpoint(path) is model
    state = model.state_dict()
    for module, tensors in filled.items():
        ours = {k[len(module) + 1:]: v for k, v in state.items() if k.startswith(module + ".")}
        assert ours.keys() == tensors.keys(), module
        for key, tensor in tensors.items():
            assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), (module, key)
        # not vacuous: the file's values are not the ones the model was built with
        assert sum(not torch.equal(initial[module][k], tensors[k]) for k in tensors) >= len(tensors) // 2, module
    assert before.keys() == {k for k in state if not inside(k)}
    assert all(torch.equal(state[k], v) for k, v in before.items())


@pytest.mark.parametrize("name,release", RELEASES, ids=[f"{n}-{r.filename}" for n, r in RELEASES])
def test_each_declared_release_fills_submodules_laid_out_as_the_official_listing(name, release):
    """Every submodule a release fills has, in the model's default (released) configuration, the state-dict
    layout of the official key listing that ``tests/models/<name>/layout.py`` reads."""
    official = official_layout(name)
    model = talkingface.build_model(name)
    for fill in release.fills:
        assert state_layout(model.get_submodule(fill)) == official[fill], fill
