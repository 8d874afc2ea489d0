"""AudioDVP's pipeline pieces: the renders and masks of build_nfr_dataset.py / comp.py, the renderer's temporal
windows, the expressions of a dub's audio window and the paste-back into the full frame."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from talkingface.face3d import ParametricFaceModel, write_standin_bfm
from talkingface.models.audiodvp import rendering
from talkingface.models.audiodvp.data import NfrClip, RendererWindows, temporal_indices
from talkingface.dubbing.paste import paste_portrait


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> rendering.FaceRenderer:
    folder = tmp_path_factory.mktemp("bfm")
    write_standin_bfm(folder, vertices=300, audiodvp=True)
    return rendering.FaceRenderer(ParametricFaceModel(folder, convention="audiodvp"), 64)


def iterated_3x3(mask: np.ndarray, iterations: int, op) -> np.ndarray:
    """cv2.dilate / cv2.erode with a 3x3 square, ``iterations`` times, on one (H, W) mask: each pass takes ``op``
    over the pixel's in-image 3x3 neighbourhood (OpenCV's default morphology border ignores the outside)."""
    out = mask.astype(np.float64)
    for _ in range(iterations):
        padded = np.pad(out, 1, constant_values=np.nan)
        shifted = [padded[1 + dy:1 + dy + out.shape[0], 1 + dx:1 + dx + out.shape[1]]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        out = op(np.stack(shifted), axis=0)
    return out


def test_dilate_and_erode_are_opencvs_iterated_3x3_squares():
    rng = np.random.default_rng(0)
    mask = (rng.random((20, 24)) < 0.08).astype(np.float32)
    mask[0, :5] = 1  # at the border: the outside must not count
    solid = np.ones((20, 24), np.float32)
    solid[10, 12] = 0
    for k in (1, 2, 4):
        ours = rendering.dilate(torch.from_numpy(mask)[None], k)[0].numpy()
        assert np.array_equal(ours, iterated_3x3(mask, k, np.nanmax)), k
        eroded = rendering.erode(torch.from_numpy(solid)[None], k)[0].numpy()
        assert np.array_equal(eroded, iterated_3x3(solid, k, np.nanmin)), k
    # the border is ignored, not zero: an all-ones mask does not erode from its edges (zero padding would)
    assert rendering.erode(torch.ones(1, 8, 8), 3).min() == 1
    # a different neighbourhood (k + 1 iterations) is not the same
    assert not np.array_equal(rendering.dilate(torch.from_numpy(mask)[None], 2)[0].numpy(),
                              iterated_3x3(mask, 3, np.nanmax))


def test_blur_is_comp_pys_5x5_gaussian_with_sigma_4():
    """comp.py calls ``cv2.GaussianBlur(mask, (5, 5), cv2.BORDER_DEFAULT)``: the third argument is sigmaX, and
    BORDER_DEFAULT is 4; OpenCV's kernel is exp(-x^2 / (2 sigma^2)) normalised, borders reflect-101."""
    x = np.arange(5) - 2.0
    kernel = np.exp(-x * x / 32.0)
    kernel /= kernel.sum()
    assert np.allclose(rendering.gaussian_kernel().numpy(), kernel, rtol=0, atol=1e-15)
    # sigma 0 (what the call meant) would give OpenCV's 0.3 * ((5 - 1) * 0.5 - 1) + 0.8 = 1.1: far sharper
    sharp = np.exp(-x * x / (2 * 1.1 ** 2))
    assert abs(kernel[2] - sharp[2] / sharp.sum()) > 0.1
    image = np.zeros((9, 9))
    image[0, 4] = 1.0  # on the border row: reflect-101 mirrors row 1 onto row -1, not row 0
    blurred = rendering.gaussian_blur(torch.from_numpy(image)[None])[0].numpy()
    expected = np.zeros_like(image)
    padded = np.pad(image, 2, mode="reflect")
    for r in range(9):
        for c in range(9):
            expected[r, c] = (np.outer(kernel, kernel) * padded[r:r + 5, c:c + 5]).sum()
    assert np.allclose(blurred, expected, rtol=0, atol=1e-12)


