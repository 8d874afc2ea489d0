"""AudioDVP's renders and masks at the neural renderer's resolution (docs/audiodvp.md, "Renders and masks"):

- ``render``: the face (all triangles, ``build_nfr_dataset.py``'s ``render/``) or its lower part (``lower=True``,
  ``reenact.py``), colours clamped to [0, 1] as AudioDVP's renderer does;
- ``mouth_mask``: ``networks.MouthMask``, the union of the lower face rendered with expression component 0 at -8
  (mouth wide open, the frame's other components kept) and with every component 0, dilated by a 3x3 square
  ``dilate`` times (``cv2.dilate(mask, ones(3, 3), iterations=4)``);
- ``composite_alpha``: ``comp.py``'s blend weight, the mask eroded by a 3x3 square ``erode`` times and blurred by
  OpenCV's 5x5 Gaussian whose sigma is 4 (``comp.py`` passes ``cv2.BORDER_DEFAULT``, which is 4, as sigmaX).

The face is projected as the fitting does at the convention's own size (256 for AudioDVP) and the screen
coordinates are scaled to ``size``, so a smaller renderer sees the same picture at a lower resolution; the mask
iterations are given at 256 pixels and scaled likewise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...face3d import ParametricFaceModel, render
from ...face3d.fitting import screen_vertices

OPEN_JAW = -8.0  # networks.MouthMask: delta[0, 0, 0] = -8
BLUR_SIZE = 5  # comp.py: cv2.GaussianBlur(mask, (5, 5), cv2.BORDER_DEFAULT)
BLUR_SIGMA = 4.0  # ... whose third argument, sigmaX, is cv2.BORDER_DEFAULT == 4


def scaled_iterations(iterations: int, size: int, reference: int = 256) -> int:
    """A morphology iteration count given at ``reference`` pixels, at ``size`` pixels (at least 1 when non-zero)."""
    if iterations <= 0:
        return 0
    return max(1, int(round(iterations * size / reference)))


def dilate(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """``cv2.dilate`` with a 3x3 square, ``iterations`` times, of (B, H, W) masks: a (2k+1)-square maximum, pixels
    outside the image ignored (OpenCV's default border for morphology)."""
    if iterations <= 0:
        return mask
    size = 2 * iterations + 1
    return F.max_pool2d(mask.unsqueeze(1), size, stride=1, padding=iterations).squeeze(1)


def erode(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """``cv2.erode`` with a 3x3 square, ``iterations`` times: a (2k+1)-square minimum, the outside ignored."""
    if iterations <= 0:
        return mask
    return -dilate(-mask, iterations)


def gaussian_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """OpenCV's ``getGaussianKernel(size, sigma)`` for sigma > 0, float64: exp(-x^2 / 2 sigma^2), normalised."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    return kernel / kernel.sum()


def gaussian_blur(mask: torch.Tensor, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) with OpenCV's default border (reflect-101)."""
    kernel = gaussian_kernel(size, sigma).to(mask)
    pad = size // 2
    x = F.pad(mask.unsqueeze(1), (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, size))
    x = F.conv2d(x, kernel.view(1, 1, size, 1))
    return x.squeeze(1)


class FaceRenderer:
    """Renders of a face model's coefficients (B, 257, AudioDVP's order) at ``size`` x ``size``."""

    def __init__(self, model: ParametricFaceModel, size: int, mask_dilate: int = 4, mask_erode: int = 9):
        if not model.has("mouth_face_buf"):
            raise ValueError(f"{model.model_path} has no mouth triangles: AudioDVP needs its data.mat "
                             f"(talkingface face3d build-bfm --convention audiodvp)")
        self.model = model
        self.size = int(size)
        self.dilate_iterations = scaled_iterations(mask_dilate, self.size)
        self.erode_iterations = scaled_iterations(mask_erode, self.size)
        self.exp = model.coeff_slices["exp"]

    def faces(self, lower: bool) -> torch.Tensor:
        return self.model.tensor("mouth_face_buf" if lower else "face_buf")

    def render(self, coeffs: torch.Tensor, lower: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image (B, S, S, 3) in [0, 1], covered (B, S, S) bool)`` of ``coeffs`` (B, 257)."""
        vertices, _, colour, _ = self.model.compute_for_render(coeffs)
        screen = screen_vertices(self.model, vertices, self.model.image_size)
        if self.size != self.model.image_size:
            scale = self.size / self.model.image_size
            screen = torch.cat([screen[..., :2] * scale, screen[..., 2:]], dim=-1)
        image, covered = render(screen, self.faces(lower), colour, self.size, self.size)
        return image.clamp(0.0, 1.0), covered

    def mouth_mask(self, coeffs: torch.Tensor) -> torch.Tensor:
        """(B, S, S) float 0/1: ``networks.MouthMask`` of each frame, dilated."""
        opened = coeffs.clone()
        opened[:, self.exp.start] = OPEN_JAW
        closed = coeffs.clone()
        closed[:, self.exp] = 0.0
        _, open_mask = self.render(opened, lower=True)
        _, close_mask = self.render(closed, lower=True)
        union = (open_mask | close_mask).to(coeffs.dtype)
        return dilate(union, self.dilate_iterations)

    def composite_alpha(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, S, S) in [0, 1]: ``comp.py``'s blend weight of the target's mouth mask."""
        return gaussian_blur(erode(mask, self.erode_iterations)).clamp(0.0, 1.0)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats as torchvision's ``save_image`` stores them (x 255 + 0.5, clamped, truncated)."""
    return (image * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def window_offsets(window: int) -> range:
    """Frame offsets of a centred temporal window of odd length ``window`` (7: -3 .. 3)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"the temporal window must be odd and positive, got {window}")
    half = window // 2
    return range(-half, half + 1)

