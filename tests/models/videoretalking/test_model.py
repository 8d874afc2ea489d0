"""The registered ``videoretalking`` model: face boxes, training windows, each stage's step, the sync-weight switch,
releases from a folder, and dubbing with the shared loop (faceless frames, the mel chunk each frame hears)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import talkingface
from talkingface.audio import mel_chunks, melspectrogram
from talkingface.data import ClipStore
from talkingface.errors import ConfigError
from talkingface.media import VideoWriter, probe_video, read_audio, read_frames
from talkingface.models.videoretalking.data import (BROW_RAISE, LNetWindows, SyncWindows, face_box, frame_box,
                                                    lower_half_masked, sync_faces)
from talkingface.models.videoretalking.dubbing import Synthesis
from talkingface.models.videoretalking.releases import RELEASES

SIZE, FRAMES = 128, 40
TINY = {"lnet": {"base_nc": 8, "max_nc": 64, "num_res_blocks": 1, "descriptor_nc": 32}, "syncnet_width": 0.0625,
        "discriminator_width": 0.0625, "enet_width": 0.03125, "enet": False, "reference": "frame", "enhance": "none",
        "vgg19_weights": "/nonexistent/vgg19.pth", "pads": [0, 4, 0, 0]}


def landmarks_at(dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """68 points spread over a 60 x 70 face at (34 + dx, 30 + dy) of a 128-px frame (only the box rule reads them)."""
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([64 + dx + 30 * np.cos(angles), 65 + dy + 35 * np.sin(angles)], axis=1)


def make_store(root: Path, faceless: int | None = 12, frames: int = FRAMES) -> ClipStore:
    """One clip of ``frames``: a moving gradient, ring landmarks, random (80, 16) mel chunks; ``faceless`` has none."""
    rng = np.random.default_rng(0)
    clip = root / "clips" / "a"
    (clip / "features").mkdir(parents=True)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    with VideoWriter(clip / "video.mp4", 25) as writer:
        for t in range(frames):
            writer.write(np.stack([(x * 2 + t) % 256, (y * 2) % 256, np.full_like(x, 60 + t)], -1).astype(np.uint8))
    landmarks = np.stack([landmarks_at(t % 3, 0) for t in range(frames)])
    if faceless is not None:
        landmarks[faceless] = np.nan
    np.save(clip / "landmarks.npy", landmarks.astype(np.float32))
    np.save(clip / "features" / "mel.npy", rng.normal(size=(frames, 80, 16)).astype(np.float32))
    (clip / "meta.json").write_text(json.dumps({"fps": 25, "frames": frames, "width": SIZE, "height": SIZE}))
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "train.txt").write_text("a\n")
    return ClipStore(root)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ClipStore:
    return make_store(tmp_path_factory.mktemp("vrt_store"))


@pytest.fixture(scope="module")
def short_store(tmp_path_factory) -> ClipStore:
    """12 frames (frame 5 faceless): D-Net's pairs run ReconNet on every frame."""
    return make_store(tmp_path_factory.mktemp("vrt_short_store"), faceless=5, frames=12)


def build(tmp: Path | None = None, **options) -> talkingface.TalkingFaceModel:
    extra = {"saved_dir": str(tmp / "saved")} if tmp else {}
    return talkingface.build_model("videoretalking", {"videoretalking": {**TINY, **options}, "progress": False,
                                                       "train": {"batch_size": 2, "log_every_steps": 1}, **extra})


