"""The generator building blocks of DINet and LawDNet, named as in the official state dicts.

DINet's blocks are ``conv -> BatchNorm -> ReLU`` and pre-activation residual blocks. The release uses
vacancy's ``SynchronizedBatchNorm{1,2}d``; outside multi-GPU training it calls ``F.batch_norm`` exactly
like ``nn.BatchNorm{1,2}d`` (eps 1e-5, momentum 0.1), with the same keys (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``). LawDNet removed BatchNorm (``norm=False``:
``conv -> ReLU``, residual blocks ``conv1 -> ReLU -> conv2`` plus the input), except that its
``ResBlock1d`` still registers the two unused norms (``unused_norms=True``: their keys are in the release).
Registration order matters for the key order only; the attribute names give the keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ConvNormReLU(nn.Module):
    """``conv -> norm -> relu`` with the official attribute names (``conv``, ``norm``, ``relu``); no ``norm``
    attribute (and no norm keys) without BatchNorm."""

    def __init__(self, conv: nn.Module, norm: nn.Module | None):
        super().__init__()
        self.conv = conv
        if norm is not None:
            self.norm = norm
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if hasattr(self, "norm"):
            out = self.norm(out)
        return self.relu(out)


class SameBlock1d(_ConvNormReLU):
    """Conv1d (stride 1) -> BatchNorm1d (``norm``) -> ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, padding: int, norm: bool = True):
        super().__init__(nn.Conv1d(in_features, out_features, kernel_size=kernel_size, padding=padding),
                         nn.BatchNorm1d(out_features) if norm else None)


class SameBlock2d(_ConvNormReLU):
    """Conv2d (stride 1) -> BatchNorm2d (``norm``) -> ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1,
                 norm: bool = True):
        super().__init__(nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding),
                         nn.BatchNorm2d(out_features) if norm else None)


class DownBlock1d(_ConvNormReLU):
    """Conv1d with stride 2 -> BatchNorm1d (``norm``) -> ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, padding: int, norm: bool = True):
        super().__init__(nn.Conv1d(in_features, out_features, kernel_size=kernel_size, padding=padding, stride=2),
                         nn.BatchNorm1d(out_features) if norm else None)


class DownBlock2d(_ConvNormReLU):
    """Conv2d with stride 2 -> BatchNorm2d (``norm``) -> ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1,
                 stride: int = 2, norm: bool = True):
        super().__init__(nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding,
                                   stride=stride), nn.BatchNorm2d(out_features) if norm else None)


class UpBlock2d(_ConvNormReLU):
    """Nearest ×2 upsampling -> Conv2d -> BatchNorm2d (``norm``) -> ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1,
                 norm: bool = True):
        super().__init__(nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding),
                         nn.BatchNorm2d(out_features) if norm else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2))


class _ResBlock(nn.Module):
    """Residual block. With ``norm`` (DINet), pre-activation: BN1 -> ReLU -> conv1 -> BN2 -> ReLU -> conv2;
    without (LawDNet): conv1 -> ReLU -> conv2; plus the input either way.

    ``channel_conv`` (a 1×1 projection of the skip) exists only when ``in_features != out_features``,
    which never happens in these models; ``norm2`` has ``in_features`` channels as in the releases.
    ``unused_norms`` registers the norms without using them (LawDNet's ``ResBlock1d``).
    """

    conv_type: type[nn.Module]
    norm_type: type[nn.Module]

    def __init__(self, in_features: int, out_features: int, kernel_size: int, padding: int, norm: bool = True,
                 unused_norms: bool = False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.pre_activation = norm
        self.conv1 = self.conv_type(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = self.conv_type(in_features, out_features, kernel_size=kernel_size, padding=padding)
        if out_features != in_features:
            self.channel_conv = self.conv_type(in_features, out_features, 1)
        if norm or unused_norms:
            self.norm1 = self.norm_type(in_features)
            self.norm2 = self.norm_type(in_features)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_activation:
            out = self.conv1(self.relu(self.norm1(x)))
            out = self.conv2(self.relu(self.norm2(out)))
        else:
            out = self.conv2(self.relu(self.conv1(x)))
        skip = self.channel_conv(x) if self.in_features != self.out_features else x
        return out + skip


class ResBlock1d(_ResBlock):
    """1-D residual block (Conv1d, BatchNorm1d)."""

    conv_type = nn.Conv1d
    norm_type = nn.BatchNorm1d


class ResBlock2d(_ResBlock):
    """2-D residual block (Conv2d, BatchNorm2d)."""

    conv_type = nn.Conv2d
    norm_type = nn.BatchNorm2d
