"""The registered ``lawdnet`` model: its defaults, the release file, its training crops, every stage's step,
the clip stage's SyncNet, and dubbing (paste-backs, faceless frames, references)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import talkingface
from talkingface.data import ClipStore
from talkingface.errors import CheckpointError, ConfigError, DataError
from talkingface.media import probe_video, read_frames
from talkingface.models.dinet.data.dataset import DINetClipDataset, DINetFrameDataset
from talkingface.models.dinet.releases import SYNCNET_256
from talkingface.models.lawdnet.data import (LAWDNET_CROPS, align_face, align_matrix, box_matrix, crop_aligned,
                                             crop_size, paste_aligned, paste_scattered, plan_aligned_clips,
                                             smooth_square_mask, template_points)
from talkingface.models.lawdnet.dubbing import mouth_margins, reference_frames
from talkingface.models.lawdnet.releases import CLIP_288
from fixture_tools import load_module
from test_preprocess import face_video

make_store = load_module(Path(__file__).resolve().parents[1] / "dinet" / "test_dinet_data.py",
                         "dinet_data_helpers").make_store  # DINet's hand-written clip store

STAGES = {"frame64": {"mouth": 64, "augment_num": 2, "batch_size": 2, "epochs": 1, "non_decay": 1, "decay": 1},
          "clip": {"mouth": 64, "augment_num": 2, "batch_size": 1, "epochs": 1, "non_decay": 1, "decay": 1},
          "syncnet": {"mouth": 64, "augment_num": 2, "batch_size": 2, "epochs": 1, "non_decay": 1, "decay": 1}}


def config(**lawdnet) -> talkingface.Config:
    base = {"mouth_region_size": 64, "audio_feature": "mfcc", "sync_audio_feature": "deepspeech", "stages": STAGES,
            "recipe": ["frame64", "clip"], "vgg19_weights": "/nonexistent/no-vgg19.pth"}
    return talkingface.load_config("lawdnet", config={"lawdnet": {**base, **lawdnet}, "progress": False,
                                                      "train": {"batch_size": 2, "log_every_steps": 1}})


def face_landmarks(centre_x: float, centre_y: float, scale: float, angle: float = 0.0) -> np.ndarray:
    """68 landmarks whose 25 alignment points are the template placed by a similarity (the rest at the centre)."""
    template = template_points(100).astype(np.float64) - np.array([50.0, 65.0])
    cos, sin = np.cos(angle), np.sin(angle)
    placed = scale * template @ np.array([[cos, sin], [-sin, cos]]) + np.array([centre_x, centre_y])
    landmarks = np.tile(np.array([centre_x, centre_y]), (68, 1))
    landmarks[[*range(17, 37), 39, 42, 45, 48, 54]] = placed
    return landmarks.astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ClipStore:
    """DINet's hand-written store (64 × 64 frames, 7 candidate 9-frame clips, a faceless frame in clip 3 of "b")
    with landmarks LawDNet's alignment can use."""
    root = tmp_path_factory.mktemp("lawdnet_store")
    made = make_store(root)
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        path = root / "clips" / name / "landmarks.npy"
        old = np.load(path)
        new = np.stack([face_landmarks(32 + rng.normal(), 30 + rng.normal(), 0.45) for _ in old])
        new[~np.isfinite(old).all(axis=(1, 2))] = np.nan
        np.save(path, new.astype(np.float32))
        features = root / "clips" / name / "features"  # the frame numbers, as a 29-wide "deepspeech" feature
        (features / "deepspeech.npy").write_bytes((features / "fake29.npy").read_bytes())
    return made


# ---- defaults and the release ----------------------------------------------------------------------
def test_defaults_are_the_official_recipe():
    options = talkingface.load_config("lawdnet", "hdtf")["lawdnet"]
    assert list(options["recipe"]) == ["frame64", "frame128", "frame256", "clip"]
    stages = options["stages"]
    assert [(stages[s]["mouth"], stages[s]["augment_num"], stages[s]["batch_size"], stages[s]["non_decay"],
             stages[s]["decay"]) for s in options["recipe"]] == [
        (64, 32, 16, 5, 5), (128, 100, 8, 5, 5), (256, 20, 4, 5, 5), (288, 3, 1, 85, 85)]
    assert (options["lamb_img"], options["lamb_perception"], options["lamb_gan_i"], options["lamb_gan_v"],
            options["lamb_syncnet"], options["lr"]) == (1.0, 10.0, 1.0, 1.0, 0.1, 1e-4)
    assert (options["audio_feature"], options["sync_audio_feature"], options["mouth_region_size"]) == (
        "deepspeech2", "deepspeech", 288)
    assert options["scrambled_grid"] is True and options["skip_dead_layers"] is True


