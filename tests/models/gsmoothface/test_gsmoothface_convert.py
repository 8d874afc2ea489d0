"""GSmoothFace's releases loaded through ``talkingface.build_model("gsmoothface", ...).load_checkpoint`` at the small
seeded size (``fixtures/seeded_a2ep.py``): the A2EP PyTorch Lightning 1.5.10 ``.ckpt`` (both weight-norm spellings of
wav2vec 2.0's positional convolution, an unpicklable ``hyper_parameters`` object never resolved), wav2vec2-base-960h's
``Wav2Vec2ForCTC`` file (``.safetensors`` and ``.bin``), the TAFT trainer ``.pt`` (``net_G_ema`` / ``net_G``) and
``wav2vec2_fallback``. Every file is written here with ``torch.save`` / safetensors as the authors' code (or the hub)
writes it, not by the plugin's ``release_example``; loading is checked with ``torch.equal`` per tensor
(docs/testing.md, rule 1). 3dmm_methods.md §2.1, §2.2, §8."""
from __future__ import annotations

import copy
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

import talkingface
from talkingface.checkpoint import OpaqueObject, read_release
from talkingface.errors import CheckpointError
from talkingface.models.gsmoothface.releases import WAV2VEC2_BASE_960H

from fixture_tools import load_module
from numerics import state_digest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
seeded = load_module(FIXTURES / "seeded_a2ep.py", "gsmoothface_seeded_a2ep")

TAFT = {"image_size": 32, "base_nc": 4, "max_nc": 8, "descriptor_nc": 8, "layers": 2, "num_res_blocks": 1}
POS = "encoder.pos_conv_embed.conv."
NEW = ("parametrizations.weight.original0", "parametrizations.weight.original1")  # current transformers
OLD = ("weight_g", "weight_v")  # transformers 4.17, the release's
FAKE_OMEGACONF = "gsmoothface_test_fake_omegaconf"  # a module that exists only while the .ckpt is written


def config(tmp_path: Path, encoder: str = "wav2vec2", **a2ep) -> dict:
    """A small GSmoothFace: the seeded wav2vec 2.0 architecture, feature_dim 32, TAFT at 32 px; no wav2vec 2.0
    weights on disk unless ``a2ep`` says otherwise (the default path under checkpoints/ is never read)."""
    a = {"audio_encoder": encoder, "wav2vec2": dict(seeded.WAV2VEC2), "feature_dim": seeded.HEAD["feature_dim"],
         "wav2vec2_weights": str(tmp_path / "absent-wav2vec2.safetensors"), "wav2vec2_fallback": "random"}
    if encoder == "feature":
        a["audio_feature"] = "mfcc"
    a.update(a2ep)
    return {"gsmoothface": {"a2ep": a, "taft": dict(TAFT)}}


def build(tmp_path: Path, encoder: str = "wav2vec2", taft: dict | None = None, **a2ep):
    cfg = config(tmp_path, encoder, **a2ep)
    cfg["gsmoothface"]["taft"].update(taft or {})
    return talkingface.build_model("gsmoothface", cfg)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One small model with a wav2vec 2.0 encoder (random: no weights on disk)."""
    return build(tmp_path_factory.mktemp("built"))


@pytest.fixture
def model(built):
    """A fresh copy of ``built`` per test (a deep copy costs a tenth of a build)."""
    return copy.deepcopy(built)


@pytest.fixture(scope="module")
def a2ep_state() -> dict[str, torch.Tensor]:
    """The seeded A2EP's state dict (current transformers' spelling, as our module has it)."""
    return {k: v.detach().clone() for k, v in seeded.seeded_a2ep().state_dict().items()}


def old_spelling(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``state`` with the positional conv's weight norm renamed to transformers 4.17's ``weight_g``/``weight_v``
    (written out here, not through the plugin's renaming)."""
    renamed = {}
    for key, value in state.items():
        for new, old in zip(NEW, OLD):
            if key == prefix + POS + new:
                key = prefix + POS + old
        renamed[key] = value
    assert sum(k.startswith(prefix + POS + "weight_") for k in renamed) == 2
    return renamed


