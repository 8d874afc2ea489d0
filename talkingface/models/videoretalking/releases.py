"""VideoReTalking's released weight files (declared as data: `talkingface list --weights`, checkpoints/README.md)."""
from __future__ import annotations

from ...weights import KnownWeights

SOURCE = ("GitHub release `v0.0.1` of OpenTalker/video-retalking (`checkpoints/{name}`; also its README's Google "
          "Drive folder)")
LICENCE = ("Apache-2.0 (OpenTalker/video-retalking LICENSE; its README said personal/research/non-commercial use only "
           "from 2023-03 to 2023-09)")

LNET = KnownWeights("LNet.pth", SOURCE.format(name="LNet.pth"),
                    "model `videoretalking` (L-Net: `['state_dict']`, `module.` stripped)", fills=("lnet",),
                    licence=LICENCE)
ENET = KnownWeights("ENet.pth", SOURCE.format(name="ENet.pth"),
                    "model `videoretalking` (E-Net: `['state_dict']` without `low_res.*`)", fills=("enet",),
                    licence=LICENCE)
DNET = KnownWeights("DNet.pt", SOURCE.format(name="DNet.pt"),
                    "model `videoretalking` (D-Net: `['net_G_ema']`)", fills=("dnet",), licence=LICENCE)

EXPRESSION_MAT = KnownWeights(
    "expression.mat", SOURCE.format(name="expression.mat"),
    "VideoReTalking's expression templates (`talkingface.models.videoretalking.stabilise`: `expression_center` for "
    "`neutral`, `expression_mouth` for `smile`)", licence=LICENCE)

RELEASES = (LNET, ENET, DNET)  # the networks' files; expression.mat holds data, not weights of a submodule
