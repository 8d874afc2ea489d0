"""The registered ``face3d`` preprocessing step on a demo clip with the synthetic stand-in face model.

- Through ``talkingface preprocess --dataset demo`` with ``preprocess.steps=[face3d]``: per-frame coefficients and
  crop parameters in ``<clip>/face3d/``, the stand-in said in ``step.json``, the fitted jaw-opening coefficient
  following the mouth (r >= 0.8 against the dlib lip gap and against the demo's ground-truth opening; the same
  series 10 frames apart does not, r < 0.5). A second run does nothing; changed settings redo the step only.
- Regression by ``ReconNet`` (random weights in VideoReTalking's file layout): the coefficients are the network's
  output on ``align_img``'s crops (float32 bound) and the crop parameters its ``trans_params`` (exactly).
- Errors name what is wrong and leave no partial output; an interrupted step keeps its resumable state.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import cli_tokens, torch_threads
from numerics import fp32_bound
from talkingface.cli import main
from talkingface.config import load_config
from talkingface.data import ClipStore
from talkingface.data.face3d_step import Face3dStep, read_face3d
from talkingface.data.steps import run_steps
from talkingface.errors import CheckpointError, ConfigError, DataError
from talkingface.face3d import (JAW_COMPONENT, ReconNet, align_img, image_to_tensor, landmarks_y_up, load_lm3d,
                                write_standin_bfm)
from talkingface.media import VideoWriter, iter_frames

QUICK_FIT = {"key_frames": 4, "key_landmark_steps": 300, "key_steps": 5, "frame_landmark_steps": 150,
             "frame_steps": 2}


def step_overrides(tmp: Path, bfm: Path, **face3d) -> dict:
    return {"progress": False, "demo": {"clips": 1}, "data": {"root": str(tmp / "raw"),
                                                                "processed_dir": str(tmp / "processed")},
            "preprocess": {"workers": 1, "steps": ["face3d"]},
            "face3d": {"bfm_folder": str(bfm), "method": "fit", "fit": QUICK_FIT, **face3d}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A one-clip demo store preprocessed with the face3d step (fit, Deep3DFaceRecon convention)."""
    tmp = tmp_path_factory.mktemp("face3d_step")
    bfm = tmp / "BFM"
    write_standin_bfm(bfm, audiodvp=True)
    args = ["preprocess", "--dataset", "demo", *cli_tokens(step_overrides(tmp, bfm))]
    with torch_threads(1):
        assert main(args) == 0
    return tmp, bfm, ClipStore(tmp / "processed" / "demo")


def test_the_demo_clip_is_fitted_and_the_jaw_follows_the_mouth(built):
    tmp, bfm, store = built
    clip = store.clip("demo_00")
    result = read_face3d(clip)
    frames = clip.meta["frames"]
    assert result.coeffs.shape == (frames, 257) and result.coeffs.dtype == np.float32
    assert result.crop_params.shape == (frames, 5)
    assert result.with_crop_params().shape == (frames, 262)
    info = result.info
    assert info["method"] == "fit" and info["convention"] == "deep3dfacerecon" and info["crop"] == "align_img"
    assert info["standin"] is True and info["frames"] == frames and info["frames_without_face"] == 0
    assert info["landmark_rms_px"]["mean"] < 8.0  # the stand-in is not the astronaut's face (measured 4.7 px)
    assert not any(p.name.startswith(".face3d") for p in clip.root.iterdir())

    landmarks = clip.landmarks()
    gap = np.linalg.norm(landmarks[:, 66] - landmarks[:, 62], axis=1)  # dlib's inner-lip gap
    opening = -result.coeffs[:, 80 + JAW_COMPONENT]  # exp starts at 80; negative opens
    truth = np.asarray(json.loads((tmp / "raw" / "demo" / "demo_00.json").read_text())["mouth_opening"])[:frames]
    r_gap, r_truth = np.corrcoef(opening, gap)[0, 1], np.corrcoef(opening, truth)[0, 1]
    assert r_gap >= 0.8 and r_truth >= 0.8, (r_gap, r_truth)  # measured 0.991 / 0.963 with these quick settings
    assert abs(np.corrcoef(opening[10:], gap[:-10])[0, 1]) < 0.5  # not a property of any smooth series
    # crop parameters are align_img's trans_params: the frame size, a scale, the fitted translation
    assert np.all(result.crop_params[:, :2] == [clip.meta["width"], clip.meta["height"]])

    # nothing to do a second time; the output is untouched
    config = load_config(dataset="demo", config=step_overrides(tmp, bfm))
    before = (clip.root / "face3d" / "coeffs.npy").stat().st_mtime_ns
    assert run_steps(store, config) == {"face3d": 0}
    assert (clip.root / "face3d" / "coeffs.npy").stat().st_mtime_ns == before


