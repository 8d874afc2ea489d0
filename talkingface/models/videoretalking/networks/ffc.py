"""L-Net's Fast Fourier Convolution residual blocks (the decoder's ``res{i}``), with the release's layout and numerics.

The release took LaMa's version of the Fast Fourier Convolution (Chi et al., NeurIPS 2020) and conditioned it on
the audio with ADAIN. What L-Net builds, and all this module implements:

- ``FFC(C, C, 3, ratio_gin=0.75, ratio_gout=0.75, padding=1, bias=False, padding_type='reflect')``: the channels are
  split into a local part (the first ``C - int(0.75·C)``) and a global part (the last ``int(0.75·C)``);
  ``local = convl2l(local) + convg2l(global)`` and ``global = convl2g(local) + convg2g(global)``, the three 3×3
  convolutions with reflect padding. No local Fourier unit (``enable_lfu=False``), no gate, stride 1.
- ``convg2g`` = ``SpectralTransform``: 1×1 conv to half the channels, BatchNorm, ReLU; a ``FourierUnit`` on that;
  ``conv2`` (1×1) of the sum of the two.
- ``FourierUnit``: ``rfftn`` over (H, W) with ``norm='ortho'``, real and imaginary parts interleaved per channel
  (``[c0.re, c0.im, c1.re, ...]``), 1×1 conv, BatchNorm, ReLU, back to complex and ``irfftn`` (``norm='ortho'``) to
  the input's size.
- ``FineADAINLama``: FFC, then ADAIN on each part (InstanceNorm + MLP of the audio feature), then LeakyReLU with
  PyTorch's default slope 0.01. (The release's ``FFCADAINResBlocks`` passes L-Net's norm layer, LeakyReLU(0.1) and
  spectral-norm flag positionally into ``FFCResnetBlock``'s ``padding_type`` / ``norm_layer`` / ``activation_layer``
  slots, which it never uses: the FFC blocks get no spectral norm and the 0.01 slope.)
- ``FFCResnetBlock``: two ``FineADAINLama`` and a residual per part, on a tensor split into local/global channels and
  concatenated back (``inline``).
"""
from __future__ import annotations

import torch
from torch import nn

from talkingface.device import at_least_fp32
from talkingface.models.videoretalking.networks.blocks import ADAIN

RATIO_GLOBAL = 0.75  # FineADAINLama's ratio_gin = ratio_gout
FFT_NORM = "ortho"


def global_channels(channels: int, ratio: float = RATIO_GLOBAL) -> int:
    """The number of global (spectral) channels of a split: ``int(channels · ratio)``, the last ones."""
    return int(channels * ratio)