def rest_of(model, skip: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}


def assert_filled(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    assert set(state) == set(expected)
    unequal = [k for k in state if not torch.equal(state[k], expected[k])]
    assert not unequal, unequal[:5]


# ---- A2EP: the Lightning .ckpt -------------------------------------------------------------------------------------
def fake_omegaconf() -> types.ModuleType:
    """A stand-in for ``omegaconf`` (not installed here): ``DictConfig`` pickles as OmegaConf's does (``__getstate__``:
    a metadata object, nodes, references to ``typing.Any`` and ``dict``), from a module that exists only while the
    test writes the file."""
    module = types.ModuleType(FAKE_OMEGACONF)

    class ContainerMetadata:
        def __init__(self):
            self.ref_type, self.object_type, self.key_type, self.optional, self.flags = Any, dict, Any, True, {}

    class AnyNode:
        def __init__(self, value):
            self._val, self._metadata = value, ContainerMetadata()

    class DictConfig:
        def __init__(self, content: dict):
            self._metadata, self._parent = ContainerMetadata(), None
            self._content = {k: DictConfig(v) if isinstance(v, dict) else AnyNode(v) for k, v in content.items()}

        def __getstate__(self):
            return {"_metadata": self._metadata, "_parent": self._parent, "_content": self._content}

        def __setstate__(self, state):  # pragma: no cover - must never run: the module is gone when the file is read
            raise AssertionError("hyper_parameters were unpickled for real")

    for cls in (ContainerMetadata, AnyNode, DictConfig):
        cls.__module__, cls.__qualname__ = FAKE_OMEGACONF, cls.__name__
        setattr(module, cls.__name__, cls)
    return module


def lightning_ckpt(path: Path, state: dict[str, torch.Tensor], spelling: str, hparams: str = "kwargs",
                   foreign: dict[str, torch.Tensor] | None = None) -> Path:
    """``path`` as PyTorch Lightning 1.5.10 saves ``Face3DMMOneHotFormerModule``: ``model.``-prefixed weights, Adam's
    and StepLR's states, callbacks, loops, and the config as a ``DictConfig`` whose class cannot be imported when the
    file is read. ``hparams``: ``kwargs``, what the module's ``save_hyperparameters()`` gives (``{"config":
    DictConfig}`` and ``hparams_name``), or ``bare`` (the ``DictConfig`` itself, as ``save_hyperparameters(config)``
    would store it). ``foreign``: state_dict entries outside ``model.``."""
    module = fake_omegaconf()
    config_object = module.DictConfig({"Face3DMMFormer": {"feature_dim": 1024, "period": 25, "num_speakers": 8},
                                       "lr": 1e-4, "wd": 0.0})
    weights = old_spelling(state, "audio_encoder.") if spelling == "old" else dict(state)
    first = next(iter(weights.values()))
    payload = {
        "epoch": 19, "global_step": 10399, "pytorch-lightning_version": "1.5.10",
        "state_dict": OrderedDict([*(("model." + k, v) for k, v in weights.items()), *(foreign or {}).items()]),
        "callbacks": {"ModelCheckpoint": {"monitor": "val/total_loss", "best_model_score": torch.tensor(0.01),
                                          "best_model_path": "epoch=19-step=10399.ckpt"}},
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 20, "completed": 19}}}},
        "optimizer_states": [{"state": {0: {"step": 10400, "exp_avg": torch.zeros_like(first),
                                            "exp_avg_sq": torch.zeros_like(first)}},
                              "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0,
                                                "amsgrad": False, "params": [0]}]}],
        "lr_schedulers": [{"step_size": 20, "gamma": 0.8, "base_lrs": [1e-4], "last_epoch": 20, "_step_count": 21,
                           "verbose": False, "_get_lr_called_within_step": False, "_last_lr": [1e-4]}],
    }
    if hparams == "kwargs":
        payload.update({"hparams_name": "kwargs", "hyper_parameters": {"config": config_object}})
    else:
        payload["hyper_parameters"] = config_object
    sys.modules[FAKE_OMEGACONF] = module
    try:
        torch.save(payload, path)
    finally:
        del sys.modules[FAKE_OMEGACONF]
    return path


