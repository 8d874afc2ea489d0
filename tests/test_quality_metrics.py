"""SSIM presets against scikit-image, CPBD against the cpbd package's published values, LMD definitions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage.metrics import structural_similarity

from talkingface.errors import ConfigError
from talkingface.evaluation.cpbd import CPBDMetric, cpbd, cpbd_frames
from talkingface.evaluation.lmd import LMDMetric, lmd
from talkingface.evaluation.metric import VideoSample
from talkingface.evaluation.ssim import SSIM_PRESETS, SSIMMetric, grey_uint8, ssim, ssim_plane
from talkingface.registry import METRICS

RNG = np.random.default_rng(0)
CAMERA = data.camera()  # (512, 512) uint8


def noisy_pair(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    sigmas = {2: (1, 1), 3: (1, 1, 0), 4: (0, 1, 1, 0)}[len(shape)]  # smooth in space only
    a = ndimage.gaussian_filter(RNG.integers(0, 256, shape).astype(float), sigmas)
    a = np.clip(a * 3 - 255, 0, 255).astype(np.uint8)
    b = np.clip(a + RNG.normal(0, 20, shape), 0, 255).astype(np.uint8)
    return a, b


def sample(frames: np.ndarray) -> VideoSample:
    video = VideoSample(Path("in-memory.mp4"))
    video.__dict__["frames"] = frames  # fills the cached property: nothing is decoded
    return video


# ---------------------------------------------------------------- SSIM

@pytest.mark.numerics
def test_ssim_plane_matches_skimage_for_each_preset_window():
    a, b = noisy_pair((80, 72))
    skimage_kwargs = {
        "skimage": {},
        "talklip": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255},
    }
    for name, kwargs in skimage_kwargs.items():
        ours = ssim_plane(a, b, SSIM_PRESETS[name])
        assert abs(ours - structural_similarity(a, b, **kwargs)) < 1e-6
        assert 0.1 < ours < 0.99


@pytest.mark.numerics
def test_talklip_preset_is_colour_ssim_on_96_pixel_crops():
    a, b = noisy_pair((2, 96, 96, 3))
    expected = np.mean([structural_similarity(x, y, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=255) for x, y in zip(a, b)])
    assert abs(ssim(a, b, "talklip") - expected) < 1e-6


@pytest.mark.numerics
def test_skimage_preset_is_grey_ssim_at_224_pixels_with_default_window():
    a, b = noisy_pair((224, 224, 3))
    expected = structural_similarity(grey_uint8(a), grey_uint8(b))
    assert abs(ssim(a, b, "skimage") - expected) < 1e-6
    assert ssim(a, b, "skimage") != pytest.approx(ssim(a, b, "talklip"), abs=1e-3)


def test_ssim_resizes_other_sizes_and_is_one_for_identical_frames():
    a, b = noisy_pair((3, 120, 100, 3))
    assert ssim(a, a, "skimage") == pytest.approx(1.0)
    assert ssim(a, a, "talklip") == pytest.approx(1.0)
    assert ssim(a, b, "talklip") < 0.99
    with pytest.raises(ConfigError):
        ssim(a, b, "wang")
    with pytest.raises(ValueError):
        ssim(a, b[:2])


def test_grey_is_bt601_luma_rounded():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 150, 200]]], np.uint8)
    assert grey_uint8(rgb).tolist() == [[76, 150, 29, 141]]


def test_ssim_metric_reads_the_preset_from_the_config():
    a, b = noisy_pair((2, 96, 96, 3))
    default = SSIMMetric().score(sample(a), sample(b[:1]))
    talklip = SSIMMetric({"evaluate": {"ssim_preset": "talklip"}}).score(sample(a), sample(b))
    assert default["ssim"] == pytest.approx(ssim(a[:1], b[:1], "skimage"))
    assert talklip["ssim"] == pytest.approx(ssim(a, b, "talklip"))
    assert METRICS.get("ssim") is SSIMMetric


# ---------------------------------------------------------------- CPBD

@pytest.mark.numerics
def test_cpbd_reproduces_the_cpbd_package_values():
    assert cpbd(CAMERA) == pytest.approx(0.7482, abs=5e-5)  # cpbd-py312 on skimage's camera
    assert cpbd(CAMERA[::4, ::4]) == pytest.approx(0.8213, abs=5e-5)  # its 128x128 nearest downsample
    # its sigma 1.5 blur; the blur procedure is not recorded, this one (truncated to uint8) gives 0.10859
    blurred = ndimage.gaussian_filter(CAMERA.astype(float), 1.5).astype(np.uint8)
    assert cpbd(blurred) == pytest.approx(0.1086, abs=5e-5)


def cpbd_blurred(image: np.ndarray, sigmas: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)) -> list[float]:
    return [cpbd(np.rint(ndimage.gaussian_filter(image.astype(float), s)).astype(np.uint8)) for s in sigmas]


def test_cpbd_falls_with_blur_and_stays_in_range():
    camera = cpbd_blurred(CAMERA[:256, :256])
    assert camera[0] > camera[1] > camera[2] > camera[3] >= 0.0 and camera[0] <= 1.0, camera
    squares = np.kron((np.indices((8, 8)).sum(axis=0) % 2) * 180 + 40, np.ones((16, 16)))
    # a little noise: the thinned Sobel map has no pixel on an ideal step, which is two equal columns wide
    checker = np.clip(squares + RNG.normal(0, 3, squares.shape), 0, 255).astype(np.uint8)
    checkered = cpbd_blurred(checker)
    assert checkered[0] > 0.5 and checkered[0] > checkered[1] >= checkered[2] >= checkered[3] >= 0.0, checkered


def test_cpbd_needs_uint8_grey_and_64_pixels():
    assert cpbd(CAMERA[:63, :300]) == 0.0
    with pytest.raises(ValueError):
        cpbd(CAMERA / 255.0)
    with pytest.raises(ValueError):
        cpbd(np.stack([CAMERA] * 3, axis=-1))


def test_cpbd_metric_is_reference_free_mean_over_frames():
    frames = np.stack([np.stack([CAMERA[:128, :128]] * 3, -1), np.stack([CAMERA[128:256, :128]] * 3, -1)])
    metric = CPBDMetric({"evaluate": {"cpbd_stride": 2}})
    assert CPBDMetric.needs_reference is False
    assert metric.score(sample(frames), None)["cpbd"] == pytest.approx(cpbd(CAMERA[:128, :128]))
    assert np.mean(cpbd_frames(frames)) == pytest.approx((cpbd(CAMERA[:128, :128]) + cpbd(CAMERA[128:256, :128])) / 2)


# ---------------------------------------------------------------- LMD

def random_landmarks(frames: int = 4) -> np.ndarray:
    return RNG.uniform(50, 200, (frames, 68, 2))


def test_lmd_zero_for_identical_and_translation_only_counts_without_centring():
    a = random_landmarks()
    assert lmd(a, a) == 0.0
    shifted = a + np.array([3.0, 4.0])
    assert lmd(a, shifted) == pytest.approx(0.0, abs=1e-9)
    assert lmd(a, shifted, centre=False) == pytest.approx(5.0)
    assert lmd(a, shifted, centre=False, norm="l1") == pytest.approx(3.5)


def test_lmd_scale_about_the_mouth_centre():
    a = random_landmarks()
    mouth = a[:, 48:68]
    centre = mouth.mean(axis=1, keepdims=True)
    b = a.copy()
    b[:, 48:68] = centre + 1.5 * (mouth - centre)
    expected = 0.5 * np.linalg.norm(mouth - centre, axis=-1).mean()
    assert lmd(a, b) == pytest.approx(expected)


def test_lmd_region_selection():
    a = random_landmarks()
    b = a.copy()
    b[:, :48] += 10.0  # jaw, brows, eyes and nose move; the mouth does not
    assert lmd(a, b, region="mouth", centre=False) == 0.0
    assert lmd(a, b, region="face", centre=False) == pytest.approx(10 * np.sqrt(2) * 48 / 68)
    with pytest.raises(ConfigError):
        lmd(a, b, region="eyes")
    with pytest.raises(ValueError):
        lmd(a, b[:2])


def test_lmd_metric_on_the_astronaut_with_dlib():
    photo = data.astronaut()
    frames = np.stack([photo[40:296, 100:356], photo[42:298, 103:359]])
    moved = np.stack([photo[40:296, 90:346]] * 2)  # the face 10 px further right
    metric = LMDMetric()
    if metric.unavailable():
        pytest.skip(metric.unavailable())
    assert metric.score(sample(frames), sample(frames)) == {"lmd": 0.0}
    centred = metric.score(sample(frames), sample(moved))["lmd"]
    assert 0.0 < centred < 3.0
    assert LMDMetric.higher_is_better == {"lmd": False}
