"""GSmoothFace's A2EP data (``talkingface/models/gsmoothface/data.py``) on a hand-made store of tiny clips (face3d
coefficients, 16-bit WAV, landmarks, meta.json) and the 300-vertex stand-in face model: the official window starts
(``get_all_valid_indices`` leaves the last full window out), the audio slices and their ``Wav2Vec2Processor``
normalisation, the template and ground-truth vertices against a float64 numpy reading of ``BFM_model_front.mat``,
the speaker table, the mouth weights and the weighted vertex loss; each with a break planted into our code."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from talkingface.data.store import ClipStore
from talkingface.errors import ConfigError, DataError
from talkingface.face3d import ParametricFaceModel, write_standin_bfm
from talkingface.media import write_wav
from talkingface.models.gsmoothface import data as gd

from breaks import mutated
from numerics import assert_fp32_close, fp32_bound, max_abs_diff, scale_of

FPS, SR, SAMPLES_PER_FRAME = 25, 16000, 640
# transformers 5.23.0 Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
# do_normalize=True, return_attention_mask=False) (facebook/wav2vec2-base-960h's preprocessor settings), numpy 2.4.6,
# on RECORDED_INPUT as float32: input_values[0] as float32 bytes (little-endian hex).
RECORDED_INPUT = ((np.arange(16) * 37 % 101) - 40) / 64.0
RECORDED_OUTPUT = ["8250c2bf", "2c7375be", "b8f3843f", "dc1696bf", "19b4d83d", "5f2db13f", "69ba53bf", "a213e73e",
                   "0667dd3f", "368ef6be", "1ffd4b3f", "040cb5bf", "344f0bbe", "3738923f", "5dd288bf", "037e563e"]


@pytest.fixture(scope="module")
def bfm(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bfm")
    write_standin_bfm(folder, vertices=300, raw=False)
    return folder


@pytest.fixture(scope="module")
def model(bfm) -> ParametricFaceModel:
    return ParametricFaceModel(bfm)


def make_clip(root: Path, name: str, frames: int, samples: int, seed: int, invalid=(), source=None,
              convention="deep3dfacerecon") -> dict:
    """One store clip: random coefficients (per-frame identity too), random 16-bit audio of ``samples`` samples,
    landmarks NaN at ``invalid`` frames; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder = root / "clips" / name
    (folder / "face3d").mkdir(parents=True)
    coeffs = rng.standard_normal((frames, 257)).astype(np.float32)
    np.save(folder / "face3d" / "coeffs.npy", coeffs)
    np.save(folder / "face3d" / "crop_params.npy", np.zeros((frames, 5)))
    (folder / "face3d" / "step.json").write_text(json.dumps({"summary": {"convention": convention,
                                                                         "crop": "align_img"}}))
    landmarks = np.zeros((frames, 68, 2), np.float32)
    landmarks[list(invalid)] = np.nan
    np.save(folder / "landmarks.npy", landmarks)
    pcm = (rng.standard_normal(samples) * 3000 + 900).clip(-32768, 32767).astype(np.int16)  # a DC offset too
    write_wav(folder / "audio.wav", pcm, SR)
    meta = {"fps": FPS, "frames": frames, "sample_rate": SR, **({"source": source} if source else {})}
    (folder / "meta.json").write_text(json.dumps(meta))
    return {"coeffs": coeffs, "audio": pcm.astype(np.float64) / 32768.0}


def make_store(root: Path, clips: dict[str, dict], splits: dict[str, list[str]]) -> tuple[ClipStore, dict]:
    arrays = {name: make_clip(root, name, seed=k, **spec) for k, (name, spec) in enumerate(clips.items())}
    (root / "splits").mkdir()
    for split, names in splits.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return ClipStore(root), arrays


def normalised64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)


# three clips: A plain (23 frames), B with no face at frame 9, C with audio ending inside frame 10
WINDOW_CLIPS = {"A": {"frames": 23, "samples": 23 * SAMPLES_PER_FRAME},
                "B": {"frames": 14, "samples": 14 * SAMPLES_PER_FRAME, "invalid": (9,)},
                "C": {"frames": 14, "samples": 10 * SAMPLES_PER_FRAME + 100}}