@pytest.mark.parametrize("spelling,hparams", [("old", "kwargs"), ("new", "bare")])
def test_a2ep_lightning_ckpt_fills_a2ep_only(tmp_path, model, a2ep_state, spelling, hparams):
    path = lightning_ckpt(tmp_path / "epoch=19-step=10399.ckpt", a2ep_state, spelling, hparams)
    # the stand-in class is really gone: unpickling hyper_parameters for real fails
    with pytest.raises((ModuleNotFoundError, AttributeError)):
        torch.load(path, weights_only=False)
    read = read_release(path)["hyper_parameters"]
    assert isinstance(read["config"] if hparams == "kwargs" else read, OpaqueObject)  # inert, no code run

    before = rest_of(model, "a2ep.")
    assert state_digest(model.a2ep.state_dict()) != state_digest(a2ep_state)  # the load has something to do
    model.load_checkpoint(path)
    assert_filled(model.a2ep, a2ep_state)
    after = rest_of(model, "a2ep.")  # taft, taft_train and the buffers are untouched
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert any(k.startswith("taft.") for k in before) and any(k.startswith("taft_train.") for k in before)


def test_a2ep_ckpt_foreign_or_missing_key_is_refused(tmp_path, model, a2ep_state):
    foreign = lightning_ckpt(tmp_path / "foreign.ckpt", a2ep_state, "old", foreign={"criterion.weight": torch.ones(3)})
    with pytest.raises(CheckpointError, match="criterion.weight") as error:
        model.load_checkpoint(foreign)
    assert str(foreign) in str(error.value) and "'model.'" in str(error.value)

    missing = lightning_ckpt(tmp_path / "missing.ckpt", {k: v for k, v in a2ep_state.items()
                                                          if k != "vertice_map.bias"}, "new")
    with pytest.raises(CheckpointError, match="vertice_map.bias") as error:
        model.load_checkpoint(missing)
    assert str(missing) in str(error.value) and "missing" in str(error.value)


# ---- wav2vec2-base-960h ----------------------------------------------------------------------------------------------
def ctc_state(encoder: dict[str, torch.Tensor], spelling: str) -> dict[str, torch.Tensor]:
    """``Wav2Vec2ForCTC``'s flat state dict: the encoder under ``wav2vec2.``, plus the CTC head (32 letters)."""
    state = old_spelling(encoder, "") if spelling == "old" else dict(encoder)
    hidden = seeded.WAV2VEC2["hidden_size"]
    g = torch.Generator().manual_seed(7)
    return {**{"wav2vec2." + k: v.clone().contiguous() for k, v in state.items()},
            "lm_head.weight": torch.randn(32, hidden, generator=g, dtype=torch.float64).float(),
            "lm_head.bias": torch.zeros(32)}


def encoder_of(a2ep_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("audio_encoder."):]: v for k, v in a2ep_state.items() if k.startswith("audio_encoder.")}


