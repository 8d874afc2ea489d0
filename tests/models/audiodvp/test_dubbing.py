"""AudioDVP dubbing end to end on a video that is in no store (its 3DMM fitted on the fly), with a faceless stretch
and at 30 fps; the expressions of a dub's audio window; ``infer`` from a run folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import talkingface
from talkingface.media import iter_frames, probe_video, write_wav
from talkingface.models.audiodvp import rendering
from talkingface.models.audiodvp.dubbing import AudioDVPDubbing
from talkingface.pipeline import resolve_checkpoint, run_weights

from test_preprocess import face_video, tone


@pytest.fixture(autouse=True)
def restore_torch_rng():
    """The tests seed torch's global generator; each one leaves it as it found it."""
    with torch.random.fork_rng():
        yield

TINY = {"audiodvp": {"audio_encoder": "feature", "audio_feature": "mfcc", "image_size": 32,
                     "renderer": {"num_downs": 5, "ngf": 4}, "discriminator": {"ndf": 4, "n_layers": 1}},
        "face3d": {"fit": {"key_frames": 2, "key_landmark_steps": 30, "key_steps": 2, "frame_landmark_steps": 10,
                           "frame_steps": 1}},
        "progress": False}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> talkingface.TalkingFaceModel:
    from talkingface.face3d import write_standin_bfm

    folder = tmp_path_factory.mktemp("bfm")
    write_standin_bfm(folder, vertices=300, audiodvp=True)
    config = {**TINY, "face3d": {**TINY["face3d"], "bfm_folder": str(folder)}}
    with torch.random.fork_rng():  # seeded weights; the session's RNG left as it was
        torch.manual_seed(0)
        return talkingface.build_model("audiodvp", config).eval()


def test_each_window_frame_is_rendered_with_the_expression_of_its_own_seven_audio_rows(model):
    """Frame j of output m's window hears feature rows j .. j + 6 of m's 13 (zero rows past the audio's ends give
    zero features), gets Audio2Expression's expression, and is rendered once: a second call with the window moved by
    one frame reuses six renders and makes one."""
    hooks = AudioDVPDubbing(model)
    window, faces = model.window, hooks.faces
    torch.manual_seed(1)
    rows = torch.randn(2, model.audio_width, 2 * window - 1)
    rows[1, :, :2] = 0  # the loop's zero rows past the audio's start
    targets = torch.zeros(2, window, faces.model.num_coeffs + 1)
    targets[..., faces.model.coeff_slices["angle"].start + 1] = torch.linspace(-0.2, 0.2, window)
    targets[..., -1] = 1
    targets[0, -1, -1] = 0  # past the output's end
    with torch.no_grad():
        image, covered = hooks.generator.renders(targets, rows)
        features = rows.transpose(1, 2)
        for b in range(2):
            for j in range(window):
                if not targets[b, j, -1]:
                    assert torch.count_nonzero(image[b, j]) == 0 and not covered[b, j].any()
                    continue
                part = features[b:b + 1, j:j + window]
                part = part * (part.abs().amax(-1, keepdim=True) > 0)
                coeffs = targets[b:b + 1, j, :-1].clone()
                coeffs[:, faces.exp] = model.audio2expression(part).squeeze(-1)
                expected, _ = faces.render(coeffs, lower=True)
                assert torch.equal(image[b, j], (rendering.to_uint8(expected) / 255.0)[0]), (b, j)
                if j + 1 < window:  # the next window's expression is another one (not vacuous)
                    other = targets[b:b + 1, j, :-1].clone()
                    other[:, faces.exp] = model.audio2expression(features[b:b + 1, j + 1:j + 1 + window]).squeeze(-1)
                    assert not torch.equal(image[b, j], (rendering.to_uint8(faces.render(other, lower=True)[0]) / 255)[0])
        made = []
        original = hooks.generator._render_missing
        hooks.generator._render_missing = lambda missing, *args: (made.append(len(missing)), original(missing, *args))
        moved_rows = torch.cat([rows[:1, :, 1:], torch.randn(1, model.audio_width, 1)], dim=2)
        moved_targets = torch.cat([targets[:1, 1:], targets[:1, -1:]], dim=1)
        moved_targets[0, -2:, -1] = 1
        hooks.generator.renders(moved_targets, moved_rows)
    assert made == [2]  # the frame that entered and the one formerly past the end; five reused