def test_the_release_loads_strictly_with_its_dead_layer_and_unused_norms(tmp_path):
    model = talkingface.build_model("lawdnet", {"lawdnet": {"mouth_region_size": 64}})
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.rand(tensor.shape, generator=torch.Generator().manual_seed(tensor.numel())))
    example = model.release_example(CLIP_288)
    assert example["epoch"] == 170 and set(example["state_dict"]) == {"net_g", "net_dI", "net_dV"}
    assert set(example["optimizer"]) == set(example["scheduler"]) == {"net_g", "net_dI", "net_dV"}
    net_g = example["state_dict"]["net_g"]
    assert all(k.startswith("module.") for k in net_g) and "module.lawLayer_list.0.commn_linear.0.weight" in net_g
    assert "module.audio_encoder.1.norm1.running_var" in net_g
    torch.save(example, tmp_path / CLIP_288.filename)
    fresh = talkingface.build_model("lawdnet", {"lawdnet": {"mouth_region_size": 64}})
    fresh.load_checkpoint(tmp_path / CLIP_288.filename)
    for key, tensor in model.state_dict().items():
        if not key.startswith("networks.syncnet"):
            assert torch.equal(fresh.state_dict()[key], tensor), key
    # a DINet release is named, not half-loaded
    dinet = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64}})
    torch.save(dinet.release_example(dinet.releases[0]), tmp_path / "clip_training_DINet_256mouth.pth")
    with pytest.raises(CheckpointError, match="clip_training_DINet_256mouth.pth"):
        fresh.load_checkpoint(tmp_path / "clip_training_DINet_256mouth.pth")


# ---- training crops and datasets ---------------------------------------------------------------------
def test_aligned_clip_plan_rejects_faceless_and_short_clips_and_crops_like_align_face(store):
    landmarks = store.clip("b").landmarks()
    size = crop_size(80)
    plan = plan_aligned_clips(landmarks, (64, 64), np.random.default_rng(0), 54, size)
    assert plan.rejected == {3: "no face in some frames", 6: "audio features shorter than the frames"}  # ends 63 > 54
    assert [c.number for c in plan.accepted] == [0, 1, 2, 4, 5] and plan.accepted[1].start == 9
    first = plan.accepted[0]
    assert np.allclose(box_matrix(first.boxes[4]), align_matrix(landmarks[4], 80), rtol=0, atol=1e-12)
    frame = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    expected, _ = align_face(frame, landmarks[4], 80)
    assert np.array_equal(crop_aligned(frame, first.boxes[4], size), np.rint(expected).astype(np.uint8))
    with pytest.raises(ValueError, match="not a LawDNet crop size"):
        plan_aligned_clips(landmarks, (64, 64), np.random.default_rng(0), 54, (100, 80))


def test_datasets_mask_with_smoothsqmask_and_feed_syncnet_its_own_feature(store, tmp_path):
    frame = DINetFrameDataset(store, "train", 64, audio_feature="mfcc", seed=3, style=LAWDNET_CROPS,
                              cache_dir=tmp_path)
    item = frame[0]
    mask = smooth_square_mask(104, 80)
    assert item["source"].shape == (3, 104, 80) and item["refs"].shape == (15, 104, 80)
    assert torch.equal(item["source_masked"], item["source"] * mask)
    assert sorted(p.name.split(".")[0] for p in tmp_path.glob("*.npy")) == ["a", "b"]
    clip = DINetClipDataset(store, "train", 64, audio_feature="mfcc", seed=3, style=LAWDNET_CROPS,
                            cache_dir=tmp_path, sync_feature="fake29")
    item = clip[1]
    assert item["audio"].shape == (5, 52, 5) and item["audio_full"].shape == (29, 9)
    start = float(item["audio_full"][0, 0])  # fake29 holds the frame number: 9 in-sync frames of one clip
    assert start % 9 == 0 and torch.equal(item["audio_full"][0], torch.arange(start, start + 9))


# ---- steps, stages, SyncNet ----------------------------------------------------------------------------
@pytest.mark.parametrize("stage,logged", [("frame64", {"img", "perception", "gan_i", "d_i"}),
                                          ("clip", {"img", "perception", "gan_i", "gan_v", "sync", "d_i", "d_v"})])
def test_one_step_of_each_stage_with_adamw_and_the_pixel_loss(store, stage, logged, tmp_path):
    sync_file = tmp_path / SYNCNET_256.filename
    model = talkingface.build_model("lawdnet", config(cache_dir=str(tmp_path), syncnet_weights=str(sync_file)))
    if stage == "clip":
        with pytest.raises(CheckpointError, match="syncnet_256mouth.pth not found"):
            model.enter_stage(stage, None)
        sync = talkingface.build_model("dinet", {"dinet": {"mouth_region_size": 64, "audio_feature": "deepspeech"}})
        torch.save(sync.release_example(SYNCNET_256), sync_file)
    model.enter_stage(stage, None)
    if stage == "clip":
        loaded, released = model.syncnet.state_dict(), sync.syncnet.state_dict()
        assert loaded.keys() == released.keys() and all(torch.equal(loaded[k], released[k]) for k in loaded)
    optim = model.configure_optimizers()
    assert all(type(o) is torch.optim.AdamW for o in optim["optimizers"].values())
    model.optimizers = optim["optimizers"]
    data = model.build_dataset(store, "train")
    batch = torch.utils.data.default_collate([data[0]])
    model.train()
    scalars = model.training_step(batch, 0)
    assert logged <= set(scalars) and all(np.isfinite(v) for v in scalars.values())
    fake, source = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert torch.allclose(model._image_loss(fake, source), F.mse_loss(fake, source))