def test_audiodvp_convention_uses_one_portrait_crop(built, tmp_path):
    tmp, bfm, store = built
    copy = ClipStore(tmp_path / "store")
    shutil.copytree(store.root, copy.root)
    config = load_config(dataset="demo", config=step_overrides(tmp, bfm, convention="audiodvp"))
    assert run_steps(copy, config) == {"face3d": 1}  # other settings: the step is done again
    result = read_face3d(copy.clip("demo_00"))
    assert result.info["convention"] == "audiodvp" and result.info["crop"] == "portrait"
    assert np.all(result.crop_params == result.crop_params[0])  # one box for the clip
    gap = np.linalg.norm(copy.clip("demo_00").landmarks()[:, 66] - copy.clip("demo_00").landmarks()[:, 62], axis=1)
    assert np.corrcoef(-result.coeffs[:, 160 + JAW_COMPONENT], gap)[0, 1] >= 0.8  # AudioDVP's exp is 160:224


def short_clip(store: ClipStore, target: Path, frames: int) -> ClipStore:
    """A store holding the first ``frames`` frames of the demo clip."""
    source = store.clip("demo_00")
    out = target / "clips" / "demo_00"
    out.mkdir(parents=True)
    with VideoWriter(out / "video.mp4", 25, crf=0, preset="ultrafast") as writer:
        for index, frame in enumerate(iter_frames(source.video_path)):
            if index == frames:
                break
            writer.write(frame)
    np.save(out / "landmarks.npy", source.landmarks()[:frames])
    np.save(out / "face_valid.npy", np.load(source.root / "face_valid.npy")[:frames])
    (out / "meta.json").write_text(json.dumps({**source.meta, "frames": frames}))
    return ClipStore(target)


def test_recon_regresses_align_img_crops(built, tmp_path):
    tmp, bfm, store = built
    small = short_clip(store, tmp_path / "store", 6)
    torch.manual_seed(0)
    net = ReconNet()
    for layer in net.final_layers:  # the original zero-initialises them: make the output depend on the input
        torch.nn.init.normal_(layer.weight, std=0.02)
    weights = tmp_path / "face3d_pretrain_epoch_20.pth"
    torch.save({"net_recon": net.state_dict()}, weights)
    config = load_config(dataset="demo", config=step_overrides(tmp, bfm, method="recon", recon_weights=str(weights),
                                                               batch_size=4))
    assert run_steps(small, config) == {"face3d": 1}
    clip = small.clip("demo_00")
    result = read_face3d(clip)
    assert result.info["method"] == "recon" and result.info["weights"] == str(weights)

    lm3d = load_lm3d(bfm)
    height = clip.meta["height"]
    reference = ReconNet.from_checkpoint(weights)

    def regressed(y_up: bool) -> tuple[np.ndarray, np.ndarray]:
        crops, params = [], []
        for frame, points in zip(iter_frames(clip.video_path), clip.landmarks().astype(np.float64)):
            trans_params, crop, _, _ = align_img(frame, landmarks_y_up(points, height) if y_up else points, lm3d)
            crops.append(crop)
            params.append(trans_params)
        with torch.no_grad():
            coeffs = torch.cat([reference(image_to_tensor(np.stack(crops[k:k + 4]))) for k in (0, 4)]).numpy()
        return coeffs, np.stack(params)

    expected, params = regressed(y_up=True)
    assert np.array_equal(result.crop_params, params)
    bound = fp32_bound(float(np.abs(expected).max()), 4608, depth=50)
    error = np.abs(result.coeffs - expected).max()
    assert error <= bound
    rows_down = regressed(y_up=False)[0]  # deliberate break: landmarks with y down, as the detector gives them
    assert np.abs(result.coeffs - rows_down).max() > 10 * bound


