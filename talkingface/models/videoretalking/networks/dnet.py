"""VideoReTalking's D-Net (``models/DNet.py`` of OpenTalker/video-retalking, PIRenderer-like) with the release's
layout and numerics: ``DNet()`` has the 304 state-dict keys of ``DNet.pt['net_G_ema']`` (22,519,109 parameters),
the misspelled ``warpping_net`` included.

``dnet(image (B,3,H,W) in [-1,1], driving (B,73,T))`` -> ``{'flow_field' (B,2,H/4,W/4), 'warp_image' (B,3,H,W),
'fake_image' (B,3,H,W) in [-1,1]}`` (``stage='warp'`` stops before the editing net, as the release does). The
release runs 256×256 images and 26-frame windows of 73 coefficients per frame (64 expression, 3 angles,
3 translations, 3 crop parameters); H and W must be multiples of 32 and at least 64 (the hourglass's instance
norms need more than one pixel at 1/32), T at least 25 (the mapping net's receptive field).

- ``MappingNet``: ``first`` (Conv1d k=7, no padding) then ``layer`` residual blocks ``x[:, :, 3:-3] +
  conv(leaky_relu(x, 0.1))`` (k=3, dilation 3, no padding), then the mean over the remaining time steps.
- ``WarpingNet``: an ``ADAINHourglass`` on the image and descriptor, ``flow_out`` (LayerNorm2d, LeakyReLU 0.1,
  7×7 conv to 2 channels, in pixels of the flow's own grid), the flow converted to a sampling grid
  (``flow_to_deformation``), resized to the image bilinearly and sampled with ``grid_sample`` (bilinear, zeros,
  ``align_corners=False``), the release's ``utils/flow_util.py``.
- ``EditingNet``: ``FineEncoder`` of ``[image, warped]`` and ``FineDecoder`` conditioned on the descriptor.

Every sub-network takes the release's constructor arguments; ``DNet`` passes its own keyword arguments on to them
(the release's ``DNet()`` takes none; the defaults here are the release's), so small configurations of the same
classes can be built for tests.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from talkingface.models.videoretalking.networks.blocks import ADAINHourglass, FineDecoder, FineEncoder, LayerNorm2d

__all__ = ["DNet", "EditingNet", "MappingNet", "WarpingNet", "flow_to_deformation", "identity_grid", "warp_image"]


# ---- the release's utils/flow_util.py ---------------------------------------------------------------------------
def identity_grid(flow: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 2) sampling grid of the identity for a (B, 2, H, W) flow: x = 2·j/(W−1) − 1 (columns), then
    y = 2·i/(H−1) − 1 (rows), in the flow's dtype and device (pixel corners at ±1)."""
    batch, _, height, width = flow.shape
    xs = 2 * (torch.arange(width).to(flow) / (width - 1)) - 1
    ys = 2 * (torch.arange(height).to(flow) / (height - 1)) - 1
    grid = torch.stack([xs.view(1, width).expand(height, width), ys.view(height, 1).expand(height, width)], 2)
    return grid.expand(batch, -1, -1, -1)


def flow_to_deformation(flow: torch.Tensor) -> torch.Tensor:
    """A (B, 2, H, W) flow in pixels (x, y) -> the (B, H, W, 2) grid ``identity + 2·flow/(size − 1)``."""
    height, width = flow.shape[2:]
    normalised = 2 * torch.cat([flow[:, :1] / (width - 1), flow[:, 1:] / (height - 1)], 1)
    return identity_grid(flow) + normalised.permute(0, 2, 3, 1)


