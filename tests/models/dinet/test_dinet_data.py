"""DINet's data pipeline: crops, rejection, 9-frame clips, references, datasets, inference plan, paste-back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.audio import feature_width, frame_vectors
from talkingface.data import ClipStore
from talkingface.media import VideoWriter, read_frames
from talkingface.models.dinet.data import (clip_ends, clip_stage_pick, crop_box, crop_face, crop_radius,
                                           face_size, frame_stage_pick, generator_window, inference_reference_indices, mouth_box, mouth_mask,
                                           mouth_region, paste_dinet_feathered, paste_official, plan_clips,
                                           plan_references, rejection_reason, syncnet_window)
from talkingface.models.dinet.data.dataset import DINetClipDataset, DINetFrameDataset
from talkingface.dubbing import ping_pong, plan_inference
from talkingface.models.dinet.data.inference_plan import dinet_feather_mask, official_paste_region
from talkingface.seeding import isolated_rng


def face(y29: float = 100.7, x33: float = 105.2, chin: float = 160.3, x48: float = 80.9, x54: float = 130.4,
         ) -> np.ndarray:
    """68 landmarks with only the points DINet's crop reads set apart (the rest on the nose bridge)."""
    lm = np.tile(np.array([x33, y29], np.float32), (68, 1))
    lm[29] = (x33, y29)
    lm[33] = (x33, y29 + 10)
    lm[8] = (x33, chin)
    lm[48] = (x48, (y29 + chin) / 2)
    lm[54] = (x54, (y29 + chin) / 2)
    return lm


# ---- crops ------------------------------------------------------------------------------------------
def test_radius_and_box_match_hand_computed_values():
    lm = face()
    # int cast: y29 100, chin 160, x48 80, x54 130 -> r_h = 60 * 1.05 = 63, r_w = 52.5 -> r_f = 31
    assert crop_radius(lm[None], 1.05) == 32  # (int(31 / 4) + 1) * 4
    assert crop_radius(lm[None], 1.0) == 32  # r_f = 30 -> (7 + 1) * 4
    assert crop_radius(face(chin=164.0)[None], 1.0) == 36  # r_f = 32 -> a multiple of 4 still rounds up
    # rows [y29 - r, y29 + 2r + r//4), cols [x33 - r - r//4, x33 + r + r//4) with the int-cast landmarks
    assert crop_box(lm, 32) == (68, 172, 65, 145)
    box = crop_box(lm, 32)
    assert (box[1] - box[0], box[3] - box[2]) == (104, 80)  # 3.25r x 2.5r
    # the window's radius is the largest frame's
    assert crop_radius(np.stack([lm, face(chin=140.0)]), 1.05) == 32


def test_rejection_rule():
    lm = face()
    assert rejection_reason(lm[None], 1.05, (172, 145)) is None  # box ends exactly at the border: kept
    assert "bottom" in rejection_reason(lm[None], 1.05, (171, 145))
    assert "right" in rejection_reason(lm[None], 1.05, (172, 144))
    assert "top/left" in rejection_reason(face(y29=20.0, chin=80.0)[None], 1.05, (500, 500))
    # r_f 31 vs 21 (31 <= 31.5) kept; 31 vs 20 (31 > 30) rejected
    small_21 = face(chin=140.3, x54=110.0)  # r_h = 40 * 1.05 = 42 -> 21
    small_20 = face(chin=139.0, x54=110.0)  # 39 * 1.05 = 40.95 -> 20
    assert rejection_reason(np.stack([lm, small_21]), 1.05, (500, 500)) is None
    assert "face size" in rejection_reason(np.stack([lm, small_20]), 1.05, (500, 500))
    nan = lm.copy()
    nan[3] = np.nan
    assert "no face" in rejection_reason(np.stack([lm, nan]), 1.05, (500, 500))


