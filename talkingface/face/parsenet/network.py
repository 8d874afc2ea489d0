"""ParseNet, the face parser of PSFR-GAN that GPEN and VideoReTalking run for their face and mouth masks.

The same state-dict layout as the official ``ParseNet`` (chaofengc/PSFRGAN ``models/parse_model.py`` and
``models/blocks.py``, vendored by yangxy/GPEN ``face_parse/`` and OpenTalker/video-retalking
``third_part/GPEN/face_parse/``), so ``ParseNet-latest.pth`` (a raw state dict) loads strictly, and the same
computations in the same order (reflection padding, convolution, normalisation, activation), so outputs equal the
official ones to float64 rounding (``tests/test_parsenet.py``).

The constructor's defaults are the release's (``FaceParse.load_model``: ``ParseNet(512, 512, 32, 64, 19,
norm_type='bn', relu_type='LeakyReLU', ch_range=[32, 256])``, ``res_depth`` 10): 238 state-dict entries,
21,303,254 parameters. The official class's own defaults (128, 128, PReLU, ``ch_range=[32, 512]``) differ; pass
them explicitly to build that variant. The network is fully convolutional: any input whose sides are multiples of
``2 ** down_steps`` (16 for the release) runs, so tests use 64 x 64 inputs through the release's layers.

Layout, for ``in_size / min_feat_size = 2 ** n`` (n = 4 for the release):

- ``encoder.0``: 3x3 conv (bias) from RGB to ``base_ch``; ``encoder.1..n``: residual blocks that halve the
  resolution, channels doubled and clipped to ``ch_range``;
- ``body.0..res_depth-1``: residual blocks at the lowest resolution; the forward adds the encoder's output to the
  body's (``feat + body(feat)``);
- ``decoder.0..n-1``: residual blocks that double the resolution (nearest neighbour, then conv), channels halved;
- ``out_img_conv`` (3 channels) and ``out_mask_conv`` (``parsing_ch`` = 19 classes): 3x3 convs with bias.

A residual block is ``shortcut(x) + conv2(conv1(x))``: ``conv1`` = conv, norm, activation; ``conv2`` = conv, norm;
the shortcut is the identity when neither the size nor the channels change, otherwise a 3x3 conv with bias (strided
or after the upsampling, like the branch). A downsampling block strides its ``conv2``, an upsampling block
upsamples before its ``conv1``. Every conv is 3x3 after a reflection pad of 1; convs followed by BatchNorm have no
bias. ``forward`` returns ``(parsing logits (B, 19, H, W), image (B, 3, H, W))`` as the official one does.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NORM_TYPES = ("bn", "in", "gn", "none")
RELU_TYPES = ("relu", "leakyrelu", "prelu", "selu", "none")
SCALES = ("none", "down", "up")


class NormLayer(nn.Module):
    """``norm_type`` 'bn' (BatchNorm2d, affine), 'in' (InstanceNorm2d, no affine), 'gn' (32 groups) or 'none'.
    The official class keeps the layer as ``norm``, hence keys ``*.norm.norm.weight``."""

    def __init__(self, channels: int, norm_type: str = "bn") -> None:
        super().__init__()
        norm_type = norm_type.lower()
        if norm_type not in NORM_TYPES:
            raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")
        self.norm_type = norm_type
        if norm_type == "bn":
            self.norm = nn.BatchNorm2d(channels, affine=True)
        elif norm_type == "in":
            self.norm = nn.InstanceNorm2d(channels, affine=False)
        elif norm_type == "gn":
            self.norm = nn.GroupNorm(32, channels, affine=True)
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ReluLayer(nn.Module):
    """``relu_type`` 'ReLU', 'LeakyReLU' (slope 0.2), 'PReLU' (one slope per channel, key ``*.relu.func.weight``),
    'SELU' or 'none' (case-insensitive, as the official class)."""

    def __init__(self, channels: int, relu_type: str = "relu") -> None:
        super().__init__()
        relu_type = relu_type.lower()
        if relu_type not in RELU_TYPES:
            raise ValueError(f"relu_type must be one of {RELU_TYPES} (any case), got {relu_type!r}")
        self.relu_type = relu_type
        if relu_type == "relu":
            self.func = nn.ReLU()
        elif relu_type == "leakyrelu":
            self.func = nn.LeakyReLU(0.2)
        elif relu_type == "prelu":
            self.func = nn.PReLU(channels)
        elif relu_type == "selu":
            self.func = nn.SELU()
        else:
            self.func = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x)


class ConvLayer(nn.Module):
    """[nearest x2 if ``scale='up'``] -> reflection pad -> conv (stride 2 if ``scale='down'``) -> norm -> activation.
    Keys ``conv2d.weight`` (``conv2d.bias`` unless BatchNorm follows), then the activation's, then the norm's."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, scale: str = "none",
                 norm_type: str = "none", relu_type: str = "none") -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.scale = scale
        self.padding = kernel_size // 2  # the official int(np.ceil((kernel_size - 1.) / 2))
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, 2 if scale == "down" else 1,
                                bias=norm_type.lower() != "bn")
        self.relu = ReluLayer(out_channels, relu_type)
        self.norm = NormLayer(out_channels, norm_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == "up":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.pad(x, (self.padding,) * 4, mode="reflect")
        return self.relu(self.norm(self.conv2d(x)))


class ResidualBlock(nn.Module):
    """``shortcut(x) + conv2(conv1(x))``; ``shortcut_func`` is a conv only when the scale or the channels change."""

    def __init__(self, c_in: int, c_out: int, relu_type: str = "prelu", norm_type: str = "bn",
                 scale: str = "none") -> None:
        super().__init__()
        if scale == "none" and c_in == c_out:
            self.shortcut_func: nn.Module = nn.Identity()
        else:
            self.shortcut_func = ConvLayer(c_in, c_out, 3, scale)
        first, second = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(c_in, c_out, 3, first, norm_type=norm_type, relu_type=relu_type)
        self.conv2 = ConvLayer(c_out, c_out, 3, second, norm_type=norm_type, relu_type="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_func(x) + self.conv2(self.conv1(x))


def _log2_steps(size: int, min_feat_size: int) -> int:
    """The official ``int(np.log2(size // min_feat_size))``."""
    ratio = size // min_feat_size
    if ratio < 1:
        raise ValueError(f"size {size} is smaller than min_feat_size {min_feat_size}")
    return ratio.bit_length() - 1


class ParseNet(nn.Module):
    """Face parsing network of PSFR-GAN / GPEN: RGB in [-1, 1] (B, 3, H, W) -> (logits (B, parsing_ch, H, W),
    image (B, 3, H, W)). Defaults build the ``ParseNet-latest.pth`` release (module docstring)."""

    def __init__(self, in_size: int = 512, out_size: int = 512, min_feat_size: int = 32, base_ch: int = 64,
                 parsing_ch: int = 19, res_depth: int = 10, relu_type: str = "LeakyReLU", norm_type: str = "bn",
                 ch_range: Sequence[int] = (32, 256)) -> None:
        super().__init__()
        self.res_depth = res_depth
        min_ch, max_ch = ch_range

        def clip(channels: int) -> int:
            return max(min_ch, min(channels, max_ch))

        min_feat_size = min(in_size, min_feat_size)
        down_steps = _log2_steps(in_size, min_feat_size)
        up_steps = _log2_steps(out_size, min_feat_size)
        self.down_steps, self.up_steps = down_steps, up_steps
        acts = {"norm_type": norm_type, "relu_type": relu_type}

        encoder: list[nn.Module] = [ConvLayer(3, base_ch, 3)]
        head = base_ch
        for _ in range(down_steps):
            encoder.append(ResidualBlock(clip(head), clip(head * 2), scale="down", **acts))
            head *= 2
        body = [ResidualBlock(clip(head), clip(head), **acts) for _ in range(res_depth)]
        decoder: list[nn.Module] = []
        for _ in range(up_steps):
            decoder.append(ResidualBlock(clip(head), clip(head // 2), scale="up", **acts))
            head //= 2
        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*body)
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(head), 3)
        self.out_mask_conv = ConvLayer(clip(head), parsing_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ParseNet expects (B, 3, H, W) RGB in [-1, 1], got {tuple(x.shape)}")
        multiple = 2 ** self.down_steps
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(f"ParseNet: height and width must be multiples of {multiple}, got {tuple(x.shape[2:])}")
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)
