"""PIRender-style building blocks of VideoReTalking's D-Net and L-Net, with the release's layout and numerics.

Each class here matches the block of the same name in the release's ``models/base_blocks.py``
(OpenTalker/video-retalking): same constructor arguments and defaults, same submodule names and order (so the
same state-dict keys, legacy spectral-norm keys ``weight_orig``/``weight_u``/``weight_v`` included), same
operations in the same order.

Shared by D-Net and L-Net:

- ``LayerNorm2d`` -> ``LayerNorm2d`` (normalises over (C, H, W); affine ``weight``/``bias`` shaped (C, 1, 1))
- ``spectral_norm`` -> ``spectral_norm`` (``torch.nn.utils.spectral_norm`` where ``use_spect``)
- ``ADAIN`` -> ``ADAIN`` (instance norm, then ``* (1 + gamma) + beta`` from a 128-wide MLP of the descriptor)
- ``FirstBlock2d``, ``DownBlock2d``, ``UpBlock2d``, ``Jump``, ``FinalBlock2d`` -> the blocks of the same names

D-Net only:

- ``FineADAINResBlock2d``, ``FineADAINResBlocks`` -> the same names (see the quirk below)
- ``ADAINEncoderBlock``, ``ADAINDecoderBlock``, ``ADAINEncoder``, ``ADAINDecoder``, ``ADAINHourglass``
- ``FineEncoder``, ``FineDecoder``

Release quirk kept: ``FineADAINResBlock2d`` computes ``actvn(norm1(conv1(x), z))`` and then overwrites it, so its
output is ``norm2(conv2(x), z) + x`` and ``conv1``/``norm1`` never affect it. Their keys stay (strict loading of the
release); ``FineADAINResBlock2d.skip_dead_branch`` (default ``True``) does not compute them, which gives the same
output (they get no gradient either way: their result never reaches the output).

Unlike the release, the encoders/decoders here do not consume (``pop``) the caller's list of skip features.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

NormLayer = Optional[Callable[[int], nn.Module]]

__all__ = [
    "ADAIN", "ADAINDecoder", "ADAINDecoderBlock", "ADAINEncoder", "ADAINEncoderBlock", "ADAINHourglass",
    "DownBlock2d", "FinalBlock2d", "FineADAINResBlock2d", "FineADAINResBlocks", "FineDecoder", "FineEncoder",
    "FirstBlock2d", "Jump", "LayerNorm2d", "UpBlock2d", "spectral_norm",
]


def _activation(nonlinearity: Optional[nn.Module]) -> nn.Module:
    """The release's default ``nonlinearity=nn.LeakyReLU()`` (slope 0.01)."""
    return nn.LeakyReLU() if nonlinearity is None else nonlinearity


def spectral_norm(module: nn.Module, use_spect: bool = True) -> nn.Module:
    """``module`` with PyTorch's legacy spectral norm (keys ``weight_orig``, ``weight_u``, ``weight_v``) if
    ``use_spect``, else ``module`` itself."""
    return torch.nn.utils.spectral_norm(module) if use_spect else module


class LayerNorm2d(nn.Module):
    """Layer norm over (C, H, W) of each sample (eps 1e-5), per-channel affine ``weight``/``bias`` of shape
    (C, 1, 1) expanded to (C, H, W)."""

    def __init__(self, n_out: int, affine: bool = True):
        super().__init__()
        self.n_out, self.affine = n_out, affine
        if affine:
            self.weight = nn.Parameter(torch.ones(n_out, 1, 1))
            self.bias = nn.Parameter(torch.zeros(n_out, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[1:]
        if not self.affine:
            return F.layer_norm(x, shape)
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape))


def _conv_block(conv: nn.Module, output_nc: int, norm_layer: NormLayer, nonlinearity: nn.Module) -> nn.Sequential:
    """``Sequential(conv, [norm_layer(output_nc),] nonlinearity)``: the layout of the release's ``model``."""
    layers = [conv] if norm_layer is None else [conv, norm_layer(output_nc)]
    return nn.Sequential(*layers, nonlinearity)