def warp_image(image: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at ``deformation`` (B, h, w, 2), first resized bilinearly to (H, W) if it
    differs (``align_corners=False``); bilinear ``grid_sample`` with zero padding and ``align_corners=False``."""
    if tuple(deformation.shape[1:3]) != tuple(image.shape[2:]):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=image.shape[2:], mode="bilinear",
                                    align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(image, deformation, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---- networks ------------------------------------------------------------------------------------------------------
class MappingNet(nn.Module):
    """(B, coeff_nc, T) driving coefficients -> (B, descriptor_nc, 1) descriptor."""

    def __init__(self, coeff_nc: int = 73, descriptor_nc: int = 256, layer: int = 3):
        super().__init__()
        self.layer = layer
        activation = nn.LeakyReLU(0.1)
        self.first = nn.Sequential(nn.Conv1d(coeff_nc, descriptor_nc, kernel_size=7, padding=0, bias=True))
        for i in range(layer):
            conv = nn.Conv1d(descriptor_nc, descriptor_nc, kernel_size=3, padding=0, dilation=3)
            self.add_module(f"encoder{i}", nn.Sequential(activation, conv))
        self.pooling = nn.AdaptiveAvgPool1d(1)
        self.output_nc = descriptor_nc

    def forward(self, driving: torch.Tensor) -> torch.Tensor:
        out = self.first(driving)
        for i in range(self.layer):
            out = getattr(self, f"encoder{i}")(out) + out[:, :, 3:-3]
        return self.pooling(out)


class WarpingNet(nn.Module):
    """Image and descriptor -> ``{'flow_field', 'warp_image'}``."""

    def __init__(self, image_nc: int = 3, descriptor_nc: int = 256, base_nc: int = 32, max_nc: int = 256,
                 encoder_layer: int = 5, decoder_layer: int = 3, use_spect: bool = False):
        super().__init__()
        activation = nn.LeakyReLU(0.1)
        self.descriptor_nc = descriptor_nc
        self.hourglass = ADAINHourglass(image_nc, descriptor_nc, base_nc, max_nc, encoder_layer, decoder_layer,
                                        nonlinearity=activation, use_spect=use_spect)
        width = self.hourglass.output_nc
        self.flow_out = nn.Sequential(LayerNorm2d(width, affine=True), activation,
                                      nn.Conv2d(width, 2, kernel_size=7, stride=1, padding=3))
        self.pool = nn.AdaptiveAvgPool2d(1)  # unused, as in the release (no parameters)

    def forward(self, input_image: torch.Tensor, descriptor: torch.Tensor) -> dict[str, torch.Tensor]:
        flow = self.flow_out(self.hourglass(input_image, descriptor))
        return {"flow_field": flow, "warp_image": warp_image(input_image, flow_to_deformation(flow))}


class EditingNet(nn.Module):
    """Image, warped image and descriptor -> the edited image (tanh)."""

    def __init__(self, image_nc: int = 3, descriptor_nc: int = 256, layer: int = 3, base_nc: int = 64,
                 max_nc: int = 256, num_res_blocks: int = 2, use_spect: bool = False):
        super().__init__()
        options = dict(norm_layer=lambda channels: LayerNorm2d(channels, affine=True),
                       nonlinearity=nn.LeakyReLU(0.1), use_spect=use_spect)
        self.descriptor_nc = descriptor_nc
        self.encoder = FineEncoder(image_nc * 2, base_nc, max_nc, layer, **options)
        self.decoder = FineDecoder(image_nc, descriptor_nc, base_nc, max_nc, layer, num_res_blocks, **options)

    def forward(self, input_image: torch.Tensor, warp_image: torch.Tensor, descriptor: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(torch.cat([input_image, warp_image], 1)), descriptor)


class DNet(nn.Module):
    """``mapping_net``, ``warpping_net`` (sic), ``editing_net``; ``DNet()`` is the released network."""

    def __init__(self, coeff_nc: int = 73, descriptor_nc: int = 256, mapping_layers: int = 3, image_nc: int = 3,
                 warp_base_nc: int = 32, warp_max_nc: int = 256, encoder_layer: int = 5, decoder_layer: int = 3,
                 edit_layers: int = 3, edit_base_nc: int = 64, edit_max_nc: int = 256, num_res_blocks: int = 2,
                 use_spect: bool = False):
        super().__init__()
        self.mapping_net = MappingNet(coeff_nc, descriptor_nc, mapping_layers)
        self.warpping_net = WarpingNet(image_nc, descriptor_nc, warp_base_nc, warp_max_nc, encoder_layer,
                                       decoder_layer, use_spect)
        self.editing_net = EditingNet(image_nc, descriptor_nc, edit_layers, edit_base_nc, edit_max_nc,
                                      num_res_blocks, use_spect)

    def forward(self, input_image: torch.Tensor, driving_source: torch.Tensor,
                stage: Optional[str] = None) -> dict[str, torch.Tensor]:
        descriptor = self.mapping_net(driving_source)
        output = self.warpping_net(input_image, descriptor)
        if stage != "warp":
            output["fake_image"] = self.editing_net(input_image, output["warp_image"], descriptor)
        return output
