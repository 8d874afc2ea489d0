"""Face parsing with ParseNet and the masks GPEN and VideoReTalking make from it, as their code makes them.

Official code matched (OpenTalker/video-retalking d32e8e5; tests/fixtures/parsenet/make_fixture.py runs it):

- ``third_part/GPEN/face_parse/face_parsing.py: FaceParse.process(im, masks)``: ``cv2.resize(im, (512, 512))``
  (bilinear, uint8), BGR -> RGB, ``img / 255. * 2 - 1`` in float64 rounded to float32, ParseNet, ``argmax`` over
  the 19 classes, each class painted with its value of ``masks`` (uint8). Here: ``image_to_input``,
  ``parse_logits``, ``parse_labels``, ``labels_to_mask``, ``parse_mask``.
- ``third_part/GPEN/gpen_face_enhancer.py: FaceEnhancement.process``: the face mask ``mm`` (skin, nose, glasses,
  eyes, brows, mouth and lips; no ears, hair, hat, neck or cloth: ``FACE_MASK_VALUES``), divided by 255, then
  ``mask_postprocess``: the 20-pixel border zeroed, two 101 x 101 Gaussian blurs with sigma 11, float32. The
  official ``mask_postprocess`` zeroes the border of the array it is given, in place, and the caller goes on using
  that array as its sharp mask (``mask_sharp``), so ``face_masks`` returns the sharp mask with its border zeroed
  too. (yangxy/GPEN's own ``face_enhancement.py`` uses a 26-pixel border and sigma 4; the values here are
  VideoReTalking's.)
- ``inference.py`` (the post-processing loop): the mouth mask ``mm`` (mouth, upper and lower lip = 255:
  ``MOUTH_MASK_VALUES``) of the face box ``restored_img[y1:y2, x1:x2]``, resized back to the box with
  ``cv2.resize`` and written, divided by 255, into a **uint8** array (``np.zeros_like(restored_img)``): the cast
  truncates, so only pixels whose resized value is exactly 255 become 1 and the bilinear edge is dropped.
  ``mouth_mask`` returns that 0/1 mask.

OpenCV's resize and Gaussian blur are ``imageops.resize_linear_u8`` (bit-exact) and ``imageops.gaussian_blur``
(float64 rounding apart). Images are ``(H, W, 3) uint8`` in BGR order as the official code reads them with cv2;
``channels='rgb'`` takes the toolkit's RGB frames (the flip is then skipped, nothing else changes).
"""
from __future__ import annotations

import numpy as np
import torch

from .imageops import gaussian_blur, resize_linear_u8
from .network import ParseNet

PARSE_SIZE = 512  # FaceParse.size
CLASS_NAMES = ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
               "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")  # FaceParse's list
# the mm lists of gpen_face_enhancer.py (face) and inference.py (mouth): the uint8 value painted for each class
FACE_MASK_VALUES = (0, 255, 255, 255, 255, 255, 255, 255, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0)
MOUTH_MASK_VALUES = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0)
MASK_BORDER = 20  # mask_postprocess(thres=20)
BLUR_KSIZE = 101
BLUR_SIGMA = 11.0


def _as_rgb(images: np.ndarray, channels: str) -> np.ndarray:
    """The colour axis in RGB order (FaceParse.img2tensor's ``img[..., ::-1]`` for BGR)."""
    if channels == "bgr":
        return images[..., ::-1]
    if channels == "rgb":
        return images
    raise ValueError(f"channels must be 'bgr' or 'rgb', got {channels!r}")


def _image_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (H, W, 3) or (B, H, W, 3), got {images.dtype} {images.shape}")
    return images


def image_to_input(images: np.ndarray, size: int = PARSE_SIZE, channels: str = "bgr") -> torch.Tensor:
    """``(H, W, 3)`` or ``(B, H, W, 3)`` uint8 -> float32 ``(B, 3, size, size)`` RGB in [-1, 1], as FaceParse.process:
    cv2's bilinear resize to ``size`` (uint8), RGB, ``x / 255 * 2 - 1`` in float64 and one rounding to float32."""
    batch = _image_batch(images)
    resized = np.stack([resize_linear_u8(image, (size, size)) for image in batch])
    rgb = _as_rgb(resized, channels).astype(np.float64) / 255.0 * 2 - 1
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).float()


def _parameter(net: torch.nn.Module) -> torch.Tensor:
    return next(net.parameters())