@pytest.mark.parametrize("mouth, size", [(64, (104, 80)), (128, (208, 160)), (256, (416, 320))])
def test_face_sizes_and_mouth_mask(mouth, size):
    assert face_size(mouth) == size
    height, width = size
    mask = mouth_mask(height, width, mouth)
    rows, cols = np.nonzero(mask == 0)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (mouth // 2, 3 * mouth // 2, mouth // 8,
                                                                         9 * mouth // 8)
    assert mask.sum() == height * width - mouth * mouth
    assert mouth_box(mouth) == (mouth // 2, 3 * mouth // 2, mouth // 8, 9 * mouth // 8)
    image = torch.arange(height * width, dtype=torch.float32).reshape(1, height, width)
    region = mouth_region(image, mouth)
    assert region.shape == (1, mouth, mouth) and region[0, 0, 0] == (mouth // 2) * width + mouth // 8


def test_crop_face_is_the_slice_resized():
    frame = np.random.default_rng(0).integers(0, 256, (200, 160, 3), dtype=np.uint8)
    box = (10, 114, 20, 100)  # already 104 x 80: an exact slice
    assert np.array_equal(crop_face(frame, box, (104, 80)), frame[10:114, 20:100])
    half = crop_face(frame, (0, 200, 0, 160), (100, 80))  # 2x down, bilinear without antialias = 2x2 mean
    expected = frame.astype(np.float32).reshape(100, 2, 80, 2, 3).mean(axis=(1, 3))
    assert np.abs(half.astype(np.float32) - expected).max() <= 0.5
    with pytest.raises(ValueError):
        crop_face(frame, (-1, 103, 0, 80), (104, 80))


# ---- 9-frame clips ------------------------------------------------------------------------------
def test_nine_frame_clips_drop_the_tails():
    assert clip_ends(8) == []
    assert clip_ends(9) == []  # a clip ending exactly at n is dropped (range excludes n)
    assert clip_ends(10) == [9]
    assert clip_ends(18) == [9]
    assert clip_ends(26) == [9, 18]
    assert clip_ends(27) == [9, 18]
    assert clip_ends(28) == [9, 18, 27]


def test_plan_clips_rejects_per_clip_and_drops_short_features():
    landmarks = np.repeat(face()[None], 40, axis=0)  # clip ends 9, 18, 27, 36 -> 4 candidates
    landmarks[12, 8, 1] = 400.0  # a huge chin in clip 1: box leaves the 500-high frame
    landmarks[20] = np.nan  # no face in clip 2
    plan = plan_clips(landmarks, (500, 500), np.random.default_rng(0), num_feature_frames=30)
    assert [c.number for c in plan.accepted] == [0]
    assert set(plan.rejected) == {1, 2, 3} and "audio" in plan.rejected[3]
    crop = plan.accepted[0]
    assert crop.start == 0 and 1.05 <= crop.scale < 1.15 and len(crop.boxes) == 9
    assert crop.radius == crop_radius(landmarks[:9], crop.scale)
    # scales are drawn for every candidate, so they do not depend on rejections
    again = plan_clips(np.repeat(face()[None], 40, axis=0), (500, 500), np.random.default_rng(0))
    assert [c.number for c in again.accepted] == [0, 1, 2, 3] and again.accepted[0].scale == crop.scale


def test_audio_windows():
    features = np.arange(9)[:, None] * np.ones((1, 3))
    for i in range(2, 7):
        assert generator_window(features, i)[:, 0].tolist() == list(range(i - 2, i + 3))
    for bad in (0, 1, 7, 8):
        with pytest.raises(IndexError):
            generator_window(features, bad)
    assert syncnet_window(features).shape == (9, 3)


def test_frame_vectors_width_rule():
    assert frame_vectors(np.zeros((7, 29))).shape == (7, 29)
    mfcc = np.arange(7 * 4 * 13, dtype=np.float32).reshape(7, 4, 13)
    assert np.array_equal(frame_vectors(mfcc), mfcc.reshape(7, 52))
    mel = np.random.default_rng(0).normal(size=(7, 80, 16)).astype(np.float32)
    assert np.allclose(frame_vectors(mel, time_axis=1), mel.mean(axis=2))
    assert feature_width("deepspeech", (29,)) == 29
    assert feature_width("mfcc", (4, 13)) == 52
    assert feature_width("mel", (80, 16)) == 80
    assert feature_width("mel", (80, 16), "flatten") == 1280
    assert feature_width("mfcc", (4, 13), "time_mean") == 13


# ---- references ------------------------------------------------------------------------------------
def test_seeded_reference_choice_is_reproducible_and_in_the_official_ranges():
    picks = [frame_stage_pick(8, np.random.default_rng(s)) for s in range(300)]
    assert picks[:5] == [frame_stage_pick(8, np.random.default_rng(s)) for s in range(5)]
    assert len({(p.source_clip, p.source_frame, p.references) for p in picks}) > 250
    assert {p.source_frame for p in picks} == {2, 3, 4, 5, 6}
    assert {f for p in picks for _, f in p.references} == set(range(9))
    for p in picks:
        clips = [p.source_clip] + [c for c, _ in p.references]
        assert len(set(clips)) == 6 and all(0 <= c < 8 for c in clips)
    with pytest.raises(ValueError):
        frame_stage_pick(5, np.random.default_rng(0))

    clip_picks = [clip_stage_pick(5, np.random.default_rng(s)) for s in range(100)]
    assert clip_picks[3] == clip_stage_pick(5, np.random.default_rng(3))
    for p in clip_picks:
        assert 0 <= p.source_clip < 5 and len(p.references) == 5
        for refs in p.references:
            assert len({c for c, _ in refs}) == 5 and all(0 <= f < 9 for _, f in refs)
    # with 5 clips every reference set holds all of them, the source clip included
    assert all(p.source_clip in {c for c, _ in p.references[0]} for p in clip_picks)

    for seed in range(50):
        u, scales = inference_reference_indices(20, np.random.default_rng(seed))
        assert len(set(u.tolist())) == 5 and u.min() >= 0 and u.max() <= 16  # padded range(5, T + 2) - 5
        assert np.all((scales >= 1.05) & (scales < 1.15))
    u1, s1 = inference_reference_indices(20, np.random.default_rng(7))
    u2, s2 = inference_reference_indices(20, np.random.default_rng(7))
    assert np.array_equal(u1, u2) and np.array_equal(s1, s2)
    u, _ = inference_reference_indices(6, np.random.default_rng(0))  # too short for 5 distinct: with replacement
    assert len(u) == 5 and u.max() < 6


# ---- datasets on a tiny store --------------------------------------------------------------------
SIZE = 64
FRAMES = 64  # clip ends 9 .. 63: 7 candidate 9-frame clips


def make_store(root: Path, names: tuple[str, ...] = ("a", "b")) -> ClipStore:
    """A hand-written store: 64x64 frames, synthetic landmarks that fit, mfcc-shaped and 29-wide features."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        clip = root / "clips" / name
        (clip / "features").mkdir(parents=True)
        y, x = np.mgrid[0:SIZE, 0:SIZE]
        with VideoWriter(clip / "video.mp4", 25) as writer:
            for t in range(FRAMES):
                frame = np.stack([(x * 4 + t) % 256, (y * 4 + 3 * t) % 256, np.full_like(x, 40 * c + t)], -1)
                writer.write(frame.astype(np.uint8))
        base = face(y29=20.0, x33=32.0, chin=42.0, x48=22.0, x54=42.0)
        landmarks = np.repeat(base[None], FRAMES, axis=0) + rng.integers(-1, 2, (FRAMES, 1, 2))
        if c == 1:
            landmarks[30] = np.nan  # clip 3 of "b" has a frame without a face
        np.save(clip / "landmarks.npy", landmarks.astype(np.float32))
        np.save(clip / "features" / "mfcc.npy", rng.normal(size=(FRAMES, 4, 13)).astype(np.float32))
        np.save(clip / "features" / "fake29.npy", np.repeat(np.arange(FRAMES, dtype=np.float32)[:, None], 29, 1))
        (clip / "meta.json").write_text(json.dumps({"fps": 25, "frames": FRAMES, "width": SIZE, "height": SIZE}))
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "train.txt").write_text("".join(f"{n}\n" for n in names))
    return ClipStore(root)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ClipStore:
    return make_store(tmp_path_factory.mktemp("dinet_store"))


def test_frame_dataset_items(store: ClipStore):
    data = DINetFrameDataset(store, "train", 64, audio_feature="fake29", augment_num=3, seed=5)
    assert len(data) == 6 and data.audio_channels == 29
    frames = {name: read_frames(store.clip(name).video_path) for name in ("a", "b")}
    for index in range(len(data)):
        item = data[index]
        assert item["source"].shape == (3, 104, 80) and item["source_masked"].shape == (3, 104, 80)
        assert item["refs"].shape == (15, 104, 80) and item["audio"].shape == (29, 5)
        assert all(value.dtype == torch.float32 for value in item.values())
        assert item["source"].min() >= 0 and item["refs"].min() >= 0
        assert item["source"].max() <= 1 and item["refs"].max() <= 1
        assert item["source_masked"][:, 32:96, 8:72].abs().sum() == 0
        assert torch.equal(item["source_masked"][:, :32], item["source"][:, :32])
        # the audio window is 5 consecutive frames centred on the source frame, and the source is its crop
        t = int(item["audio"][0, 2])
        assert item["audio"][0].tolist() == [t - 2, t - 1, t, t + 1, t + 2]
        name = data.clips[index % 2].name
        assert t % 9 in range(2, 7)
        landmarks = store.clip(name).landmarks()
        scale = next(c.scale for c in plan_for(store, name, data).accepted if c.start == t - t % 9)
        radius = crop_radius(landmarks[t - t % 9: t - t % 9 + 9], scale)
        expected = crop_face(frames[name][t], crop_box(landmarks[t], radius), (104, 80))
        assert torch.allclose(item["source"], torch.from_numpy(expected / 255.0).float().permute(2, 0, 1))
    # deterministic in (seed, epoch, index)
    again = DINetFrameDataset(store, "train", 64, audio_feature="fake29", augment_num=3, seed=5)
    assert all(torch.equal(data[2][k], again[2][k]) for k in data[2])
    again.set_epoch(1)
    assert not all(torch.equal(data[2][k], again[2][k]) for k in data[2])


def plan_for(store: ClipStore, name: str, data) -> object:
    import zlib
    clip = store.clip(name)
    rng = np.random.default_rng([0, zlib.crc32(name.encode())])
    return plan_clips(clip.landmarks(), (SIZE, SIZE), rng, num_feature_frames=FRAMES)


def test_clip_dataset_items_with_mfcc(store: ClipStore):
    data = DINetClipDataset(store, "train", 64, audio_feature="mfcc", augment_num=2)  # seed=None: trainer-seeded
    assert len(data) == 4 and data.audio_channels == 52
    with isolated_rng(123):
        item = data[1]
    with isolated_rng(123):
        same = data[1]
    assert all(torch.equal(item[k], same[k]) for k in item)
    shapes = {"source": (5, 3, 104, 80), "masked": (5, 3, 104, 80), "refs": (5, 15, 104, 80),
              "audio": (5, 52, 5), "audio_full": (52, 9)}
    assert {k: tuple(v.shape) for k, v in item.items()} == shapes
    assert all(v.dtype == torch.float32 for v in item.values())
    assert 0 <= item["source"].min() and item["source"].max() <= 1 and item["refs"].max() <= 1
    assert item["masked"][:, :, 32:96, 8:72].abs().sum() == 0
    # the five generator windows slide over the clip's 9 frames: window k = full[:, k : k + 5]
    for k in range(5):
        assert torch.equal(item["audio"][k], item["audio_full"][:, k:k + 5])
    # a worker gets a pickled copy: no memory map travels with it
    import pickle
    assert pickle.loads(pickle.dumps(data))._opened == {}


def test_dataset_rejects_a_store_without_enough_clips(tmp_path: Path):
    from talkingface.errors import DataError
    small = make_store(tmp_path / "s", names=("a",))
    np.save(small.clip("a").root / "landmarks.npy", np.full((FRAMES, 68, 2), np.nan, np.float32))
    with pytest.raises(DataError):
        DINetFrameDataset(small, "train", 64, audio_feature="fake29", cache_dir=tmp_path / "cache")


# ---- inference plan ----------------------------------------------------------------------------------
def test_ping_pong_trim_and_padding():
    assert ping_pong(3, 10).tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2]
    plan = plan_inference(3, 8)
    assert plan.source_index.tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
    assert plan_inference(10, 4).source_index.tolist() == [0, 1, 2, 3]  # audio shorter: trimmed
    short = plan_inference(10, 4)
    # windows = padded [m, m + 5) = unpadded [m - 2, m + 3) with edge padding
    assert short.landmark_windows.tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]
    assert short.audio_windows.tolist() == short.landmark_windows.tolist()
    # landmark windows follow the ping-pong sequence
    assert plan.landmark_windows[3].tolist() == [1, 2, 2, 1, 0]
    refs = plan_references(plan_inference(30, 20), np.random.default_rng(1))
    assert len(refs) == 5 and all(len(r.landmark_window) == 5 and 1.05 <= r.scale < 1.15 for r in refs)


def test_thirty_fps_time_mapping():
    plan = plan_inference(100, 25, fps=30.0)  # 1 s of audio at 25 fps -> 30 output frames at 30 fps
    assert len(plan) == 30 and plan.fps == 30.0
    assert plan.audio_index[:7].tolist() == [0, 1, 2, 3, 3, 4, 5]  # round(k * 25 / 30), half up (2.5 -> 3)
    assert plan.audio_index[-1] == 24 and plan.audio_index.max() <= 24
    assert plan.source_index.tolist() == list(range(30))
    assert plan.audio_windows[0].tolist() == [0, 0, 0, 1, 2]
    assert len(plan_inference(100, 25, fps=25.0)) == 25


# ---- paste-back -------------------------------------------------------------------------------------
def test_official_paste_changes_only_the_top_3r_rows():
    frame = np.full((300, 260, 3), 50, np.uint8)
    lm = face()
    box = crop_box(lm, 32)  # (68, 172, 65, 145)
    generated = np.full((104, 80, 3), 200 / 255.0, np.float32)
    out = paste_official(frame, generated, box)
    changed = np.nonzero(np.any(out != frame, axis=2))
    assert (changed[0].min(), changed[0].max() + 1, changed[1].min(), changed[1].max() + 1) == (68, 68 + 96, 65, 145)
    assert official_paste_region(box) == (68, 164, 65, 145)  # rows [y29 - r, y29 + 2r), cols x33 -+ 1.25r
    assert np.all(out[68:164, 65:145] == 200)


def test_feathered_paste_is_the_face_on_the_mouth_the_frame_outside_and_continuous():
    rng = np.random.default_rng(0)
    frame = np.full((300, 260, 3), 50, np.uint8)
    box = crop_box(face(), 32)  # y29 = 100, x33 = 105, r = 32
    generated = np.full((104, 80, 3), 200, np.uint8)
    out = paste_dinet_feathered(frame, generated, box, 8)
    top, bottom, left, right = box
    # mouth box in frame pixels: rows [y29, y29 + 2r), cols [x33 - r, x33 + r)
    assert np.all(out[100:164, 73:137] == 200)
    outside = np.ones(frame.shape[:2], bool)
    outside[top:bottom, left:right] = False
    assert np.array_equal(out[outside], frame[outside])
    # at the seam the first pixel inside barely differs from the frame (the hard paste jumps by 150)
    assert np.abs(out[top, left:right].astype(int) - 50).max() <= 3
    assert np.abs(out[bottom - 1, left:right].astype(int) - 50).max() <= 3
    assert np.abs(out[top:bottom, left].astype(int) - 50).max() <= 3
    assert np.abs(out[top:bottom, right - 1].astype(int) - 50).max() <= 3
    # and everywhere the image changes gradually: no jump larger than the smoothstep's steepest slope
    steps = max(np.abs(np.diff(out.astype(int), axis=a)).max() for a in (0, 1))
    assert steps <= 150 * 1.5 / 8 + 2
    hard = paste_official(frame, generated, box)
    assert max(np.abs(np.diff(hard.astype(int), axis=a)).max() for a in (0, 1)) == 150
    # with a textured frame the mouth box is still exactly the face
    textured = rng.integers(0, 256, frame.shape, dtype=np.uint8)
    assert np.all(paste_dinet_feathered(textured, generated, box, 8)[100:164, 73:137] == 200)
    alpha = dinet_feather_mask(box, 8)
    assert alpha.shape == (104, 80) and np.all(alpha[32:96, 8:72] == 1) and alpha.max() == 1