def test_syncnet_sees_the_mouth_resized_to_256():
    model = talkingface.build_model("lawdnet", config())
    faces = torch.rand(2, 15, 104, 80)
    mouths = model.networks.crop_mouth(faces)
    assert mouths.shape == (2, 15, 256, 256)
    assert torch.allclose(mouths, F.interpolate(faces[..., 32:96, 8:72], size=(256, 256), mode="bilinear"))


# ---- dubbing ------------------------------------------------------------------------------------------
def dubber(**lawdnet):
    return talkingface.build_model("lawdnet", {"lawdnet": {"mouth_region_size": 32, "audio_feature": "mfcc",
                                                           "sync_audio_feature": "mfcc", "infer_batch": 4,
                                                           **lawdnet}, "progress": False}).eval()


def test_dub_keeps_faceless_frames_and_both_pastes_work(tmp_path):
    src = face_video(tmp_path / "gap.mp4", seconds=1.0, blank=(0.4, 0.6))  # frames 10..14 blank
    original = read_frames(src)
    for paste in ("feathered", "official"):
        out = dubber(paste=paste).generate(src, src, tmp_path / f"{paste}.mp4")
        assert probe_video(out).has_audio
        frames = read_frames(out)
        diff = np.abs(frames[:25].astype(float) - original[:25].astype(float)).mean(axis=(1, 2, 3))
        assert diff[10:15].max() < 1.0 and diff[:8].min() > 0.3, (paste, diff)
    with pytest.raises(ConfigError, match="paste"):
        dubber().dubbing_hooks(paste="nearest")
    with pytest.raises(DataError, match="no frame"):
        reference_frames(np.zeros(5, bool), np.random.default_rng(0))


def test_references_are_seeded_draws_among_frames_with_a_face():
    valid = np.array([False, True, False, True, True, False])
    picks = reference_frames(valid, np.random.default_rng(4))
    assert len(picks) == 5 and set(picks) <= {1, 3, 4}
    assert np.array_equal(picks, reference_frames(valid, np.random.default_rng(4)))


def test_feathered_paste_fills_every_pixel_where_the_official_scatter_leaves_holes():
    frame = np.zeros((240, 240, 3), np.uint8)
    landmarks = face_landmarks(120, 120, 1.6)  # the face covers more frame pixels than the 52 x 40 crop has
    face = np.full((*crop_size(40), 3), 200.0, np.float32)
    matrix = align_matrix(landmarks, 40)
    scattered = paste_scattered(frame, face, matrix)
    feathered = paste_aligned(frame, face, matrix, np.ones(crop_size(40), np.float32))
    inside = feathered[..., 0] == 200
    assert inside.sum() > 2 * crop_size(40)[0] * crop_size(40)[1]  # magnified: many frame pixels per crop pixel
    holes = inside & (scattered[..., 0] == 0)
    assert holes.sum() > 0.5 * inside.sum()  # nearest scatter: most of the covered pixels stay untouched
    assert (scattered[..., 0] == 200).sum() <= crop_size(40)[0] * crop_size(40)[1]


def test_feather_margins_follow_the_smooth_mask():
    mask = smooth_square_mask(468, 360).numpy()
    top, bottom, left, right = mouth_margins(mask)
    assert (top, 468 - 1 - bottom, left, 360 - 1 - right) == (142, 443, 28, 331)  # reference: rows 142-443, cols 28-331


def test_demo_pair_config_trains_from_scratch_with_the_intended_grid():
    demo = talkingface.load_config("lawdnet", "demo")
    assert demo["config_sources"][-1].endswith("configs/model/lawdnet/demo.yaml")
    options = demo["lawdnet"]
    assert list(options["recipe"]) == ["frame64"] and options["stages"]["frame64"]["batch_size"] == 4
    assert options["stages"]["frame64"]["augment_num"] == 32  # the rest of the stage stays official
    assert options["scrambled_grid"] is False and options["lr"] == 6e-4 and demo["train"]["max_steps"] == 210
    assert demo["evaluate"]["control_audio_shift"] == 1.5
    hdtf = talkingface.load_config("lawdnet", "hdtf")["lawdnet"]  # other datasets keep the release's settings
    assert hdtf["scrambled_grid"] is True and hdtf["lr"] == 1e-4
