"""DeepSpeech2 (deepspeech.pytorch v3) features for LawDNet: the checkpoint's layout, a forward equal to a
literal float64 transcription of the release's ``DeepSpeech.forward`` (length masks, packed sequences), the
spectrogram front end, the length rule, and reading Lightning checkpoints without running their pickles."""
from __future__ import annotations

import copy
import os
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from talkingface.audio.deepspeech2 import (LABELS, DeepSpeech2Net, DeepSpeech2Sizes, deepspeech2_scores,
                                           read_deepspeech2, spectrogram)
from talkingface.errors import CheckpointError
from talkingface.registry import AUDIO_FEATURES

from numerics import assert_close64, max_abs_diff, seeded_fill_, seeded_uniform

TINY = DeepSpeech2Sizes(hidden=16, layers=3, conv_channels=4)


def expected_layout(sizes: DeepSpeech2Sizes) -> list[tuple[str, tuple[int, ...]]]:
    """The release's state dict, written out from deepspeech.pytorch's ``model.py``."""
    c, h = sizes.conv_channels, sizes.hidden
    bn = lambda prefix, n: [(f"{prefix}.weight", (n,)), (f"{prefix}.bias", (n,)), (f"{prefix}.running_mean", (n,)),  # noqa: E731
                            (f"{prefix}.running_var", (n,)), (f"{prefix}.num_batches_tracked", ())]
    keys = [("conv.seq_module.0.weight", (c, 1, 41, 11)), ("conv.seq_module.0.bias", (c,)), *bn("conv.seq_module.1", c),
            ("conv.seq_module.3.weight", (c, c, 21, 11)), ("conv.seq_module.3.bias", (c,)), *bn("conv.seq_module.4", c)]
    for i in range(sizes.layers):
        width = sizes.rnn_input if i == 0 else h
        if i:
            keys += bn(f"rnns.{i}.batch_norm.module", h)
        for suffix in ("", "_reverse"):
            keys += [(f"rnns.{i}.rnn.weight_ih_l0{suffix}", (4 * h, width)), (f"rnns.{i}.rnn.weight_hh_l0{suffix}", (4 * h, h)),
                     (f"rnns.{i}.rnn.bias_ih_l0{suffix}", (4 * h,)), (f"rnns.{i}.rnn.bias_hh_l0{suffix}", (4 * h,))]
    return keys + bn("fc.0.module.0", h) + [("fc.0.module.1.weight", (sizes.classes, h))]


def test_layout_of_the_release():
    sizes = DeepSpeech2Sizes()
    assert sizes.rnn_input == 1312 and len(LABELS) == 29 and LABELS[0] == "_"
    with torch.device("meta"):
        net = DeepSpeech2Net(sizes)
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == expected_layout(sizes)
    assert DeepSpeech2Net.sizes_of(net.state_dict()) == sizes
    assert DeepSpeech2Net.sizes_of(DeepSpeech2Net(TINY).state_dict()) == TINY


def seeded_network(sizes: DeepSpeech2Sizes = TINY, seed: int = 3) -> DeepSpeech2Net:
    net = DeepSpeech2Net(sizes)
    g = torch.Generator().manual_seed(seed)
    seeded_fill_(net, g)
    with torch.no_grad():  # BatchNorm statistics that really normalise
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(seeded_uniform(module.running_mean.shape, g) - 0.5)
                module.running_var.copy_(seeded_uniform(module.running_var.shape, g) + 0.5)
    return net.eval()