# ---- face boxes and windows ------------------------------------------------------------------------------------
def test_face_box_is_the_landmark_box_raised_padded_clipped_and_averaged():
    points = landmarks_at()
    top, bottom, left, right = frame_box(points, (SIZE, SIZE), (1, 4, 2, 3))
    height = 70.0
    assert top == pytest.approx(30 - BROW_RAISE * height - 1) and bottom == pytest.approx(100 + 4)
    assert left == pytest.approx(34 - 2) and right == pytest.approx(94 + 3)
    assert frame_box(points + [0, 40], (SIZE, SIZE), (0, 20, 0, 0))[1] == SIZE  # clipped to the frame
    shifted = np.stack([points, points + [4, 0], points + [8, 0]])
    valid = np.array([True, True, False])
    box = face_box(shifted, valid, np.array([0, 1, 2]), (SIZE, SIZE), (0, 0, 0, 0))
    assert box[2:] == (36, 96)  # the mean over the valid frames of the window only (0 and 1)
    assert face_box(shifted, np.zeros(3, bool), np.array([0, 1]), (SIZE, SIZE), (0, 0, 0, 0)) is None


def test_lnet_windows_are_wav2lips(store: ClipStore, tmp_path: Path):
    data = LNetWindows(store, "train", 96, pads=(0, 4, 0, 0), seed=3, cache_dir=tmp_path)
    starts = data.clips[0].starts
    assert not any(s <= 12 < s + 5 for s in starts)  # no window holds the faceless frame
    crops = np.load(data.clips[0].crops_path)[0]
    mels = np.load(store.root / "clips" / "a" / "features" / "mel.npy")
    seen_offsets = set()
    for index in range(len(data)):
        item = data[index]
        start = int(data.index[index][1])
        assert item["target"].shape == (3, 5, 96, 96) and item["inputs"].shape == (6, 5, 96, 96)
        # BGR in [0, 1]: channel 0 of the target is the crops' blue channel
        assert torch.equal(item["target"][0], torch.from_numpy(crops[start:start + 5, :, :, 2] / np.float32(255)))
        masked, reference = item["inputs"][:3], item["inputs"][3:]
        assert masked[:, :, 48:].abs().sum() == 0 and torch.equal(masked[:, :, :48], item["target"][:, :, :48])
        ref_start = [s for s in range(FRAMES - 4) if np.array_equal(
            crops[s:s + 5, :, :, 2] / np.float32(255), reference[0].numpy())]
        assert ref_start and abs(ref_start[0] - start) >= 5
        seen_offsets.add(ref_start[0] - start)
        assert torch.equal(item["mels"][:, 0], torch.from_numpy(mels[start:start + 5]))
        assert torch.equal(item["sync_mel"][0], torch.from_numpy(mels[start]))
    assert len(seen_offsets) > 3  # references drawn, not fixed
    again = LNetWindows(store, "train", 96, pads=(0, 4, 0, 0), seed=3, cache_dir=tmp_path)
    assert all(torch.equal(again[3][k], data[3][k]) for k in data[3])  # seeded


def test_sync_windows_pair_each_window_with_its_own_or_a_far_chunk(store: ClipStore, tmp_path: Path):
    data = SyncWindows(store, "train", 96, pads=(0, 4, 0, 0), seed=1, cache_dir=tmp_path)
    mels = np.load(store.root / "clips" / "a" / "features" / "mel.npy")
    labels = []
    for index in range(len(data)):
        item = data[index]
        start = int(data.index[index][1])
        row = [t for t in range(FRAMES) if np.array_equal(mels[t], item["mel"][0].numpy())][0]
        labels.append(float(item["label"]))
        assert (row == start) if item["label"] == 1 else abs(row - start) >= 5
    assert 0.25 < np.mean(labels) < 0.75
    faces = torch.rand(2, 3, 5, 96, 96)
    expert_input = sync_faces(faces)
    assert expert_input.shape == (2, 15, 48, 96) and torch.equal(expert_input[:, 3:6], faces[:, :, 1, 48:])
    assert torch.equal(lower_half_masked(faces)[..., :48, :], faces[..., :48, :])


# ---- stages ----------------------------------------------------------------------------------------------------
def _changed(model, before: dict) -> set[str]:
    return {k.split(".")[0] for k, v in model.state_dict().items()
            if v.is_floating_point() and not torch.equal(v, before[k])}


