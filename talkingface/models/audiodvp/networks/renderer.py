"""AudioDVP's neural face renderer (a pix2pix variant, ``vendor/neural-face-renderer/models/networks.py``): a U-Net
generator whose up paths each pass a refine module, and the 70×70 PatchGAN discriminator (docs: 3dmm_methods.md
§1.5, §9).

Both use BatchNorm (so no bias in the convolutions it follows) and are laid out like the release: every block holds
its layers in a ``model`` ``Sequential``, so the generator's keys are ``model.model.N...`` and the discriminator's
``model.N...``.
"""
from __future__ import annotations

import torch
from torch import nn


class RefineModule(nn.Module):
    """Two [3×3 convolution C→C (with bias), BatchNorm, (Dropout 0.5), ReLU] at the same size."""

    def __init__(self, channels: int, dropout: bool) -> None:
        super().__init__()
        self.model = nn.Sequential(*(self._stage(channels, dropout) for _ in range(2)))

    @staticmethod
    def _stage(channels: int, dropout: bool) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetBlock(nn.Module):
    """One U-Net level: 4×4 stride-2 down convolution, the inner levels, ReLU, refine, 4×4 stride-2 up convolution.

    ``role``: ``outermost`` (no activation or norm on the way down, a biased up convolution and tanh, no skip),
    ``innermost`` (no inner levels, no norm on the way down) or ``middle``. Except the outermost, a block returns
    ``cat([x, up(x)])``. (The release's leading LeakyReLU(0.2) is in place, so its skip carries ``LeakyReLU(x)``;
    the enclosing block's up path starts with a ReLU, and ``ReLU(LeakyReLU(x)) = ReLU(x)``, values and gradients,
    so ours leaves ``x`` as it is.)
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None, inner: nn.Module | None = None,
                 role: str = "middle", dropout: bool = False, refine: bool = True) -> None:
        super().__init__()
        if role not in ("outermost", "middle", "innermost"):
            raise ValueError(f"UnetBlock role {role!r}")
        if (inner is None) != (role == "innermost"):
            raise ValueError("only the innermost U-Net block has no inner block")
        self.outermost = role == "outermost"
        down = nn.Conv2d(outer_nc if input_nc is None else input_nc, inner_nc, 4, 2, 1, bias=False)
        up_nc = inner_nc if role == "innermost" else inner_nc * 2  # what the up path receives
        refine_layers = [RefineModule(up_nc, dropout)] if refine else []
        up = nn.ConvTranspose2d(up_nc, outer_nc, 4, 2, 1, bias=self.outermost)
        if role == "outermost":
            layers = [down, inner, nn.ReLU(inplace=True), *refine_layers, up, nn.Tanh()]
        elif role == "innermost":
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(inplace=True), *refine_layers, up, nn.BatchNorm2d(outer_nc)]
        else:
            layers = [nn.LeakyReLU(0.2), down, nn.BatchNorm2d(inner_nc), inner, nn.ReLU(inplace=True),
                      *refine_layers, up, nn.BatchNorm2d(outer_nc)]
        if dropout and not self.outermost:
            layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net with refine modules: (B, input_nc, H, W) in [-1, 1] -> (B, output_nc, H, W) after tanh; H and W
    divisible by ``2 ** num_downs``.

    Levels from the inside out: the innermost (ngf·8), ``num_downs - 5`` middle ones at ngf·8, then ngf·4, ngf·2,
    ngf and the outermost. With ``use_dropout``, Dropout(0.5) sits in the innermost level and every ngf·8 middle
    level but the outermost of them (and in their refine modules), as the release builds it. The release is
    ``UnetGenerator(21, 3, 8, 64)`` (140,874,627 parameters) on 7 stacked RGB renders at 256².
    """

    def __init__(self, input_nc: int = 21, output_nc: int = 3, num_downs: int = 8, ngf: int = 64,
                 use_dropout: bool = True, use_refine: bool = True) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"UnetGenerator needs num_downs >= 5, got {num_downs}")
        self.num_downs = num_downs
        block = UnetBlock(ngf * 8, ngf * 8, role="innermost", dropout=use_dropout, refine=use_refine)
        middles = num_downs - 5
        for index in range(middles):
            block = UnetBlock(ngf * 8, ngf * 8, inner=block, dropout=use_dropout and index < middles - 1,
                              refine=use_refine)
        for mult in (4, 2, 1):
            block = UnetBlock(ngf * mult, ngf * mult * 2, inner=block, refine=use_refine)
        self.model = UnetBlock(output_nc, ngf, input_nc=input_nc, inner=block, role="outermost", refine=use_refine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = 2 ** self.num_downs
        if x.dim() != 4 or x.shape[-1] % step or x.shape[-2] % step:
            raise ValueError(f"UnetGenerator(num_downs={self.num_downs}) needs (B, C, H, W) with H and W divisible "
                             f"by {step}, got {tuple(x.shape)}")
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """pix2pix's PatchGAN with BatchNorm: (B, input_nc, H, W) -> raw logits (B, 1, H/8 - 2, W/8 - 2) for
    ``n_layers=3`` (30×30 at 256, each seeing 70×70 pixels).

    4×4 convolutions: stride 2 to ndf (with bias, no norm), ``n_layers - 1`` more stride-2 ones doubling the width
    up to ndf·8, one stride-1 one, each with BatchNorm and LeakyReLU(0.2), then a stride-1 one to a channel (with
    bias). The release's is ``NLayerDiscriminator(24, 64, 3)`` (2,787,137 parameters) on ``cat(renders, image)``.
    """

    def __init__(self, input_nc: int = 24, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"NLayerDiscriminator needs n_layers >= 1, got {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, n_layers + 1):  # the last of them (n = n_layers) at stride 1
            previous, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * previous, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


PatchDiscriminator = NLayerDiscriminator