def test_mouth_mask_is_the_dilated_union_of_the_open_and_closed_lower_face(faces):
    coeffs = torch.zeros(1, faces.model.num_coeffs, dtype=torch.float64)
    coeffs[0, faces.exp.start + 1] = 0.5  # another component, kept in the open render, zeroed in the closed one
    mask = faces.mouth_mask(coeffs)[0].numpy()
    opened, closed = coeffs.clone(), torch.zeros_like(coeffs)
    opened[0, faces.exp.start] = rendering.OPEN_JAW
    union = faces.render(opened, lower=True)[1][0].numpy() | faces.render(closed, lower=True)[1][0].numpy()
    assert np.array_equal(mask, iterated_3x3(union, faces.dilate_iterations, np.nanmax))
    closed_only = faces.render(closed, lower=True)[1][0].numpy()
    assert (union & ~closed_only).sum() > 10  # the open jaw adds pixels the closed one lacks (not vacuous)
    full = faces.render(coeffs)[1][0].numpy()
    assert closed_only.sum() < full.sum()  # the lower face is a part of the face
    alpha = faces.composite_alpha(faces.mouth_mask(coeffs))[0].numpy()
    assert alpha.max() <= 1 and alpha.min() >= 0 and (alpha > 0).sum() < (mask > 0).sum()  # eroded before the blur


def test_renders_at_a_smaller_size_are_the_256_picture_scaled(faces):
    """The renderer's size scales the screen, it does not crop it: the covered share of the image is the same at
    64 and 256 within the edge pixels."""
    coeffs = torch.zeros(1, faces.model.num_coeffs)
    big = rendering.FaceRenderer(faces.model, 256)
    small_share = faces.render(coeffs)[1].float().mean().item()
    big_share = big.render(coeffs)[1].float().mean().item()
    assert abs(small_share - big_share) < 0.02 and small_share > 0.1
    assert big.dilate_iterations == 4 and big.erode_iterations == 9 and faces.dilate_iterations == 1


def test_renderer_windows_pad_with_zeros_and_flip_renders_and_target_together(tmp_path: Path):
    count, size = 5, 8
    rng = np.random.default_rng(1)
    renders = rng.integers(1, 256, (count, size, size, 3), dtype=np.uint8)
    crops = rng.integers(1, 256, (count, size, size, 3), dtype=np.uint8)
    for name, values in (("renders", renders), ("crops", crops)):
        np.save(tmp_path / f"{name}.npy", values)
    clip = NfrClip("c", tmp_path, np.ones(count, bool))
    plain = RendererWindows([clip], window=7, flip=False)
    item = plain[0]
    stacked = item["renders"].reshape(7, 3, size, size)
    assert torch.count_nonzero(stacked[:3]) == 0  # frames -3 .. -1 of frame 0: zero images
    for slot, frame in zip(range(3, 7), range(0, 4)):
        expected = torch.from_numpy(renders[frame]).permute(2, 0, 1).float() / 127.5 - 1
        assert torch.equal(stacked[slot], expected), slot
    assert torch.equal(item["target"], torch.from_numpy(crops[0]).permute(2, 0, 1).float() / 127.5 - 1)
    last = plain[count - 1]["renders"].reshape(7, 3, size, size)
    assert torch.count_nonzero(last[4:]) == 0 and torch.count_nonzero(last[:4]) > 0
    flipping = RendererWindows([clip], window=7, flip=True, seed=3)
    flips = []
    for index in range(count):
        got, ref = flipping[index], plain[index]
        flipped = torch.equal(got["renders"], ref["renders"].flip(-1))
        assert flipped == torch.equal(got["target"], ref["target"].flip(-1))
        assert flipped or torch.equal(got["renders"], ref["renders"])
        flips.append(flipped)
    assert 0 < sum(flips) < count  # both happen (seed 3)
    assert [torch.equal(flipping[i]["target"], RendererWindows([clip], 7, True, seed=3)[i]["target"])
            for i in range(count)] == [True] * count  # seeded: the same draws again