def parse_logits(net: ParseNet, images: np.ndarray, size: int = PARSE_SIZE, channels: str = "bgr") -> torch.Tensor:
    """ParseNet's parsing logits ``(B, 19, size, size)`` of uint8 images, in the network's dtype and on its device
    (the float32 input is cast to them: float64 runs see the official input exactly)."""
    reference = _parameter(net)
    x = image_to_input(images, size, channels).to(device=reference.device, dtype=reference.dtype)
    with torch.no_grad():
        return net(x)[0]


def parse_labels(net: ParseNet, images: np.ndarray, size: int = PARSE_SIZE, channels: str = "bgr") -> np.ndarray:
    """``(B, size, size)`` int64 class of each pixel (argmax of the logits; ties go to the lower class, as
    ``torch.argmax``)."""
    return parse_logits(net, images, size, channels).argmax(dim=1).cpu().numpy()


def labels_to_mask(labels: np.ndarray, values: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """Each label painted with ``values[label]`` as uint8 (FaceParse.tenor2mask); labels without a value give 0."""
    table = np.zeros(max(len(values), int(np.max(labels, initial=0)) + 1), dtype=np.float64)
    table[:len(values)] = values
    return table[labels].astype(np.uint8)


def parse_mask(net: ParseNet, images: np.ndarray, values: tuple[int, ...] | np.ndarray, size: int = PARSE_SIZE,
               channels: str = "bgr") -> np.ndarray:
    """``FaceParse.process(im, values)``: ``(B, size, size)`` uint8 masks."""
    return labels_to_mask(parse_labels(net, images, size, channels), values)


def mask_postprocess(mask: np.ndarray, border: int | None = None, ksize: int | None = None,
                     sigma: float | None = None) -> np.ndarray:
    """``FaceEnhancement.mask_postprocess`` on a copy of a 2-D mask: ``border`` pixels zeroed on every side (20), two
    ``ksize`` x ``ksize`` Gaussian blurs with ``sigma`` (101, 11) in float64, float32 out."""
    border = MASK_BORDER if border is None else border
    ksize = BLUR_KSIZE if ksize is None else ksize
    sigma = BLUR_SIGMA if sigma is None else sigma
    soft = zero_border(mask, border)
    soft = gaussian_blur(gaussian_blur(soft, ksize, sigma), ksize, sigma)
    return soft.astype(np.float32)


def zero_border(mask: np.ndarray, border: int) -> np.ndarray:
    """A float64 copy of ``mask`` with ``border`` pixels set to 0 on each side (``mask[:t] = 0; mask[-t:] = 0``...;
    ``border`` 0 changes nothing)."""
    out = np.array(mask, dtype=np.float64)
    if border > 0:
        out[:border], out[-border:], out[:, :border], out[:, -border:] = 0, 0, 0, 0
    return out


def face_masks(net: ParseNet, face: np.ndarray, channels: str = "bgr") -> tuple[np.ndarray, np.ndarray]:
    """The face masks of GPEN's FaceEnhancement.process for one aligned face crop (512 x 512 there): ``(sharp,
    soft)``, both ``(512, 512)``: ``sharp`` float64 in {0, 1} (skin, nose, glasses, eyes, brows, mouth, lips) with
    its 20-pixel border zeroed (the official mask_postprocess does that to its input in place), ``soft`` =
    ``mask_postprocess`` (float32)."""
    if np.asarray(face).ndim != 3:
        raise ValueError(f"face_masks takes one (H, W, 3) uint8 image, got shape {np.shape(face)}")
    sharp = parse_mask(net, face, FACE_MASK_VALUES, channels=channels)[0] / 255.0
    return zero_border(sharp, MASK_BORDER), mask_postprocess(sharp)


def mouth_mask(net: ParseNet, crop: np.ndarray, channels: str = "bgr") -> np.ndarray:
    """VideoReTalking's mouth mask of a face box ``(h, w, 3)`` uint8: ``(h, w)`` uint8 in {0, 1}, 1 where the
    parsed mouth and lips (255 at 512 x 512), resized back to the box, are exactly 255 (the uint8 cast of
    ``inference.py`` drops the resized edge)."""
    if np.asarray(crop).ndim != 3:
        raise ValueError(f"mouth_mask takes one (h, w, 3) uint8 image, got shape {np.shape(crop)}")
    height, width = crop.shape[:2]
    mask = parse_mask(net, crop, MOUTH_MASK_VALUES, channels=channels)[0]
    return (resize_linear_u8(mask, (height, width)) == 255).astype(np.uint8)