@pytest.fixture
def window_store(tmp_path):
    return make_store(tmp_path / "store", WINDOW_CLIPS, {"train": list(WINDOW_CLIPS)})


def table_of(store) -> gd.SpeakerTable:
    return gd.speaker_table(store, "train", num_speakers=8)


def test_window_starts_leave_out_the_last_full_window(monkeypatch):
    """``range(0, T - fetch_length, stride)``: 12 frames in windows of 4 give starts 0 and 4, not 8 (8..11 is a
    full window); 13 frames give 8 too; a clip of exactly fetch_length frames gives none."""
    assert gd.window_starts(12, 4, 4) == [0, 4]
    assert gd.window_starts(13, 4, 4) == [0, 4, 8]
    assert gd.window_starts(4, 4, 1) == [] and gd.window_starts(5, 4, 1) == [0]
    assert gd.window_starts(250, 100, 100) == [0, 100]  # gsmoothface_small.yaml: a 10 s clip gives 2 windows, not 3
    mutated(monkeypatch, gd, "window_starts", "int(count) - int(fetch_length)", "int(count) - int(fetch_length) + 1")
    assert gd.window_starts(12, 4, 4) == [0, 4, 8]  # the break takes the last window: the checks above would fail


def test_audio_bounds_round_the_frame_times(monkeypatch):
    """``round(start / fps * sr)`` against exact fractions, at a rate where frames are not whole samples (30 fps:
    533 1/3 samples per frame); the break truncates instead of rounding."""
    expected = [(round(Fraction(s * SR, 30)), round(Fraction((s + 7) * SR, 30))) for s in range(60)]
    assert [gd.audio_bounds(s, s + 7, 30, SR) for s in range(60)] == expected
    assert gd.audio_bounds(2, 7, 30, SR) == (1067, 3733)
    mutated(monkeypatch, gd, "audio_bounds", "return round(start / fps * sample_rate)",
            "return int(start / fps * sample_rate)")
    assert gd.audio_bounds(2, 7, 30, SR) == (1066, 3733)


def test_windows_skip_frames_without_a_face_and_short_audio(window_store, model):
    """A: starts 0, 4, 8, 12, 16 (range(0, 18, 4)); B: 8 holds frame 9 (no face), skipped; C: 8 needs samples up to
    13 * 640 = 8320 of 6500, skipped."""
    store, _ = window_store
    windows = gd.A2EPWindows(store, "train", model, table_of(store), fetch_length=5, fetch_stride=4)
    got = [(windows.clips[slot].name, start, first, end) for slot, start, first, end in windows.index]
    expected = [(name, s, s * SAMPLES_PER_FRAME, (s + 5) * SAMPLES_PER_FRAME)
                for name, starts in (("A", (0, 4, 8, 12, 16)), ("B", (0, 4)), ("C", (0, 4))) for s in starts]
    assert got == expected
    assert windows.skipped == {"audio": 1, "no_face": 1} and len(windows) == 9
    with pytest.raises(DataError, match="no GSmoothFace window of 30 frames"):
        gd.A2EPWindows(store, "train", model, table_of(store), fetch_length=30, fetch_stride=4)


@pytest.mark.numerics
def test_items_hold_the_normalised_audio_slice(window_store, model, monkeypatch):
    """``raw_audio`` is the window's samples (int16 / 32768) normalised on their own, within the float32 bound of a
    float64 formula (terms: the 3200 samples of the mean and variance; depth 2); a slice one sample late (the
    break) misses it by orders of magnitude."""
    store, arrays = window_store
    windows = gd.A2EPWindows(store, "train", model, table_of(store), fetch_length=5, fetch_stride=4)

    def error() -> float:
        worst = 0.0
        for index in (0, 4, 6):
            item = windows[index]
            slot, start, first, end = windows.index[index]
            expected = normalised64(arrays[windows.clips[slot].name]["audio"][first:end])
            assert item["raw_audio"].dtype == torch.float32 and item["raw_audio"].shape == (5 * SAMPLES_PER_FRAME,)
            worst = max(worst, max_abs_diff(item["raw_audio"], expected))
        return worst

    bound = fp32_bound(4.0, 5 * SAMPLES_PER_FRAME, depth=2)  # |normalised| < 4 for these samples
    assert error() <= bound
    mutated(monkeypatch, gd.A2EPWindows, "__getitem__", "clip.audio.slice(first, end)",
            "clip.audio.slice(first + 1, end + 1)")
    assert error() > 100 * bound


