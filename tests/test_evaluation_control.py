"""The shifted-audio control row and the frame strips of a split evaluation (talkingface/evaluation/split.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkingface.config import load_config
from talkingface.errors import ConfigError, DataError
from talkingface.evaluation.report import results_table
from talkingface.evaluation.split import evaluate_split, shift_audio
from talkingface.media import VideoWriter, iter_frames, read_audio, write_wav
from talkingface.pipeline import preprocess


def test_shift_audio_is_a_circular_shift_later_in_time(tmp_path):
    samples = np.linspace(-0.5, 0.5, 16000).astype(np.float32)
    source = write_wav(tmp_path / "a.wav", samples)
    out = shift_audio(source, tmp_path / "out" / "a.wav", 0.25, 16000)
    shifted = read_audio(out)
    expected = np.round(np.roll(samples, 4000) * 32767) / 32767
    assert np.abs(shifted - expected).max() < 1e-4
    assert shifted[4000] == pytest.approx(-0.5, abs=1e-4)  # the clip's start now plays 0.25 s in
    for bad in (0.0, 1.0, 2.0):
        with pytest.raises(DataError, match="a.wav.*control_audio_shift"):
            shift_audio(source, tmp_path / "bad.wav", bad, 16000)
    assert not (tmp_path / "bad.wav").exists()


class AudioBlindModel:
    """Dubs by copying the source frames (ignores the audio): the control row must then equal the main row.
    Records which audio files it was asked to use."""

    def __init__(self):
        self.calls: list[tuple[Path, Path]] = []

    def eval(self):
        return self

    def generate(self, video, audio, out):
        self.calls.append((Path(video), Path(audio)))
        with VideoWriter(out, 25, audio=read_audio(audio)) as writer:
            for frame in iter_frames(video):
                writer.write(frame)
        return Path(out)


def test_control_row_strips_and_resume(tiny, tmp_path, capsys):
    config = load_config("example_inpainter", "example_shapes", config=tiny(
        example_shapes={"clips": 5, "seconds": 0.8, "size": 32, "val_clips": 1, "test_clips": 2},
        evaluate={"metrics": ["psnr", "ssim"], "control_audio_shift": 0.4, "control_metrics": ["psnr"],
                  "strip_frames": 4}))
    store = preprocess("example_shapes", config)
    model = AudioBlindModel()
    evaluation = evaluate_split(model, store, config, tmp_path / "evaluation")
    clips = store.split("test")
    assert len(clips) == 2 and len(model.calls) == 4
    own, shifted = model.calls[:2], model.calls[2:]
    assert [audio for _, audio in own] == [clip.audio_path for clip in clips]
    for clip, (video, audio) in zip(clips, shifted):
        assert video == clip.video_path and audio == tmp_path / "evaluation" / "control" / "audio" / f"{clip.name}.wav"
        original = read_audio(clip.audio_path)
        assert np.abs(read_audio(audio) - np.roll(original, 6400)).max() < 1e-3
    # An audio-blind model scores the same with the shifted audio: the control exposes it.
    assert set(evaluation.control.summary) == {"psnr"}
    assert evaluation.control.summary["psnr"] == pytest.approx(evaluation.result.summary["psnr"])
    rows = evaluation.table_rows("m on d")
    assert list(rows) == ["m on d", "m on d (audio shifted 0.4 s)"]
    table = results_table(rows)
    assert "audio shifted 0.4 s" in table
    for name in ("metrics.json", "control/metrics.json", "control/rows.jsonl"):
        assert (tmp_path / "evaluation" / name).is_file(), name
    # One strip per clip with three rows: generated, control, ground truth (32 px frames, 4 columns).
    assert [path.name for path in evaluation.strips] == [f"{clip.name}.png" for clip in clips]
    image = np.asarray(Image.open(evaluation.strips[0]))
    assert image.shape[0] == 3 * 32 and image.shape[1] > 4 * 32

    again = evaluate_split(model, store, config, tmp_path / "evaluation")  # resumes: nothing is dubbed again
    assert len(model.calls) == 4
    assert again.control.summary == evaluation.control.summary


def test_control_is_off_by_default_and_strips_can_be_turned_off(tiny, tmp_path):
    config = load_config("example_inpainter", "example_shapes",
                         config=tiny(evaluate={"metrics": ["psnr"], "strip_frames": 0}))
    model = AudioBlindModel()
    evaluation = evaluate_split(model, preprocess("example_shapes", config), config, tmp_path / "e")
    assert evaluation.control is None and evaluation.strips == ()
    assert list(evaluation.table_rows("x")) == ["x"] and len(model.calls) == 1
    assert not (tmp_path / "e" / "control").exists() and not (tmp_path / "e" / "strips").exists()


@pytest.mark.parametrize("bad, message", [({"strip_frames": -1}, "strip_frames"),
                                          ({"control_audio_shift": 0}, "control_audio_shift")])
def test_bad_settings_stop_before_any_dubbing(tiny, tmp_path, bad, message):
    config = load_config("example_inpainter", "example_shapes", config=tiny(evaluate={"metrics": ["psnr"], **bad}))
    model = AudioBlindModel()
    with pytest.raises(ConfigError, match=message):
        evaluate_split(model, preprocess("example_shapes", config), config, tmp_path / "e")
    assert model.calls == [] and not (tmp_path / "e").exists()


def test_the_control_reuses_what_was_measured_on_the_ground_truth(tiny, tmp_path, monkeypatch):
    import talkingface.evaluation.mouth_sync as mouth_sync

    measured: list[str] = []

    def fake_lip_gap(backend, frames):  # counts the lip-gap passes instead of running dlib on 32 px shapes
        measured.append("pass")
        return np.sin(np.arange(12) * (0.5 + len(measured) % 3))

    monkeypatch.setattr(mouth_sync, "measure_lip_gap", fake_lip_gap)
    config = load_config("example_inpainter", "example_shapes", config=tiny(
        example_shapes={"clips": 5, "seconds": 0.8, "size": 32, "val_clips": 1, "test_clips": 2},
        evaluate={"metrics": ["mouth_sync"], "control_audio_shift": 0.4, "strip_frames": 0}))
    evaluation = evaluate_split(AudioBlindModel(), preprocess("example_shapes", config), config, tmp_path / "e")
    # 2 clips: generated + ground truth for the main row, only the generated videos for the control.
    assert len(measured) == 6
    assert "mouth_sync" in evaluation.result.summary and "mouth_sync" in evaluation.control.summary