class FirstBlock2d(nn.Module):
    """7×7 convolution, optional norm, nonlinearity (``model.0``, ``model.1``)."""

    def __init__(self, input_nc: int, output_nc: int, norm_layer: NormLayer = nn.BatchNorm2d,
                 nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        conv = spectral_norm(nn.Conv2d(input_nc, output_nc, kernel_size=7, stride=1, padding=3), use_spect)
        self.model = _conv_block(conv, output_nc, norm_layer, _activation(nonlinearity))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DownBlock2d(nn.Module):
    """3×3 convolution, optional norm, nonlinearity, then 2×2 average pooling."""

    def __init__(self, input_nc: int, output_nc: int, norm_layer: NormLayer = nn.BatchNorm2d,
                 nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        conv = spectral_norm(nn.Conv2d(input_nc, output_nc, kernel_size=3, stride=1, padding=1), use_spect)
        block = _conv_block(conv, output_nc, norm_layer, _activation(nonlinearity))
        self.model = nn.Sequential(*block, nn.AvgPool2d(kernel_size=(2, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UpBlock2d(nn.Module):
    """Nearest ×2 upsampling, then 3×3 convolution, optional norm, nonlinearity."""

    def __init__(self, input_nc: int, output_nc: int, norm_layer: NormLayer = nn.BatchNorm2d,
                 nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        conv = spectral_norm(nn.Conv2d(input_nc, output_nc, kernel_size=3, stride=1, padding=1), use_spect)
        self.model = _conv_block(conv, output_nc, norm_layer, _activation(nonlinearity))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(F.interpolate(x, scale_factor=2))


class Jump(nn.Module):
    """The skip path of the fine decoders: 3×3 convolution (same width), optional norm, nonlinearity."""

    def __init__(self, input_nc: int, norm_layer: NormLayer = nn.BatchNorm2d,
                 nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        conv = spectral_norm(nn.Conv2d(input_nc, input_nc, kernel_size=3, stride=1, padding=1), use_spect)
        self.model = _conv_block(conv, input_nc, norm_layer, _activation(nonlinearity))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FinalBlock2d(nn.Module):
    """7×7 convolution then ``tanh`` (or ``sigmoid`` when ``tanh_or_sigmoid == 'sigmoid'``)."""

    def __init__(self, input_nc: int, output_nc: int, use_spect: bool = False, tanh_or_sigmoid: str = "tanh"):
        super().__init__()
        conv = spectral_norm(nn.Conv2d(input_nc, output_nc, kernel_size=7, stride=1, padding=3), use_spect)
        self.model = nn.Sequential(conv, nn.Sigmoid() if tanh_or_sigmoid == "sigmoid" else nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ADAIN(nn.Module):
    """Adaptive instance norm: ``instance_norm(x) * (1 + gamma(z)) + beta(z)``, where ``gamma``, ``beta`` are
    linear maps of a shared ``Linear(feature_nc, 128) + ReLU`` of the flattened descriptor ``z`` (B, feature_nc, ...).
    The instance norm has no affine parameters and no running statistics (eps 1e-5; needs H·W > 1)."""

    hidden = 128

    def __init__(self, norm_nc: int, feature_nc: int):
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Linear(feature_nc, self.hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(self.hidden, norm_nc)
        self.mlp_beta = nn.Linear(self.hidden, norm_nc)

    def modulation(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gamma, beta)``, each (B, norm_nc, 1, 1)."""
        hidden = self.mlp_shared(feature.reshape(feature.shape[0], -1))
        gamma, beta = self.mlp_gamma(hidden), self.mlp_beta(hidden)
        return gamma[:, :, None, None], beta[:, :, None, None]

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        normalized = self.param_free_norm(x)
        gamma, beta = self.modulation(feature)
        return normalized * (1 + gamma) + beta


class FineADAINResBlock2d(nn.Module):
    """Residual block ``norm2(conv2(x), z) + x`` (3×3 convolutions of the same width); ``conv1``/``norm1`` are the
    release's dead branch (module docstring). ``norm_layer`` is accepted and unused, as in the release."""

    skip_dead_branch = True

    def __init__(self, input_nc: int, feature_nc: int, norm_layer: NormLayer = nn.BatchNorm2d,
                 nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        self.conv1 = spectral_norm(nn.Conv2d(input_nc, input_nc, kernel_size=3, stride=1, padding=1), use_spect)
        self.conv2 = spectral_norm(nn.Conv2d(input_nc, input_nc, kernel_size=3, stride=1, padding=1), use_spect)
        self.norm1 = ADAIN(input_nc, feature_nc)
        self.norm2 = ADAIN(input_nc, feature_nc)
        self.actvn = _activation(nonlinearity)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if not self.skip_dead_branch:
            self.actvn(self.norm1(self.conv1(x), z))  # computed and discarded, as the release does
        return self.norm2(self.conv2(x), z) + x


class FineADAINResBlocks(nn.Module):
    """``num_block`` ``FineADAINResBlock2d`` in sequence (``res0``, ``res1``, ...)."""

    def __init__(self, num_block: int, input_nc: int, feature_nc: int, norm_layer: NormLayer = nn.BatchNorm2d,
                 nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        self.num_block = num_block
        for i in range(num_block):
            self.add_module(f"res{i}", FineADAINResBlock2d(input_nc, feature_nc, norm_layer, nonlinearity, use_spect))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_block):
            x = getattr(self, f"res{i}")(x, z)
        return x


class ADAINEncoderBlock(nn.Module):
    """``conv_1(act(norm_1(conv_0(act(norm_0(x, z))), z)))``: a 4×4 stride-2 convolution, then a 3×3 one."""

    def __init__(self, input_nc: int, output_nc: int, feature_nc: int, nonlinearity: Optional[nn.Module] = None,
                 use_spect: bool = False):
        super().__init__()
        self.conv_0 = spectral_norm(nn.Conv2d(input_nc, output_nc, kernel_size=4, stride=2, padding=1), use_spect)
        self.conv_1 = spectral_norm(nn.Conv2d(output_nc, output_nc, kernel_size=3, stride=1, padding=1), use_spect)
        self.norm_0 = ADAIN(input_nc, feature_nc)
        self.norm_1 = ADAIN(output_nc, feature_nc)
        self.actvn = _activation(nonlinearity)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_0(self.actvn(self.norm_0(x, z)))
        return self.conv_1(self.actvn(self.norm_1(x, z)))


class ADAINDecoderBlock(nn.Module):
    """A ×2 up-sampling residual block: ``conv_s(act(norm_s(x)))`` plus
    ``conv_1(act(norm_1(conv_0(act(norm_0(x))))))``; with ``use_transpose`` the up-sampling convolutions are 3×3
    stride-2 transposed ones (output_padding 1), otherwise a 3×3 convolution followed by nearest ×2 upsampling."""

    def __init__(self, input_nc: int, output_nc: int, hidden_nc: Optional[int], feature_nc: int,
                 use_transpose: bool = True, nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        self.actvn = _activation(nonlinearity)
        hidden_nc = min(input_nc, output_nc) if hidden_nc is None else hidden_nc
        self.conv_0 = spectral_norm(nn.Conv2d(input_nc, hidden_nc, kernel_size=3, stride=1, padding=1), use_spect)
        if use_transpose:
            up = dict(kernel_size=3, stride=2, padding=1, output_padding=1)
            self.conv_1 = spectral_norm(nn.ConvTranspose2d(hidden_nc, output_nc, **up), use_spect)
            self.conv_s = spectral_norm(nn.ConvTranspose2d(input_nc, output_nc, **up), use_spect)
        else:
            same = dict(kernel_size=3, stride=1, padding=1)
            self.conv_1 = nn.Sequential(spectral_norm(nn.Conv2d(hidden_nc, output_nc, **same), use_spect),
                                        nn.Upsample(scale_factor=2))
            self.conv_s = nn.Sequential(spectral_norm(nn.Conv2d(input_nc, output_nc, **same), use_spect),
                                        nn.Upsample(scale_factor=2))
        self.norm_0 = ADAIN(input_nc, feature_nc)
        self.norm_1 = ADAIN(hidden_nc, feature_nc)
        self.norm_s = ADAIN(input_nc, feature_nc)

    def shortcut(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.conv_s(self.actvn(self.norm_s(x, z)))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x, z)
        dx = self.conv_0(self.actvn(self.norm_0(x, z)))
        dx = self.conv_1(self.actvn(self.norm_1(dx, z)))
        return shortcut + dx


def _widths(ngf: int, img_f: int, i: int) -> tuple[int, int]:
    """Input and output widths of level ``i`` of the PIRender encoders: ``min(ngf·2^i, img_f)``,
    ``min(ngf·2^(i+1), img_f)``."""
    return min(ngf * 2 ** i, img_f), min(ngf * 2 ** (i + 1), img_f)


class ADAINEncoder(nn.Module):
    """``input_layer`` (7×7, no norm) then ``layers`` ``ADAINEncoderBlock`` (each halves H and W); returns the
    list of all ``layers + 1`` feature maps, finest first."""

    def __init__(self, image_nc: int, pose_nc: int, ngf: int, img_f: int, layers: int,
                 nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        self.layers = layers
        self.input_layer = nn.Conv2d(image_nc, ngf, kernel_size=7, stride=1, padding=3)
        for i in range(layers):
            in_nc, out_nc = _widths(ngf, img_f, i)
            self.add_module(f"encoder{i}", ADAINEncoderBlock(in_nc, out_nc, pose_nc, nonlinearity, use_spect))
        self.output_nc = out_nc

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> list[torch.Tensor]:
        features = [self.input_layer(x)]
        for i in range(self.layers):
            features.append(getattr(self, f"encoder{i}")(features[-1], z))
        return features


class ADAINDecoder(nn.Module):
    """``decoder{L-1}`` ... ``decoder{L-D}`` (``L`` encoder layers, ``D`` decoder layers), transposed
    ``ADAINDecoderBlock``; with ``skip_connect`` each output is concatenated with the encoder feature of its size
    (so every block but the first takes twice its level's width)."""

    def __init__(self, pose_nc: int, ngf: int, img_f: int, encoder_layers: int, decoder_layers: int,
                 skip_connect: bool = True, nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        self.encoder_layers, self.decoder_layers, self.skip_connect = encoder_layers, decoder_layers, skip_connect
        for i in self.levels():
            out_nc, in_nc = _widths(ngf, img_f, i)
            if skip_connect and i != encoder_layers - 1:
                in_nc *= 2
            block = ADAINDecoderBlock(in_nc, out_nc, out_nc, pose_nc, True, nonlinearity, use_spect)
            self.add_module(f"decoder{i}", block)
        self.output_nc = out_nc * 2 if skip_connect else out_nc

    def levels(self) -> range:
        """The decoder levels, coarsest first."""
        return range(self.encoder_layers - 1, self.encoder_layers - self.decoder_layers - 1, -1)

    def forward(self, x, z: torch.Tensor) -> torch.Tensor:
        skips = list(x) if self.skip_connect else None
        out = skips.pop() if self.skip_connect else x
        for i in self.levels():
            out = getattr(self, f"decoder{i}")(out, z)
            if self.skip_connect:
                out = torch.cat([out, skips.pop()], 1)
        return out


class ADAINHourglass(nn.Module):
    """``ADAINEncoder`` then ``ADAINDecoder`` with skips, both conditioned on the descriptor ``z``."""

    def __init__(self, image_nc: int, pose_nc: int, ngf: int, img_f: int, encoder_layers: int,
                 decoder_layers: int, nonlinearity: Optional[nn.Module], use_spect: bool):
        super().__init__()
        self.encoder = ADAINEncoder(image_nc, pose_nc, ngf, img_f, encoder_layers, nonlinearity, use_spect)
        self.decoder = ADAINDecoder(pose_nc, ngf, img_f, encoder_layers, decoder_layers, True, nonlinearity,
                                    use_spect)
        self.output_nc = self.decoder.output_nc

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x, z), z)


class FineEncoder(nn.Module):
    """``first`` (``FirstBlock2d``) then ``down0`` ... ``down{layers-1}`` (``DownBlock2d``); returns the list of
    all ``layers + 1`` feature maps, finest first."""

    def __init__(self, image_nc: int, ngf: int, img_f: int, layers: int, norm_layer: NormLayer = nn.BatchNorm2d,
                 nonlinearity: Optional[nn.Module] = None, use_spect: bool = False):
        super().__init__()
        self.layers = layers
        self.first = FirstBlock2d(image_nc, ngf, norm_layer, nonlinearity, use_spect)
        for i in range(layers):
            in_nc, out_nc = _widths(ngf, img_f, i)
            self.add_module(f"down{i}", DownBlock2d(in_nc, out_nc, norm_layer, nonlinearity, use_spect))
        self.output_nc = out_nc

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.first(x)]
        for i in range(self.layers):
            features.append(getattr(self, f"down{i}")(features[-1]))
        return features


class FineDecoder(nn.Module):
    """From the coarsest level down: ``res{i}`` (``FineADAINResBlocks`` on the descriptor), ``up{i}``
    (``UpBlock2d``), plus ``jump{i}`` of the encoder feature of that size; then ``final`` (7×7 + tanh). Modules are
    registered ``up{i}``, ``res{i}``, ``jump{i}`` per level, as the release's state dict orders them."""

    def __init__(self, image_nc: int, feature_nc: int, ngf: int, img_f: int, layers: int, num_block: int,
                 norm_layer: NormLayer = nn.BatchNorm2d, nonlinearity: Optional[nn.Module] = None,
                 use_spect: bool = False):
        super().__init__()
        self.layers = layers
        for i in reversed(range(layers)):
            out_nc, in_nc = _widths(ngf, img_f, i)
            self.add_module(f"up{i}", UpBlock2d(in_nc, out_nc, norm_layer, nonlinearity, use_spect))
            self.add_module(f"res{i}", FineADAINResBlocks(num_block, in_nc, feature_nc, norm_layer, nonlinearity,
                                                          use_spect))
            self.add_module(f"jump{i}", Jump(out_nc, norm_layer, nonlinearity, use_spect))
        self.final = FinalBlock2d(out_nc, image_nc, use_spect, "tanh")
        self.output_nc = out_nc

    def forward(self, x, z: torch.Tensor) -> torch.Tensor:
        skips = list(x)
        out = skips.pop()
        for i in reversed(range(self.layers)):
            out = getattr(self, f"res{i}")(out, z)
            out = getattr(self, f"up{i}")(out)
            out = getattr(self, f"jump{i}")(skips.pop()) + out
        return self.final(out)