def release_files(folder: Path) -> tuple[Path, Path]:
    """A checkpoint folder with a random ReconNet (``face3d_pretrain_epoch_20.pth``) and random expression templates,
    and a BFM folder with the stand-in's 3D landmark template: what stabilised references and the dnet stage read."""
    from scipy.io import savemat

    from talkingface.face3d import ReconNet

    checkpoints, bfm = folder / "checkpoints", folder / "bfm"
    checkpoints.mkdir(parents=True, exist_ok=True)
    bfm.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"net_recon": ReconNet().state_dict()}, checkpoints / "face3d_pretrain_epoch_20.pth")
    rng = np.random.default_rng(0)
    savemat(str(checkpoints / "expression.mat"), {"expression_center": rng.normal(size=(1, 64)),
                                                   "expression_mouth": rng.normal(size=(1, 64))})
    with np.load(Path(__file__).parent / "fixtures" / "official_stabilise.npz") as fixture:
        savemat(str(bfm / "similarity_Lm3D_all.mat"), {"lm": fixture["lm"]})
    return checkpoints, bfm


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> tuple[Path, Path]:
    return release_files(tmp_path_factory.mktemp("vrt_releases"))


@pytest.mark.parametrize("stage,trained", [("syncnet", {"syncnet"}), ("lnet", {"lnet", "quality"}),
                                           ("enet", {"enet", "enet_quality"}), ("dnet", {"dnet"})])
def test_each_stage_trains_only_its_networks(stage: str, trained: set[str], store: ClipStore, short_store: ClipStore,
                                            releases, tmp_path: Path):
    checkpoints, bfm = releases
    store = short_store if stage == "dnet" else store
    model = build(tmp_path, checkpoint_dir=str(checkpoints), bfm_folder=str(bfm), dnet_pairs_per_clip=2)
    model.enter_stage(stage, None)
    model.train()
    model.optimizers = model.configure_optimizers()["optimizers"]
    data = model.build_dataset(store, "train")
    batch = torch.utils.data.default_collate([data[0]] if stage == "dnet" else [data[0], data[1]])  # D-Net: 101 GFLOP
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scalars = model.training_step(batch, 0)
    assert np.isfinite(list(scalars.values())).all()
    assert _changed(model, before) == trained
    if stage == "enet":
        assert batch["target"].shape[-1] == 4 * 96  # E-Net trains at 384 on the frozen L-Net


def test_sync_weight_switches_on_when_the_sync_loss_falls(tmp_path: Path):
    model = build(tmp_path, syncnet_wt_start=0.0, syncnet_wt=0.03, sync_switch_loss=0.75)
    for loss in (1.2, 1.1, 0.9):
        model._update_sync_weight(loss)
    assert model.sync_weight == 0.0
    for _ in range(30):
        model._update_sync_weight(0.5)
    assert model.sync_weight == 0.03


def test_recipe_and_size_errors():
    with pytest.raises(ConfigError, match="unknown stage"):
        build(recipe=["lnet", "dnet2"]).recipe()
    with pytest.raises(ConfigError, match="lnet_size"):
        build(lnet_size=64)
    with pytest.raises(ConfigError, match="max_nc"):
        build(lnet={"base_nc": 8, "max_nc": 32, "num_res_blocks": 1, "descriptor_nc": 32})


def test_release_dir_loads_each_file_present_and_names_the_missing(tmp_path: Path, caplog):
    source, target = build(), build()
    torch.save(source.release_example(RELEASES[2]), tmp_path / "DNet.pt")  # only D-Net present
    with caplog.at_level(logging.WARNING):
        model = build(release_dir=str(tmp_path))
    assert all(torch.equal(v, source.dnet.state_dict()[k]) for k, v in model.dnet.state_dict().items())
    assert "LNet.pth not found" in caplog.text and "ENet.pth not found" in caplog.text
    assert not all(torch.equal(v, target.dnet.state_dict()[k]) for k, v in model.dnet.state_dict().items())


