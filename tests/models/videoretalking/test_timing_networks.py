"""``videoretalking.timing_networks`` (``talkingface/models/videoretalking/timing.py``): random networks in the
release's layouts for timing, a RetinaFace that reports the tracked face, and ``benchmark_config`` running every
stage the hooks declare. Narrow GPEN / GFPGAN / ParseNet / D-Net keep the dub short (the layouts are swapped through
``timing.RELEASE_LAYOUTS``, the code path is the setting's own); RetinaFace and ReconNet are the released layouts."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import talkingface
from talkingface.face.retinaface import RetinaFace, RetinaFaceDetector
from talkingface.models.videoretalking import timing
from talkingface.models.videoretalking.timing import KnownFaceRetinaFace, known_face, known_faces
from talkingface.profiling import StageRecorder

TINY = {"lnet": {"base_nc": 8, "max_nc": 64, "num_res_blocks": 1, "descriptor_nc": 32}, "syncnet_width": 0.0625,
        "discriminator_width": 0.0625, "enet": False, "vgg19_weights": "/nonexistent/vgg19.pth", "pads": [0, 4, 0, 0]}
DECLARED = ("stabilise", "reference enhancement", "frame enhancement", "blend")


def face_landmarks(x: float, y: float, scale: float = 1.0) -> np.ndarray:
    """68 points of a face about 60 x 70 px at (x, y): a ring, with the eyes, nose tip and mouth corners placed."""
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([30 * np.cos(angles), 35 * np.sin(angles)], axis=1)
    points[36:42], points[42:48] = [-14, -10], [14, -10]
    points[30], points[48], points[54] = [0, 5], [-11, 18], [11, 18]
    return points * scale + [x, y]


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    torch.manual_seed(0)
    return RetinaFaceDetector.from_network(KnownFaceRetinaFace(RetinaFace().eval()))


@pytest.fixture
def narrow(monkeypatch):
    """GPEN at 1/64 width, GFPGAN at 1/32 (64 style features, 2 MLP layers), a 2-channel ParseNet (all at 512, as
    released) and one convolution in RetinaFace-R50's place (its outputs are the known face's whatever it computes),
    for the timing builders."""
    from talkingface.face.parsenet import ParseNet
    from talkingface.restoration.gfpgan import GFPGAN_V13_CONFIG, GFPGANv1Clean
    from talkingface.restoration.gpen import RELEASE_CONFIG, FullGenerator

    layouts = {"gpen": lambda: FullGenerator(**{**RELEASE_CONFIG, "narrow": 1 / 64}),
               "gfpgan": lambda: GFPGANv1Clean(**{**GFPGAN_V13_CONFIG, "num_style_feat": 64, "num_mlp": 2,
                                                  "narrow": 1 / 32}),
               "parsenet": lambda: ParseNet(min_feat_size=512, base_ch=2, res_depth=1, ch_range=(2, 2)),
               "retinaface": lambda: torch.nn.Conv2d(3, 2, 3)}
    for name, build in layouts.items():
        monkeypatch.setitem(timing.RELEASE_LAYOUTS, name, build)


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> dict:
    """``VideoReTalking.benchmark_config`` of a work folder (the stand-in's align_img template written there)."""
    return talkingface.MODELS.get("videoretalking").benchmark_config(tmp_path_factory.mktemp("vrt_bench_work"))


def build(**options) -> talkingface.TalkingFaceModel:
    return talkingface.build_model("videoretalking", {"videoretalking": {**TINY, **options}, "progress": False})


# ---- the known face ------------------------------------------------------------------------------------------------
def test_the_known_face_decodes_through_the_real_post_processing(detector):
    """GPEN's ``detect`` and facexlib's post-processing of the wrapped random network find the known face (box and
    five points within 0.05 px), a shifted face shifted, an image over 1500 px (GPEN shrinks it) at full scale, and
    no face for an image of a size nobody named."""
    from talkingface.models.videoretalking.enhance import facexlib_faces, gpen_faces

    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    landmarks = face_landmarks(60, 50, 0.6)
    box, points = known_face(landmarks)
    for shift in ((0, 0), (9, -5)):
        with known_faces({(96, 128): known_face(landmarks + shift)}):
            for find in (gpen_faces, facexlib_faces):
                found, marks = find(detector, image)
                assert len(found) == 1 and found[0, 4] > 0.97
                assert np.abs(found[0, :4] - (box + [*shift, *shift])).max() < 0.05, find.__name__
                assert np.abs(marks[0] - (points + shift)).max() < 0.05, find.__name__
    assert len(gpen_faces(detector, image)[0]) == 0  # no known face outside the block: none found
    wide = np.zeros((32, 1504, 3), np.uint8)
    far = face_landmarks(1200, 16, 0.3)
    with known_faces({(32, 1504): known_face(far)}):
        for find in (gpen_faces, facexlib_faces):
            found, marks = find(detector, wide)
            assert len(found) == 1 and np.abs(found[0, :4] - known_face(far)[0]).max() < 0.05, find.__name__


# ---- the setting ---------------------------------------------------------------------------------------------------
def test_off_by_default_and_then_todays_behaviour(tmp_path: Path, caplog):
    """Off by default; off, the enhancement reads checkpoint_dir (nothing there: a warning per file, every network
    missing), the stabiliser needs the released files, and a dub with one source frame as the reference (what
    ``benchmark_config`` set before) runs none of the hooks' own stages."""
    from test_preprocess import face_video
    assert talkingface.load_config("videoretalking")["videoretalking"]["timing_networks"] is False
    with caplog.at_level(logging.WARNING):
        model = build(checkpoint_dir=str(tmp_path), bfm_folder=str(tmp_path))
    hooks = model.dubbing_hooks()
    assert not hooks.timing and "timing_networks" not in caplog.text
    with caplog.at_level(logging.WARNING):
        nets = hooks._load_enhancement()
    assert (nets.detector, nets.gpen, nets.gfpgan, nets.parsenet) == (None,) * 4 and "GPEN-BFR-512.pth" in caplog.text
    with pytest.raises(talkingface.errors.CheckpointError, match="face3d_pretrain_epoch_20.pth not found"):
        hooks._build_stabiliser()
    video = face_video(tmp_path / "src.mp4", seconds=0.08, fps=25, audio_seconds=0.2)
    with torch.no_grad(), StageRecorder() as recorder:
        model.generate(video, video, tmp_path / "out.mp4", seed=0, reference="frame")
    assert recorder.stats["generator"].calls > 0 and not set(DECLARED) & set(recorder.stats)


def test_on_the_networks_are_random_even_beside_released_files(tmp_path: Path, narrow, offline, caplog):
    """With the setting on, files in checkpoint_dir are not read (an unreadable GPEN-BFR-512.pth there is named as
    not used) and every network is built seeded: two builds give the same weights."""
    (tmp_path / "GPEN-BFR-512.pth").write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        model = build(checkpoint_dir=str(tmp_path), timing_networks=True,
                      bfm_folder=offline["videoretalking"]["bfm_folder"])
    assert "for timing only" in caplog.text and "NOT used: GPEN-BFR-512.pth" in caplog.text
    hooks = model.dubbing_hooks()
    state = torch.random.get_rng_state()
    nets, again = hooks._load_enhancement(), hooks._load_enhancement()
    assert torch.equal(torch.random.get_rng_state(), state)  # seeded aside: the caller's random state is kept
    assert isinstance(nets.detector.network, KnownFaceRetinaFace)
    assert all(torch.equal(a, b) for a, b in zip(nets.gpen.state_dict().values(), again.gpen.state_dict().values()))
    stabiliser = hooks._build_stabiliser()
    assert stabiliser.dnet is model.dnet and stabiliser.template.shape == (64,)


def test_benchmark_config_dubs_every_declared_stage_on_the_tracked_faces(tmp_path: Path, narrow, offline,
                                                                         monkeypatch):
    """``benchmark_config``'s settings (stabilised references, enhance auto, timing networks, the stand-in's
    template) on a short dub: every stage the hooks declare runs, and every RetinaFace detection is the known face of
    the tracked landmarks, of the frame for the frame (GFPGAN's and the blend's) and of the 256 crop for the
    reference (GPEN's), within a pixel."""
    from test_preprocess import face_image, face_video
    from talkingface.models.videoretalking import enhance, stabilise
    from talkingface.models.videoretalking.dubbing import VideoReTalkingDubbing
    from talkingface.models.videoretalking.networks import DNet

    config = offline["videoretalking"]
    assert (config["reference"], config["enhance"], config["timing_networks"]) == ("stabilised", "auto", True)
    template = Path(config["bfm_folder"]) / "similarity_Lm3D_all.mat"
    written = template.stat().st_mtime_ns
    talkingface.MODELS.get("videoretalking").benchmark_config(Path(config["bfm_folder"]).parent)
    assert template.stat().st_mtime_ns == written  # written once
    wide = np.pad(face_image(), ((0, 0), (40, 40), (0, 0)), mode="edge")  # 224 x 304
    video = face_video(tmp_path / "src.mp4", seconds=0.08, fps=25, audio_seconds=0.2, frame=wide)
    model = build(**config, checkpoint_dir=str(tmp_path / "none"))
    torch.manual_seed(0)
    model.dnet = DNet(descriptor_nc=16, warp_base_nc=4, warp_max_nc=16, edit_base_nc=4, edit_max_nc=16).eval()
    current: dict[str, np.ndarray] = {}
    seen: list[tuple[tuple[int, int], np.ndarray, np.ndarray]] = []
    tracked: list[np.ndarray] = []
    paste, reference, analyse = VideoReTalkingDubbing.paste, VideoReTalkingDubbing._reference, stabilise.Stabiliser.analyse

    def spy_paste(self, frame, face, info):
        current["frame"] = info.landmarks
        return paste(self, frame, face, info)

    def spy_reference(self, frame, index, box):
        current["crop"] = self.state.landmarks[index]
        return reference(self, frame, index, box)

    def spy_detect(find):
        def spy(detector, image):
            boxes, points = find(detector, image)
            landmarks = current["crop" if image.shape[:2] == (256, 256) else "frame"]
            seen.append((image.shape[:2], boxes, known_face(landmarks)[0]))
            return boxes, points
        return spy

    monkeypatch.setattr(VideoReTalkingDubbing, "paste", spy_paste)
    monkeypatch.setattr(VideoReTalkingDubbing, "_reference", spy_reference)
    monkeypatch.setattr(stabilise.Stabiliser, "analyse", lambda self, frames, lm, *a: tracked.append(lm) or
                        analyse(self, frames, lm, *a))
    for name in ("gpen_faces", "facexlib_faces"):
        monkeypatch.setattr(enhance, name, spy_detect(getattr(enhance, name)))
    with torch.no_grad(), StageRecorder() as recorder:
        model.generate(video, video, tmp_path / "out.mp4", seed=0)
    calls = {name: recorder.stats[name].calls if name in recorder.stats else 0 for name in DECLARED}
    assert all(count > 0 for count in calls.values()), calls
    sizes = [size for size, _, _ in seen]
    assert sizes.count((256, 256)) == calls["reference enhancement"] and sizes.count((224, 304)) == 2 * sizes.count(
        (256, 256))
    for size, boxes, expected in seen:
        assert len(boxes) == 1 and np.abs(boxes[0, :4] - expected).max() < 1.0, (size, boxes, expected)
    assert any(np.array_equal(current["frame"], row) for row in tracked[0])  # the loop's own tracked landmarks