def literal_release_forward(net: DeepSpeech2Net, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """deepspeech.pytorch's ``DeepSpeech.forward`` written out with its modules' own steps: the per-layer
    length masks of ``MaskConv``, ``pack_padded_sequence`` in ``BatchRNN``, directions summed."""
    conv = list(net.conv.seq_module)
    output_lengths = lengths
    for m in conv:
        if isinstance(m, nn.Conv2d):
            output_lengths = (output_lengths + 2 * m.padding[1] - m.dilation[1] * (m.kernel_size[1] - 1) - 1) \
                // m.stride[1] + 1
    for m in conv:
        x = m(x)
        mask = torch.zeros(x.shape, dtype=torch.bool)
        for i, length in enumerate(output_lengths.tolist()):
            if x.shape[3] - length > 0:
                mask[i].narrow(2, length, x.shape[3] - length).fill_(True)
        x = x.masked_fill(mask, 0)
    sizes = x.size()
    x = x.view(sizes[0], sizes[1] * sizes[2], sizes[3]).transpose(1, 2).transpose(0, 1).contiguous()
    for rnn in net.rnns:
        if hasattr(rnn, "batch_norm"):
            t, n = x.shape[:2]
            x = rnn.batch_norm.module(x.view(t * n, -1)).view(t, n, -1)
        packed = nn.utils.rnn.pack_padded_sequence(x, output_lengths)
        x, _ = rnn.rnn(packed)
        x, _ = nn.utils.rnn.pad_packed_sequence(x)
        x = x.view(x.size(0), x.size(1), 2, -1).sum(2).view(x.size(0), x.size(1), -1)
    t, n = x.shape[:2]
    x = net.fc[0].module(x.view(t * n, -1)).view(t, n, -1)
    return x.transpose(0, 1)  # (N, T, classes), before the softmax


@pytest.mark.numerics
def test_forward_equals_the_release_forward_in_float64():
    net = seeded_network().double()
    rng = np.random.default_rng(0)
    wavs = [rng.normal(0, 0.1, 16000), rng.normal(0, 0.1, 11200)]  # 1 s and 0.7 s
    specs = [spectrogram(w).double() for w in wavs]
    batch = torch.zeros(2, 1, 161, specs[0].shape[1], dtype=torch.float64)
    for i, s in enumerate(specs):
        batch[i, 0, :, :s.shape[1]] = s
    with torch.no_grad():
        reference = literal_release_forward(net, batch, torch.tensor([s.shape[1] for s in specs]))
        for i, s in enumerate(specs):  # ours: one utterance at a time, no masks needed
            ours = net(s[None, None])
            assert_close64(ours, reference[i, :len(ours)], f"utterance {i}")
        # break check: the padded utterance run as if it were long (no masks) differs from the release
        padded = net(batch[1:2])
    assert max_abs_diff(padded[:len(ours)], reference[1, :len(ours)]) > 1e-3


def test_spectrogram_columns_normalisation_and_window():
    for n in (1, 7, 25):
        wav = np.random.default_rng(n).normal(0, 0.1, 640 * n).astype(np.float32)
        spect = spectrogram(wav)
        assert spect.shape == (161, 1 + 640 * n // 160) and spect.dtype == torch.float32
        assert abs(float(spect.mean())) < 1e-5 and float(spect.std()) == pytest.approx(1.0, abs=1e-5)
    import librosa

    wav = np.random.default_rng(1).normal(0, 0.1, 3200).astype(np.float32)
    hann = np.log1p(np.abs(librosa.stft(wav, n_fft=320, hop_length=160, window="hann")))
    assert max_abs_diff(spectrogram(wav), (hann - hann.mean()) / hann.std(ddof=1)) > 1e-2  # the window matters


def test_length_rule_n_frames_of_audio_give_n_rows():
    net = seeded_network()
    for samples in (640 * 3, 640 * 3 + 1, 640 * 10 - 100, 640 * 10, 640 * 10 + 320):
        wav = np.random.default_rng(samples).normal(0, 0.1, samples).astype(np.float32)
        scores = deepspeech2_scores(wav, net)
        count = round(samples * 25 / 16000)
        assert len(scores) >= count and scores.shape[1] == 29
        if samples % 640 == 0:
            assert len(scores) == samples // 640 + 1  # the release's n + 1 rows; the last is past the audio


def lightning_file(tmp_path, net: DeepSpeech2Net):
    """A file laid out as deepspeech.pytorch saves it through PyTorch Lightning: the state dict plus
    ``hyper_parameters`` holding config objects of packages not installed here, and one whose pickle would
    run a command if it were ever resolved."""
    configs = types.ModuleType("deepspeech_pytorch_configs_for_test")
    sys.modules[configs.__name__] = configs

    class BiDirectionalConfig:
        hidden_size, hidden_layers = net.sizes.hidden, net.sizes.layers

    class Trap:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    BiDirectionalConfig.__module__ = Trap.__module__ = configs.__name__
    BiDirectionalConfig.__qualname__, Trap.__qualname__ = "BiDirectionalConfig", "Trap"
    configs.BiDirectionalConfig, configs.Trap = BiDirectionalConfig, Trap
    checkpoint = {"epoch": 16, "global_step": 1, "pytorch-lightning_version": "1.2.4",
                  "state_dict": net.state_dict(), "optimizer_states": [],
                  "hyper_parameters": {"labels": list(LABELS), "model_cfg": BiDirectionalConfig(), "trap": Trap()}}
    path = tmp_path / "LibriSpeech_Pretrained_v3.ckpt"
    torch.save(checkpoint, path)
    del sys.modules[configs.__name__]
    return path


def test_lightning_checkpoint_loads_strictly_without_running_its_pickle(tmp_path):
    net = seeded_network()
    path = lightning_file(tmp_path, net)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what weights_only makes of the hyper-parameters
    loaded = read_deepspeech2(path)
    assert not (tmp_path / "pwned").exists()
    assert loaded.sizes == TINY and not loaded.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    state = copy.deepcopy(net.state_dict())
    del state["fc.0.module.1.weight"]
    torch.save({"state_dict": state}, tmp_path / "broken.ckpt")
    with pytest.raises(CheckpointError, match="fc.0.module.1.weight"):
        read_deepspeech2(tmp_path / "broken.ckpt")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a deepspeech.pytorch checkpoint"):
        read_deepspeech2(tmp_path / "other.ckpt")


def test_registered_feature_aligns_to_the_video(tmp_path):
    net = seeded_network()
    path = lightning_file(tmp_path, net)
    feature = AUDIO_FEATURES.get("deepspeech2")({"deepspeech2": {"weights": str(path), "device": "cpu"}})
    wav = np.random.default_rng(5).normal(0, 0.1, 640 * 12).astype(np.float32)
    rows = feature.extract(wav, 12, 25.0)
    assert rows.shape == (12, 29)
    np.testing.assert_array_equal(rows, deepspeech2_scores(wav, net)[:12])
    at_30 = feature.extract(wav, 14, 30.0)  # 0.48 s at 30 fps: the nearest 25 fps row of each frame
    np.testing.assert_array_equal(at_30[6], rows[5])
    missing = AUDIO_FEATURES.get("deepspeech2")({"deepspeech2": {"weights": str(tmp_path / "none.ckpt")}})
    with pytest.raises(CheckpointError, match="none.ckpt.*LibriSpeech_Pretrained_v3.ckpt"):
        missing.extract(wav, 12, 25.0)