def test_enet_runs_the_models_lnet_without_owning_its_weights():
    model = build(enet=True)
    assert model.enet.low_res is model.lnet
    assert not any(k.startswith("low_res") for k in model.enet.state_dict())
    with torch.no_grad():
        out = Synthesis(model.lnet, model.enet, 96).eval()(torch.randn(1, 1, 80, 16), torch.rand(1, 6, 384, 384))
    assert out.shape == (1, 3, 384, 384)


# ---- dubbing ---------------------------------------------------------------------------------------------------
def test_dub_passes_faceless_frames_and_feeds_each_frame_its_mel_chunk(tmp_path: Path, monkeypatch):
    """A 30 fps source with a faceless stretch: those frames come back as they were, the others are dubbed, and the
    generator hears, for output frame m, the mel chunk of 25 fps frame round(m / 30 * 25) (native fps kept)."""
    from test_preprocess import face_video
    from talkingface.models.videoretalking.dubbing import VideoReTalkingDubbing

    video = face_video(tmp_path / "take.2.v1.mp4", seconds=1.2, fps=30, blank=(0.4, 0.6))  # dots: the release's
    model = build(tmp_path)                                                                 # split('.')[1] fails
    heard: list[torch.Tensor] = []
    cropped: list[int] = []
    forward, crop = Synthesis.forward, VideoReTalkingDubbing.crop

    def spy_forward(self, mel, faces):
        heard.append(mel.clone())
        return forward(self, mel, faces)

    def spy_crop(self, frame, source, index):
        result = crop(self, frame, source, index)
        if result is not None:
            cropped.append(index)
        return result

    monkeypatch.setattr(Synthesis, "forward", spy_forward)
    monkeypatch.setattr(VideoReTalkingDubbing, "crop", spy_crop)
    out = model.generate(video, video, tmp_path / "out.v2.mp4", seed=0)
    info, source = probe_video(out), probe_video(video)
    assert (info.width, info.height, round(info.fps)) == (source.width, source.height, 30)
    dubbed, original = read_frames(out).astype(np.float32), read_frames(video).astype(np.float32)
    count = min(len(dubbed), len(original))
    passed = [m for m in range(count) if m not in cropped]
    assert all(0.35 < m / 30 < 0.65 for m in passed) and len(passed) >= 4
    assert len(cropped) >= count - 8
    pass_diff = np.abs(dubbed[passed] - original[passed]).mean()
    face_diff = np.abs(dubbed[cropped[:count]] - original[cropped[:count]]).mean()
    assert pass_diff < 1.5 and face_diff > 3 * pass_diff
    wav = read_audio(video, 16000)
    chunks = mel_chunks(melspectrogram(wav), int(round(len(wav) / 16000 * 25)))
    fed = torch.cat(heard)[:, 0]
    expected = torch.from_numpy(chunks[np.floor(np.array(cropped) / 30 * 25 + 0.5).astype(int)])
    assert fed.shape == expected.shape and torch.equal(fed, expected)