@pytest.mark.parametrize("suffix,spelling", [(".safetensors", "old"), (".bin", "new")])
def test_wav2vec2_base_960h_fills_the_audio_encoder_only(tmp_path, model, a2ep_state, suffix, spelling):
    from safetensors.torch import save_file

    encoder = encoder_of(a2ep_state)
    path = tmp_path / f"wav2vec2-base-960h{suffix}"
    state = ctc_state(encoder, spelling)
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    before = rest_of(model, "a2ep.audio_encoder.")
    model.load_checkpoint(path)
    assert_filled(model.a2ep.audio_encoder, encoder)
    after = rest_of(model, "a2ep.audio_encoder.")  # the head, taft and taft_train are untouched
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_wav2vec2_weights_refused_without_a_wav2vec2_encoder(tmp_path, a2ep_state):
    path = tmp_path / "wav2vec2-base-960h.bin"
    torch.save(ctc_state(encoder_of(a2ep_state), "old"), path)
    feature_model = build(tmp_path, encoder="feature")
    assert feature_model.a2ep.audio_encoder is None
    with pytest.raises(CheckpointError, match="no wav2vec 2.0 encoder") as error:
        feature_model.load_checkpoint(path)
    assert str(path) in str(error.value) and "audio_encoder is not wav2vec2" in str(error.value)


def test_wav2vec2_fallback_error_and_weights_at_the_configured_path(tmp_path, a2ep_state):
    from safetensors.torch import save_file

    path = tmp_path / "w2v" / "wav2vec2-base-960h.safetensors"
    with pytest.raises(CheckpointError) as error:
        build(tmp_path, wav2vec2_weights=str(path), wav2vec2_fallback="error")
    assert str(path) in str(error.value) and WAV2VEC2_BASE_960H.source in str(error.value)

    encoder = encoder_of(a2ep_state)
    path.parent.mkdir()
    save_file(ctc_state(encoder, "old"), str(path))
    model = build(tmp_path, wav2vec2_weights=str(path), wav2vec2_fallback="error")
    assert_filled(model.a2ep.audio_encoder, encoder)


# ---- TAFT .pt --------------------------------------------------------------------------------------------------------
def seeded_generator_state(model, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g, dtype=torch.float64) * 0.1).to(v.dtype)
            for k, v in model.taft.state_dict().items()}


def taft_pt(path: Path, net_g: dict | None, net_g_ema: dict | None) -> Path:
    """GSmoothFace_TAFT's ``epoch_XXXXX_iteration_XXXXXXXXX_checkpoint.pt``; ``net_G`` under DDP's ``module.``."""
    payload = {"opt_G": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.999), "params": []}]},
               "sch_G": {"step_size": 300000, "gamma": 0.2, "last_epoch": 300000}, "current_epoch": 200,
               "current_iteration": 300000}
    if net_g is not None:
        payload["net_G"] = {"module." + k: v for k, v in net_g.items()}
    if net_g_ema is not None:
        payload["net_G_ema"] = net_g_ema
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("weights", [None, "net_G"])
def test_taft_pt_fills_taft_from_the_chosen_entry(tmp_path, model, weights):
    if weights:  # built with the option (the copy of ``built`` has the default, net_G_ema)
        model = build(tmp_path, taft={"weights": weights})
    net_g, ema = seeded_generator_state(model, 1), seeded_generator_state(model, 2)
    path = taft_pt(tmp_path / "epoch_00200_iteration_000300000_checkpoint.pt", net_g, ema)
    before = rest_of(model, "taft")
    model.load_checkpoint(path)
    assert_filled(model.taft, net_g if weights == "net_G" else ema)
    assert_filled(model.taft_train, net_g)
    after = rest_of(model, "taft")
    assert all(torch.equal(after[k], before[k]) for k in before)  # a2ep untouched
    if weights == "net_G":  # asked for net_G, a file holding only net_G_ema is refused
        only_ema = taft_pt(tmp_path / "only_net_G_ema.pt", None, ema)
        with pytest.raises(CheckpointError, match="without 'net_G'") as error:
            model.load_checkpoint(only_ema)
        assert str(only_ema) in str(error.value)


def test_taft_pt_without_the_chosen_entry_is_refused(tmp_path, model):
    path = taft_pt(tmp_path / "only_net_G.pt", seeded_generator_state(model, 1), None)
    with pytest.raises(CheckpointError, match="'net_G_ema'") as error:
        model.load_checkpoint(path)
    assert str(path) in str(error.value)