@pytest.mark.numerics
def test_template_and_vertices_are_the_bfm_shapes_of_each_frame(window_store, model, bfm, monkeypatch):
    """``template`` = recentred mean + id idBase and ``face_vertex`` = template + exp exBase per frame, against
    float64 numpy on the stand-in's BFM_model_front.mat (terms 80 + 64 + 1, depth 2); ``exp``, ``exp_base`` and
    ``one_hot`` as stored. Breaks: the template with the expression added, coefficients one frame late."""
    store, arrays = window_store
    table = table_of(store)
    windows = gd.A2EPWindows(store, "train", model, table, fetch_length=5, fetch_stride=4)
    mat = scipy.io.loadmat(bfm / "BFM_model_front.mat")
    mean = mat["meanshape"].astype(np.float64).reshape(-1, 3)
    mean = (mean - mean.mean(axis=0)).reshape(1, -1)
    id_base, exp_base = mat["idBase"].astype(np.float64), mat["exBase"].astype(np.float64)

    def errors() -> tuple[float, float, float]:
        worst = [0.0, 0.0, 0.0]
        for index in (1, 5, 8):
            item = windows[index]
            slot, start = windows.index[index][:2]
            name = windows.clips[slot].name
            coeffs = arrays[name]["coeffs"][start:start + 5].astype(np.float64)
            template = mean + coeffs[:, :80] @ id_base.T
            vertex = template + coeffs[:, 80:144] @ exp_base.T
            assert item["template"].shape == item["face_vertex"].shape == (5, 3 * model.num_vertices)
            assert torch.equal(item["exp"], torch.from_numpy(arrays[name]["coeffs"][start:start + 5, 80:144]))
            assert item["exp_base"].shape == (3 * model.num_vertices, 64) and item["exp_base"].dtype == torch.float32
            assert torch.equal(item["one_hot"], torch.eye(8)[table.speakers.index(name)])
            assert (item["clip"], item["start"]) == (name, start)
            worst = [max(worst[0], max_abs_diff(item["template"], template)),
                     max(worst[1], max_abs_diff(item["face_vertex"], vertex)),
                     max(worst[2], scale_of(vertex))]
        return worst[0], worst[1], worst[2]

    template_error, vertex_error, scale = errors()
    bound = fp32_bound(scale, 80 + 64 + 1, depth=2)
    assert template_error <= bound and vertex_error <= bound, (template_error, vertex_error, bound)
    # measured: the expression part of the stand-in moves vertices by ~1e-2 dm, the bound is ~3e-5
    mutated(monkeypatch, gd.A2EPWindows, "vertices", "return self.mean_shape + identity,",
            "return self.mean_shape + identity + expression,")
    assert errors()[0] > 100 * bound
    monkeypatch.undo()
    mutated(monkeypatch, gd.A2EPWindows, "__getitem__", "clip.coeffs[start:start + self.fetch_length]",
            "clip.coeffs[start + 1:start + 1 + self.fetch_length]")
    with pytest.raises(AssertionError):  # exp is compared exactly; the vertices miss too
        errors()