def test_dub_of_a_new_video_fits_it_passes_faceless_frames_and_keeps_its_rate(model, tmp_path: Path):
    video = face_video(tmp_path / "target.mp4", seconds=1.2, fps=30, blank=(0.5, 0.8))
    audio = write_wav(tmp_path / "speech.wav", tone(1.0), 16000)
    with torch.no_grad():
        out = model.generate(video, audio, tmp_path / "out.mp4")
    info, source = probe_video(out), probe_video(video)
    assert info.has_audio and abs(info.fps - 30) < 1e-6 and abs(info.frame_count - 30) <= 1
    dubbed = np.stack(list(iter_frames(out)))
    original = np.stack(list(iter_frames(video)))[:len(dubbed)]
    blank = slice(16, 23)  # 0.53 .. 0.77 s: no face
    assert np.abs(dubbed[blank].astype(int) - original[blank]).max() <= 6  # passed through (codec noise only)
    faces = [i for i in range(len(dubbed)) if not 15 <= i <= 24]
    change = np.abs(dubbed[faces].astype(int) - original[faces]).max(-1)
    assert (change > 20).any(axis=(1, 2)).all()  # every frame with a face was dubbed ...
    height, width = source.height, source.width
    changed = change > 20
    lower_face = changed[:, int(0.4 * height):int(0.8 * height), int(0.2 * width):int(0.8 * width)].sum()
    assert lower_face >= 0.85 * changed.sum()  # ... in the lower face (the rest: the re-encode at hard edges)
    assert changed.mean() < 0.15


def test_infer_takes_a_run_folder_with_its_trained_configuration(tmp_path: Path):
    run = tmp_path / "run"
    for index, stage in enumerate(("expression", "renderer")):
        folder = run / "stages" / f"{index}-{stage}" / "checkpoints"
        folder.mkdir(parents=True)
        (folder / "last.pth").write_bytes(b"x")
        (folder.parent / "stage.json").write_text(json.dumps({"stage": stage}))
    (run / "stages" / "1-renderer" / "checkpoints" / "best.pth").write_bytes(b"x")
    (run / "config.yaml").write_text("model: audiodvp\ndataset: demo\naudiodvp:\n  image_size: 64\n")
    weights, trained = resolve_checkpoint(run)
    assert weights == run / "stages" / "1-renderer" / "checkpoints" / "best.pth"
    assert "image_size: 64" in trained
    (run / "stages" / "1-renderer" / "stage.json").unlink()  # an unfinished last stage is not the result
    assert run_weights(run) == run / "stages" / "0-expression" / "checkpoints" / "last.pth"
    with pytest.raises(talkingface.errors.CheckpointError, match="without trained weights"):
        run_weights(tmp_path)


@pytest.mark.parametrize("present", [True, False])
def test_atnet_is_loaded_frozen_or_trained_with_the_person_specific_model(present, tmp_path: Path, caplog):
    """With atnet_lstm_18.pth the encoder holds its weights and stays frozen through an expression step; without
    it the run says so and the step trains the encoder too (``atnet_fallback: train``); ``error`` stops."""
    config = {"audio_encoder": "atnet", "audio_feature": "audiodvp_mfcc", "image_size": 32,
              "renderer": {"num_downs": 5, "ngf": 4}, "discriminator": {"ndf": 4, "n_layers": 1},
              "atnet_weights": str(tmp_path / "atnet_lstm_18.pth")}
    torch.manual_seed(3)
    source = talkingface.build_model("audiodvp", {**config, "atnet_fallback": "train"})
    if present:
        torch.save(source.release_example(talkingface.MODELS.get("audiodvp").releases[0]), config["atnet_weights"])
    caplog.clear()
    with caplog.at_level("WARNING"):
        model = talkingface.build_model("audiodvp", config)
    assert ("TRAINED with the person-specific model" in caplog.text) is not present
    before = {k: v.clone() for k, v in model.audio_encoder.state_dict().items()}
    if present:
        assert all(torch.equal(v, source.audio_encoder.state_dict()[k]) for k, v in before.items())
    model.enter_stage("expression", None)
    model.train()
    model.optimizers = model.configure_optimizers()["optimizers"]
    batch = {"audio": torch.randn(2, 7, 28, 12), "valid": torch.ones(2, 7, dtype=torch.bool),
             "delta": torch.randn(2, 64)}
    model.training_step(batch, 0)
    changed = any(not torch.equal(v, before[k]) for k, v in model.audio_encoder.state_dict().items())
    assert changed is not present
    if not present:
        with pytest.raises(talkingface.errors.CheckpointError, match="atnet_lstm_18.pth"):
            talkingface.build_model("audiodvp", {**config, "atnet_fallback": "error"})