def test_temporal_indices_mark_the_padding():
    frames, inside = temporal_indices(1, 4, 7)
    assert frames.tolist() == [0, 0, 0, 1, 2, 3, 3] and inside.tolist() == [False, False, True, True, True, True,
                                                                             False]


def test_paste_changes_only_the_blended_pixels_inside_the_box():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    face = np.full((16, 16, 3), 0.5, np.float32)
    alpha = np.zeros((16, 16), np.float32)
    alpha[8:12, 4:12] = 1.0
    out = paste_portrait(frame, face, alpha, (-8, 20, 40))  # a box past the left and bottom edges
    changed = np.any(out != frame, axis=-1)
    rows, cols = np.nonzero(changed)
    assert changed.sum() > 50
    # alpha 1 on crop rows 8..11 of 16 -> frame rows 20 + 40 * [8, 12) / 16 = 40 .. 50 (bilinear edges blend)
    assert rows.min() >= 38 and cols.max() < 32 - 8 + 5
    assert np.all(out[~changed] == frame[~changed])
    inner = out[42:48, 6:20]
    assert np.all(np.abs(inner.astype(int) - 128) <= 1)  # alpha 1: the face's 0.5 grey
    outside = paste_portrait(frame, face, alpha, (100, 100, 40))  # entirely outside: nothing changes
    assert np.array_equal(outside, frame)


def test_nfr_cache_holds_the_masked_crops_renders_and_masks_of_build_nfr_dataset(faces, tmp_path: Path):
    """``A = crop & mask``, ``B = render & mask`` and the dilated mouth mask of every frame, streamed to disk."""
    import json

    from talkingface.data.store import Clip
    from talkingface.face3d import crop_portrait, portrait_params
    from talkingface.media import iter_frames
    from talkingface.models.audiodvp.data import nfr_cache

    from test_preprocess import face_video

    root = tmp_path / "clip"
    (root / "face3d").mkdir(parents=True)
    face_video(root / "video.mp4", seconds=0.2)
    frames = list(iter_frames(root / "video.mp4"))
    count = len(frames)
    coeffs = np.zeros((count, faces.model.num_coeffs), np.float32)
    coeffs[:, faces.exp.start] = np.linspace(-3, 1, count)  # the jaw moves (the render changes) ...
    coeffs[:, faces.model.coeff_slices["angle"].start + 1] = np.linspace(-0.3, 0.3, count)  # ... and the head turns
    box = (-20, 10, 260)
    np.save(root / "face3d" / "coeffs.npy", coeffs)
    np.save(root / "face3d" / "crop_params.npy", np.tile(portrait_params(frames[0].shape[1::-1], box), (count, 1)))
    (root / "face3d" / "step.json").write_text(json.dumps({"summary": {"convention": "audiodvp", "crop": "portrait"}}))
    np.save(root / "landmarks.npy", np.zeros((count, 68, 2), np.float32))
    entry = nfr_cache(Clip(root), faces.model, faces, tmp_path / "cache", torch.device("cpu"), batch=2)
    masks, crops, renders = (np.load(entry.path(name)) for name in ("masks", "crops", "renders"))
    with torch.no_grad():
        expected_masks = (faces.mouth_mask(torch.from_numpy(coeffs)) > 0.5).numpy()
        images = rendering.to_uint8(faces.render(torch.from_numpy(coeffs))[0]).numpy()
    assert np.array_equal(masks, expected_masks) and len({m.sum() for m in masks}) > 1
    for index, frame in enumerate(frames):
        keep = expected_masks[index][..., None]
        assert np.array_equal(crops[index], np.where(keep, crop_portrait(frame, box, faces.size), 0)), index
        assert np.array_equal(renders[index], np.where(keep, images[index], 0)), index
    assert nfr_cache(Clip(root), faces.model, faces, tmp_path / "cache", torch.device("cpu")).folder == entry.folder
    assert not list((tmp_path / "cache").rglob(".*"))  # no temporary file left