def test_speaker_table_groups_clips_by_source_video(tmp_path, model, monkeypatch):
    """Clips cut from one source video are one speaker (named after its first clip), sorted; the item's one-hot is
    that position; validation clips of other videos get their position among the split's own speakers (the official
    val set); too many speakers for num_speakers is a ConfigError. Break: grouping that ignores the source."""
    spec = {"frames": 8, "samples": 8 * SAMPLES_PER_FRAME}
    clips = {"b_00": {**spec, "source": "/raw/b.mp4"}, "b_01": {**spec, "source": "/raw/b.mp4"},
             "a_00": {**spec, "source": "/raw/a.mp4"}, "c": spec,
             "z_00": {**spec, "source": "/raw/z.mp4"}, "y_00": {**spec, "source": "/raw/y.mp4"}}
    store, _ = make_store(tmp_path / "store", clips, {"train": ["b_00", "b_01", "a_00", "c"], "val": ["z_00", "y_00"]})
    table = gd.speaker_table(store, "train", num_speakers=4)
    assert table.speakers == ("a_00", "b_00", "c") and table.clips["b_01"] == "b_00"
    assert [gd.speaker_index(table, n) for n in ("a_00", "b_00", "b_01", "c", 2)] == [0, 1, 1, 2, 2]
    assert gd.SpeakerTable.from_dict(json.loads(json.dumps(table.as_dict()))) == table
    with pytest.raises(ConfigError, match="unknown GSmoothFace speaker 'd'.*a_00, b_00, c"):
        gd.speaker_index(table, "d")
    windows = gd.A2EPWindows(store, "train", model, table, fetch_length=4, fetch_stride=4)
    assert {(windows[i]["clip"], int(windows[i]["one_hot"].argmax())) for i in range(len(windows))} == \
        {("b_00", 1), ("b_01", 1), ("a_00", 0), ("c", 2)}
    assert all(windows[i]["one_hot"].shape == (4,) for i in range(len(windows)))
    val = gd.A2EPWindows(store, "val", model, table, fetch_length=4, fetch_stride=4)
    assert {(val[i]["clip"], int(val[i]["one_hot"].argmax())) for i in range(len(val))} == {("y_00", 0), ("z_00", 1)}
    assert gd.speaker_table(store, "train", num_speakers=4, by="clip").speakers == ("a_00", "b_00", "b_01", "c")
    with pytest.raises(ConfigError, match="3 speakers .* num_speakers=2.*at least 3"):
        gd.speaker_table(store, "train", num_speakers=2)
    mutated(monkeypatch, gd, "_clip_groups", 'if by == "source" else None', "if False else None")
    assert gd.speaker_table(store, "train", num_speakers=4).speakers != table.speakers


def test_store_errors(tmp_path, model):
    """Coefficients of the AudioDVP convention and a face model in it are refused by name."""
    store, _ = make_store(tmp_path / "store", {"v": {"frames": 8, "samples": 5120, "convention": "audiodvp"}},
                          {"train": ["v"]})
    with pytest.raises(DataError, match="audiodvp coefficients; GSmoothFace needs"):
        gd.A2EPWindows(store, "train", model, table_of(store), fetch_length=4, fetch_stride=4)


def test_audio_other_than_16_bit_pcm_at_the_rate_is_decoded(tmp_path):
    """A WAV at 32 kHz goes through read_audio (resampled to 16 kHz); the store's PCM is read by slices."""
    pcm = (np.sin(np.arange(3200) * 0.01) * 8000).astype(np.int16)
    write_wav(tmp_path / "a.wav", pcm, 32000)
    audio = gd.ClipAudio(tmp_path / "a.wav", SR)
    assert audio._samples is not None and abs(audio.length - 1600) <= 2
    write_wav(tmp_path / "b.wav", pcm, SR)
    audio = gd.ClipAudio(tmp_path / "b.wav", SR)
    assert audio._samples is None and audio.length == 3200
    assert np.array_equal(audio.slice(100, 300), pcm[100:300].astype(np.float32) / np.float32(32768))


@pytest.mark.numerics
def test_normalise_waveform_is_wav2vec2_processors(monkeypatch):
    """Against float64 ``(x - mean) / sqrt(var + 1e-7)`` on a long slice with a DC offset and against the values
    recorded from transformers' feature extractor; float32 out for float64 in. Break: the sample variance (ddof 1)."""
    rng = np.random.default_rng(3)
    long = (rng.standard_normal(4000) * 0.2 + 0.3).astype(np.float32)
    out = gd.normalise_waveform(long)
    assert out.dtype == np.float32 and out.shape == long.shape
    assert_fp32_close(out, normalised64(long), fp32_bound(scale_of(normalised64(long)), 4000, depth=2), "long slice")
    recorded = np.frombuffer(bytes.fromhex("".join(RECORDED_OUTPUT)), "<f4")
    bound = fp32_bound(scale_of(recorded), 16, depth=2)
    assert_fp32_close(gd.normalise_waveform(RECORDED_INPUT.astype(np.float32)), recorded, bound, "transformers")
    assert_fp32_close(gd.normalise_waveform(RECORDED_INPUT), recorded, bound, "float64 input")
    assert gd.normalise_waveform(RECORDED_INPUT).dtype == np.float32
    mutated(monkeypatch, gd, "normalise_waveform", "np.sqrt(x.var() + 1e-7)", "np.sqrt(x.var(ddof=1) + 1e-7)")
    assert max_abs_diff(gd.normalise_waveform(RECORDED_INPUT), recorded) > 100 * bound