class FourierUnit(nn.Module):
    """1×1 convolution in the 2-D real FFT domain of ``(B, C, H, W)`` (``conv_layer``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1, fft_norm: str = FFT_NORM):
        super().__init__()
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU(inplace=True)
        self.fft_norm = fft_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        x = at_least_fp32(x)  # the FFTs in fp32 under bf16/fp16 autocast (no bf16 complex tensors)
        spectrum = torch.fft.rfftn(x, dim=(-2, -1), norm=self.fft_norm)  # (B, C, H, W//2+1) complex
        parts = torch.stack((spectrum.real, spectrum.imag), dim=2)  # (B, C, 2, H, W//2+1): re/im interleaved
        parts = self.relu(self.bn(self.conv_layer(parts.reshape(batch, -1, *parts.shape[3:]))))
        parts = parts.reshape(batch, -1, 2, *parts.shape[2:])
        spectrum = torch.complex(at_least_fp32(parts[:, :, 0]), at_least_fp32(parts[:, :, 1]))
        return torch.fft.irfftn(spectrum, s=(height, width), dim=(-2, -1), norm=self.fft_norm)


class SpectralTransform(nn.Module):
    """FFC's global-to-global path without the local Fourier unit: ``conv1`` (1×1 to ``out/2``, BN, ReLU), ``fu``,
    ``conv2(x + fu(x))`` (1×1 to ``out``). Stride 1 only (L-Net's)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1, fft_norm: str = FFT_NORM):
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, hidden, kernel_size=1, groups=groups, bias=False),
                                   nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.fu = FourierUnit(hidden, hidden, groups, fft_norm=fft_norm)
        self.conv2 = nn.Conv2d(hidden, out_channels, kernel_size=1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(x + self.fu(x))


def _conv_or_none(in_channels: int, out_channels: int, kernel_size: int, padding: int, bias: bool,
                  padding_type: str) -> nn.Module | None:
    if in_channels == 0 or out_channels == 0:
        return None
    return nn.Conv2d(in_channels, out_channels, kernel_size, 1, padding, bias=bias, padding_mode=padding_type)


class FFC(nn.Module):
    """``(local, global)`` -> ``(local, global)``: ``convl2l``, ``convl2g``, ``convg2l`` (k×k, reflect padding) and the
    spectral ``convg2g``. Stride 1, no gate, no local Fourier unit."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, ratio_gin: float, ratio_gout: float,
                 padding: int = 0, bias: bool = False, padding_type: str = "reflect", fft_norm: str = FFT_NORM):
        super().__init__()
        in_cg, out_cg = global_channels(in_channels, ratio_gin), global_channels(out_channels, ratio_gout)
        in_cl, out_cl = in_channels - in_cg, out_channels - out_cg
        self.ratio_gin, self.ratio_gout = ratio_gin, ratio_gout
        self.global_in_num = in_cg
        self.convl2l = _conv_or_none(in_cl, out_cl, kernel_size, padding, bias, padding_type)
        self.convl2g = _conv_or_none(in_cl, out_cg, kernel_size, padding, bias, padding_type)
        self.convg2l = _conv_or_none(in_cg, out_cl, kernel_size, padding, bias, padding_type)
        self.convg2g = None if in_cg == 0 or out_cg == 0 else SpectralTransform(in_cg, out_cg, fft_norm=fft_norm)

    @staticmethod
    def _run(conv: nn.Module | None, x):
        return 0 if conv is None or not torch.is_tensor(x) else conv(x)

    def forward(self, x) -> tuple:
        x_l, x_g = x if isinstance(x, tuple) else (x, 0)
        out_l = out_g = 0
        if self.ratio_gout != 1:
            out_l = self._run(self.convl2l, x_l) + self._run(self.convg2l, x_g)
        if self.ratio_gout != 0:
            out_g = self._run(self.convl2g, x_l) + self._run(self.convg2g, x_g)
        return out_l, out_g


class FineADAINLama(nn.Module):
    """FFC (3×3, 0.75 global, reflect) -> ADAIN per part (``bn_l``, ``bn_g``) conditioned on ``z`` -> LeakyReLU
    (slope 0.01 unless ``nonlinearity`` is given)."""

    def __init__(self, input_nc: int, feature_nc: int, nonlinearity: nn.Module | None = None,
                 fft_norm: str = FFT_NORM):
        super().__init__()
        self.actvn = nn.LeakyReLU() if nonlinearity is None else nonlinearity
        self.ffc = FFC(input_nc, input_nc, 3, RATIO_GLOBAL, RATIO_GLOBAL, padding=1, bias=False,
                       padding_type="reflect", fft_norm=fft_norm)
        n_global = global_channels(input_nc)
        self.bn_l = ADAIN(input_nc - n_global, feature_nc)
        self.bn_g = ADAIN(n_global, feature_nc)

    def forward(self, x: tuple, z: torch.Tensor) -> tuple:
        x_l, x_g = self.ffc(x)
        return self.actvn(self.bn_l(x_l, z)), self.actvn(self.bn_g(x_g, z))


class FFCResnetBlock(nn.Module):
    """``x + conv2(conv1(x))`` per part, on ``(B, C, H, W)`` split into local (first) and global (last) channels."""

    def __init__(self, dim: int, feature_dim: int, **conv_kwargs):
        super().__init__()
        self.conv1 = FineADAINLama(dim, feature_dim, **conv_kwargs)
        self.conv2 = FineADAINLama(dim, feature_dim, **conv_kwargs)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        n_global = self.conv1.ffc.global_in_num
        x_l, x_g = x[:, :-n_global], x[:, -n_global:]
        y_l, y_g = self.conv2(self.conv1((x_l, x_g), z), z)
        return torch.cat((x_l + y_l, x_g + y_g), dim=1)


class FFCADAINResBlocks(nn.Module):
    """``num_block`` FFC residual blocks ``res0..`` on ``input_nc`` channels, conditioned on a ``feature_nc`` vector.

    The release's constructor also takes ``norm_layer``, ``nonlinearity`` and ``use_spect``; none of them reaches
    the blocks (module docstring), so they are not parameters here."""

    def __init__(self, num_block: int, input_nc: int, feature_nc: int, **conv_kwargs):
        super().__init__()
        self.num_block = num_block
        for i in range(num_block):
            setattr(self, f"res{i}", FFCResnetBlock(input_nc, feature_nc, **conv_kwargs))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_block):
            x = getattr(self, f"res{i}")(x, z)
        return x
