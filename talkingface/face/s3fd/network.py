"""The S3FD network (VGG16 trunk, L2-normalised sources, six multibox heads) with sfd_face.pth's key layout.

Attribute names (``vgg``, ``L2Norm3_3``, ``L2Norm4_3``, ``L2Norm5_3``, ``extras``, ``loc``, ``conf``) and the
ModuleList indices follow joonson/syncnet_python ``detectors/s3fd/nets.py`` so the released state dict loads
strictly. The forward pass returns the raw head outputs; priors, decoding and NMS live in ``boxes.py``.
"""
from __future__ import annotations

import torch
from torch import nn

# (in, out) of each 3x3/pad-1 VGG conv; "M" = 2x2 max-pool ("C" = the ceil_mode pool after conv3_3).
_VGG_PLAN: tuple[tuple[int, int] | str, ...] = (
    (3, 64), (64, 64), "M",
    (64, 128), (128, 128), "M",
    (128, 256), (256, 256), (256, 256), "C",
    (256, 512), (512, 512), (512, 512), "M",
    (512, 512), (512, 512), (512, 512), "M",
)
SOURCE_CHANNELS = (256, 512, 512, 1024, 512, 256)  # conv3_3, conv4_3, conv5_3, fc7, conv6_2, conv7_2
L2NORM_SCALES = (10.0, 8.0, 5.0)  # initial gamma of conv3_3/conv4_3/conv5_3 norms (trained values are loaded)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (``weight``); eps 1e-10 added to the norm."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight.view(1, -1, 1, 1) * torch.div(x, norm)


def _vgg_layers() -> nn.ModuleList:
    layers: list[nn.Module] = []
    for item in _VGG_PLAN:
        if isinstance(item, tuple):
            layers += [nn.Conv2d(item[0], item[1], 3, 1, padding=1), nn.ReLU(inplace=True)]
        else:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=item == "C"))
    # fc6 as a dilated 3x3 conv, fc7 as a 1x1 conv (indices 31 and 33).
    layers += [nn.Conv2d(512, 1024, 3, 1, padding=6, dilation=6), nn.ReLU(inplace=True),
               nn.Conv2d(1024, 1024, 1, 1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


class S3FD(nn.Module):
    """S3FD face detector network; ``forward`` gives loc offsets, 2-class logits and the six feature-map sizes.

    The first conf head predicts 3 background + 1 face channels; the background is max-out (max over the 3).
    """

    def __init__(self) -> None:
        super().__init__()
        self.vgg = _vgg_layers()
        self.L2Norm3_3 = L2Norm(256, L2NORM_SCALES[0])
        self.L2Norm4_3 = L2Norm(512, L2NORM_SCALES[1])
        self.L2Norm5_3 = L2Norm(512, L2NORM_SCALES[2])
        # conv6_1 (1x1), conv6_2 (3x3 stride 2), conv7_1 (1x1), conv7_2 (3x3 stride 2); ReLU after each.
        self.extras = nn.ModuleList([
            nn.Conv2d(1024, 256, 1, 1), nn.Conv2d(256, 512, 3, 2, padding=1),
            nn.Conv2d(512, 128, 1, 1), nn.Conv2d(128, 256, 3, 2, padding=1),
        ])
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in SOURCE_CHANNELS])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1)
                                   for i, c in enumerate(SOURCE_CHANNELS)])

    def sources(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six detection sources: normed conv3_3/4_3/5_3, fc7, conv6_2, conv7_2."""
        out = []
        for start, stop, norm in ((0, 16, self.L2Norm3_3), (16, 23, self.L2Norm4_3), (23, 30, self.L2Norm5_3)):
            for k in range(start, stop):
                x = self.vgg[k](x)
            out.append(norm(x))
        for k in range(30, len(self.vgg)):
            x = self.vgg[k](x)
        out.append(x)
        for k, layer in enumerate(self.extras):
            x = torch.relu(layer(x))
            if k % 2 == 1:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """``x`` (B, 3, H, W) mean-subtracted RGB -> loc (B, N, 4), conf logits (B, N, 2), [(h, w)] per source."""
        locs, confs, sizes = [], [], []
        for i, source in enumerate(self.sources(x)):
            conf = self.conf[i](source)
            if i == 0:  # max-out background label
                conf = torch.cat((conf[:, 0:3].max(dim=1, keepdim=True).values, conf[:, 3:]), dim=1)
            loc = self.loc[i](source)
            sizes.append((int(loc.shape[2]), int(loc.shape[3])))
            locs.append(loc.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4))
            confs.append(conf.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 2))
        return torch.cat(locs, 1), torch.cat(confs, 1), sizes