def test_dub_with_stabilised_references_runs_dnet_on_each_dubbed_frame(tmp_path: Path, releases, monkeypatch):
    """reference: stabilised, in-process with random weights: ReconNet's semantics in one pass, D-Net's face for
    every dubbed frame (in output order, ping-pong included), pasted back and cropped at the frame's box."""
    from test_preprocess import face_video
    from talkingface.models.videoretalking import stabilise

    checkpoints, bfm = releases
    from test_preprocess import face_image

    wide = np.pad(face_image(), ((0, 0), (40, 40), (0, 0)), mode="edge")  # 224 x 304: (width, height) matters
    video = face_video(tmp_path / "src.mp4", seconds=0.12, fps=25, audio_seconds=0.2, frame=wide)  # ping-pong
    model = build(tmp_path, reference="stabilised", checkpoint_dir=str(checkpoints), bfm_folder=str(bfm))
    calls: list[int] = []
    stabilised = stabilise.Stabiliser.stabilised

    def spy(self, state, frame, index):
        calls.append(index)
        return stabilised(self, state, frame, index)

    monkeypatch.setattr(stabilise.Stabiliser, "stabilised", spy)
    out = model.generate(video, tmp_path / "src.mp4", tmp_path / "out.mp4", seed=0)
    from talkingface.dubbing import ping_pong

    count = probe_video(out).frame_count
    assert count > 3 and calls == ping_pong(3, count).tolist()  # e.g. 0, 1, 2, 2, 1
    with pytest.raises(talkingface.errors.CheckpointError, match="expression.mat not found"):
        build(tmp_path, reference="stabilised", checkpoint_dir=str(tmp_path / "none"),
              bfm_folder=str(bfm)).generate(video, video, tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()


def test_demo_pair_config_is_layered_over_the_release_defaults():
    config = talkingface.load_config("videoretalking", "demo")
    assert config["config_sources"][-1].endswith("configs/model/videoretalking/demo.yaml")
    opts = config["videoretalking"]
    assert list(opts["recipe"]) == ["lnet"] and opts["reference"] == "frame" and opts["enet"] is False
    assert opts["lnet_size"] == 96 and opts["disc_wt"] == 0.07  # the rest stays the release's / Wav2Lip's
    assert config["evaluate"]["control_audio_shift"] == 1.5 and "mouth_sync" in config["evaluate"]["metrics"]
    hdtf = talkingface.load_config("videoretalking", "hdtf")
    assert list(hdtf["videoretalking"]["recipe"]) == ["syncnet", "lnet", "enet", "dnet"]
    assert hdtf["videoretalking"]["reference"] == "stabilised" and dict(hdtf["videoretalking"]["lnet"])["base_nc"] == 64


def test_dnet_pairs_are_cut_once_and_driven_by_the_targets_own_window(short_store: ClipStore, releases,
                                                                      tmp_path: Path, monkeypatch):
    from talkingface.models.videoretalking import stabilise
    from talkingface.models.videoretalking.semantics import driving_batch

    checkpoints, bfm = releases
    store = short_store
    model = build(tmp_path, checkpoint_dir=str(checkpoints), bfm_folder=str(bfm), dnet_pairs_per_clip=3)
    model.enter_stage("dnet", None)
    analysed = []
    analyse = stabilise.Stabiliser.analyse
    monkeypatch.setattr(stabilise.Stabiliser, "analyse", lambda self, *a: analysed.append(1) or analyse(self, *a))
    data = model.build_dataset(store, "train")  # the store's cache may hold the clip already (the stage test)
    first = len(analysed)
    again = model.build_dataset(store, "train")
    assert first <= 1 and len(analysed) == first and len(data) == 3  # the second build reads the cache
    crops_path, semantics, faces = data.clips[0]
    assert 5 not in faces and np.load(crops_path, mmap_mode="r").shape == (12, 256, 256, 3)
    crops = np.load(crops_path)
    for index in range(len(data)):
        item = again[index]
        target = [f for f in faces if torch.equal(stabilise.dnet_image(crops[f:f + 1])[0], item["target"])]
        assert target and torch.equal(item["driving"], driving_batch(semantics, [target[0]])[0])
        assert not torch.equal(item["source"], item["target"])
    without = build(tmp_path, checkpoint_dir=str(tmp_path / "none"), bfm_folder=str(bfm))
    without.enter_stage("dnet", None)
    with pytest.raises(talkingface.errors.CheckpointError, match="face3d_pretrain_epoch_20.pth not found"):
        without.build_dataset(store, "train")


@pytest.mark.parametrize("blend", ["native", "official"])
def test_paste_runs_the_releases_post_processing(blend: str, monkeypatch):
    """The pasted face, GFPGAN's frame with only ParseNet's mouth kept, then the face blend over the original frame:
    ``native`` leaves every pixel outside the grown face box bit for bit (HD stays sharp), ``official`` resamples the
    whole frame at 512 (the release's blur). Networks replaced by stand-ins: this checks the wiring."""
    from talkingface.face import parsenet
    from talkingface.models.videoretalking import enhance
    from talkingface.models.videoretalking.dubbing import VideoReTalkingDubbing

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    box = (300, 500, 600, 800)
    face = np.full((96, 96, 3), 0.5, np.float32)
    restored_value, face_value = 10, 250
    monkeypatch.setattr(enhance, "restore_frame", lambda bgr, nets: np.full_like(bgr, restored_value))
    mouth = np.zeros((200, 200), np.uint8)
    mouth[100:180, 30:170] = 1
    monkeypatch.setattr(parsenet, "mouth_mask", lambda net, crop, channels: mouth)
    face_mask = np.zeros(frame.shape[:2], np.float32)
    face_mask[320:480, 620:780] = 1

    def face_blend(bgr, nets, bbox):
        assert tuple(bbox) == box
        # the frame handed to the face blend: GFPGAN's pixels blended in at the mouth, the pasted face (0.5 -> 128)
        # away from it. (The uniform stand-in has only a DC level, which the official 10 levels at 512 mix over the
        # whole frame: there the mouth stays near 128.)
        assert (np.abs(bgr[305, 605].astype(int) - 128) <= 6).all()
        if blend == "native":
            assert (bgr[300 + 140, 600 + 100] < 118).all()
        return enhance.FaceBlend(np.full_like(bgr, face_value), face_mask, face_mask, face_mask)

    monkeypatch.setattr(enhance, "face_blend", face_blend)
    model = build()
    hooks = VideoReTalkingDubbing(model, enhance="none", blend=blend)
    hooks.nets = enhance.EnhancementNets(detector=object(), gpen=None, gfpgan=object(), parsenet=object())
    out = hooks.paste(frame, face, box)
    assert out.shape == frame.shape and out.dtype == np.uint8
    centre = out[390:410, 690:710].astype(float).mean()  # inside the face mask: the blended face
    assert abs(centre - face_value) <= 2 if blend == "native" else centre > 200  # official: mixed at 512
    outside = np.ones(frame.shape[:2], bool)
    outside[300 - 25:500 + 25, 600 - 25:800 + 25] = False
    if blend == "native":
        assert np.array_equal(out[outside], frame[outside])
    else:
        assert np.abs(out[outside].astype(int) - frame[outside]).mean() > 20  # noise resampled at 512 and back


def test_enet_identity_loss_uses_arcface_when_present_and_warns_when_not(store: ClipStore, tmp_path: Path, caplog):
    from talkingface.face.arcface import iresnet18

    torch.manual_seed(0)
    torch.save(iresnet18().state_dict(), tmp_path / "r18.pth")
    for weights, expect in ((str(tmp_path / "r18.pth"), True), (str(tmp_path / "absent.pth"), False)):
        model = build(tmp_path, arcface_weights=weights, arcface_network="r18", lamb_identity=0.4)
        model.enter_stage("enet", None)
        model.train()
        model.optimizers = model.configure_optimizers()["optimizers"]
        data = model.build_dataset(store, "train")
        with caplog.at_level(logging.WARNING):
            scalars = model.training_step(torch.utils.data.default_collate([data[0]]), 0)
        assert (scalars["identity"] > 0) == expect
        assert ("ArcFace weights missing" in caplog.text) == (not expect)
        # ArcFace is not part of the checkpoint: only the model's own networks are
        assert {k.split(".")[0] for k in model.state_dict()} == {"lnet", "enet", "dnet", "syncnet", "quality",
                                                                 "enet_quality"}