def test_bad_settings_are_clear_errors(built, tmp_path, capsys):
    tmp, bfm, store = built
    with pytest.raises(DataError, match="lacks similarity_Lm3D_all.mat, BFM_model_front.mat.*face3d standin"):
        Face3dStep(load_config(dataset="demo", config=step_overrides(tmp, tmp_path / "empty")))
    with pytest.raises(CheckpointError, match="recon_weights .*nothing.pth not found"):
        Face3dStep(load_config(dataset="demo", config=step_overrides(tmp, bfm, method="recon",
                                                                     recon_weights=str(tmp_path / "nothing.pth"))))
    with pytest.raises(ConfigError, match="convention=deep3dfacerecon"):
        Face3dStep(load_config(dataset="demo", config=step_overrides(tmp, bfm, method="recon",
                                                                     convention="audiodvp")))
    with pytest.raises(ConfigError, match="face3d.method='guess'"):
        Face3dStep(load_config(dataset="demo", config=step_overrides(tmp, bfm, method="guess")))
    # through the CLI: exit 1, the folder named, no output left in the clip
    copy = tmp_path / "processed" / "demo"
    shutil.copytree(store.root, copy)
    shutil.rmtree(copy / "clips" / "demo_00" / "face3d")
    overrides = step_overrides(tmp, tmp_path / "empty")
    overrides["data"]["processed_dir"] = str(tmp_path / "processed")
    assert main(["preprocess", "--dataset", "demo", *cli_tokens(overrides)]) == 1
    assert "empty lacks" in capsys.readouterr().err
    assert sorted(p.name for p in (copy / "clips" / "demo_00").iterdir()) == [
        "audio.wav", "face_valid.npy", "features", "landmarks.npy", "meta.json", "video.mp4"]


def test_a_clip_without_faces_fails_by_name_and_leaves_nothing(built, tmp_path):
    tmp, bfm, store = built
    small = short_clip(store, tmp_path / "store", 3)
    clip = small.clip("demo_00")
    np.save(clip.root / "face_valid.npy", np.zeros(3, bool))
    config = load_config(dataset="demo", config=step_overrides(tmp, bfm))
    with pytest.raises(DataError, match="demo_00: no frame has a face"):
        run_steps(small, config)
    assert not (clip.root / "face3d").exists() and not (clip.root / ".face3d.partial").exists()


def test_an_interrupted_step_keeps_its_state_and_writes_no_output(built, tmp_path, monkeypatch):
    import talkingface.face3d as face3d

    tmp, bfm, store = built
    small = short_clip(store, tmp_path / "store", 4)
    config = load_config(dataset="demo", config=step_overrides(tmp, bfm))
    original = face3d.fit_video

    def interrupted(*args, state_dir=None, **kwargs):
        (Path(state_dir) / "key_frames.npz").write_bytes(b"")  # as if the first phase had finished
        raise KeyboardInterrupt

    monkeypatch.setattr(face3d, "fit_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_steps(small, config)
    clip = small.clip("demo_00")
    assert not (clip.root / "face3d").exists() and not (clip.root / ".face3d.partial").exists()
    assert (clip.root / ".face3d.state" / "key_frames.npz").exists()
    seen = []

    def resumed(*args, state_dir=None, **kwargs):
        seen.append(sorted(p.name for p in Path(state_dir).iterdir()))
        (Path(state_dir) / "key_frames.npz").unlink()
        return original(*args, state_dir=state_dir, **kwargs)

    monkeypatch.setattr(face3d, "fit_video", resumed)
    assert run_steps(small, config) == {"face3d": 1}
    assert seen == [["fingerprint.json", "key_frames.npz"]]  # the same settings found the saved state
    assert (clip.root / "face3d" / "step.json").exists() and not (clip.root / ".face3d.state").exists()