def test_derived_mouth_region_is_around_the_lips_at_any_scale(model, monkeypatch):
    """On the stand-in: every lip keypoint in; the jaw contour, brows, nose bridge and tip, and eyes out; a minority
    of the face; the same vertices after scaling and shifting the mesh. Break: the radius in absolute units instead
    of mouth widths."""
    mask = gd.derived_mouth_mask(model)
    keypoints = model.tensor("keypoints").numpy()
    assert mask[keypoints[48:68]].all() and not mask[keypoints[list(range(31)) + list(range(36, 48))]].any()
    assert 0.05 < mask.mean() < 0.4, mask.mean()
    points = model.tensor("mean_shape").numpy().reshape(-1, 3).astype(np.float64)
    assert np.array_equal(gd.mouth_region(points * 7.3 + [0.5, -2.0, 1.0], keypoints), mask)
    weights = gd.mouth_weights(model, "derived")
    assert weights.dtype == torch.float32 and torch.equal(weights, torch.where(torch.from_numpy(mask),
                                                                                torch.tensor(1.8), torch.tensor(1.0)))
    mutated(monkeypatch, gd, "mouth_region", "float(radius) * width", "float(radius)")
    assert not np.array_equal(gd.mouth_region(points * 7.3, keypoints), gd.mouth_region(points, keypoints))


def test_user_mouth_masks_bool_or_indices(model, tmp_path):
    """A bool mask and an index array give the same weights (1.8 on the listed vertices); a wrong length, an index out
    of range, a float array, a 0/1 integer mask and a missing file are DataErrors naming the file."""
    n = model.num_vertices
    chosen = np.array([3, 17, 150, n - 1])
    mask = np.zeros(n, bool)
    mask[chosen] = True
    np.save(tmp_path / "mask.npy", mask)
    np.save(tmp_path / "index.npy", chosen)
    expected = torch.ones(n)
    expected[torch.from_numpy(chosen)] = 1.8
    for name in ("mask.npy", "index.npy"):
        assert torch.equal(gd.mouth_weights(model, tmp_path / name), expected), name
    bad = {"short.npy": np.zeros(n - 1, bool), "range.npy": np.array([0, n]), "float.npy": mask.astype(np.float32),
           "ints.npy": mask.astype(np.int64), "missing.npy": None}
    for name, values in bad.items():
        if values is not None:
            np.save(tmp_path / name, values)
        with pytest.raises(DataError, match=name):
            gd.mouth_weights(model, tmp_path / name)


def test_vertex_loss_is_the_weighted_mean_of_squared_vertex_distances(monkeypatch):
    """Two frames of two vertices: squared distances 9, 4 / 1, 16, weights 1.8, 1: (16.2 + 4 + 1.8 + 16) / 4 = 9.5.
    Break: the mean over x, y, z (the plain MSE) instead of the sum."""
    target = torch.zeros(1, 2, 6, dtype=torch.float64)
    pred = torch.tensor([[[1, 2, 2, 0, 0, 2], [0, 1, 0, 4, 0, 0]]], dtype=torch.float64)
    weights = torch.tensor([1.8, 1.0], dtype=torch.float64)
    assert abs(float(gd.vertex_loss(pred, target, weights)) - 9.5) < 1e-12
    assert abs(float(gd.vertex_loss(pred, target)) - 30 / 4) < 1e-12
    with pytest.raises(ValueError):
        gd.vertex_loss(pred, target, torch.ones(3))
    mutated(monkeypatch, gd, "vertex_loss", "** 2).sum(-1)", "** 2).mean(-1)")
    assert abs(float(gd.vertex_loss(pred, target, weights)) - 9.5) > 1
