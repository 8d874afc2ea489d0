"""AudioDVP's weight files (declared as data: ``talkingface list --weights``, checkpoints/README.md).

Only the AT-net is published (by ATVGnet's authors). AudioDVP's author publishes no trained networks ("due to legal
concerns", xinwen-cs/AudioDVP issue #11): Audio2Expression and the neural face renderer are person-specific and a user
trains them on the target video with the official scripts (``train_exp.py``; ``vendor/neural-face-renderer/train.py``,
which saves ``{epoch}_net_G.pth`` / ``{epoch}_net_D.pth`` every 25 epochs and ``latest_net_*.pth``). No SHA-256 is
published for any of them.
"""
from __future__ import annotations

from ...weights import KnownWeights

AUDIODVP_LICENCE = "BSD (xinwen-cs/AudioDVP README; pix2pix code BSD); trained on the user's own video"
NOT_PUBLISHED = ("not published (xinwen-cs/AudioDVP issue #11: no trained models); trained on the target video by "
                 "{script} of xinwen-cs/AudioDVP")

ATNET = KnownWeights(
    "atnet_lstm_18.pth",
    "ATVGnet's pretrained AT-net (trained on LRW), Google Drive folder linked from the xinwen-cs/AudioDVP README "
    "(https://drive.google.com/drive/folders/1McjJsKS_yrgEZeB1fb-Og-N2gf2PQMF6) and from lelechen63/ATVGnet's "
    "(https://drive.google.com/drive/folders/1WYhqKBFX6mLtdJ8sYVLdWUqp5FJDmphg)",
    "model `audiodvp` (AT-net audio encoder: bare `AT_net` state dict, `module.` stripped, `lmark_encoder`/`lstm`/"
    "`lstm_fc` ignored)", fills=("audio_encoder",),
    licence="not stated for the weights (ATVGnet code: MIT); trained on LRW, whose licence is non-commercial research "
            "use only")
DELTA_NET = KnownWeights(
    "delta_net.pth", NOT_PUBLISHED.format(script="`train_exp.py` (written to the video folder)"),
    "model `audiodvp` (Audio2Expression: bare `AudioExpressionModule` state dict)", fills=("audio2expression",),
    licence=AUDIODVP_LICENCE)
NFR_G = KnownWeights(
    "latest_net_G.pth", NOT_PUBLISHED.format(
        script="`vendor/neural-face-renderer/train.py` (`checkpoints/nfr/{epoch}_net_G.pth`, named by epoch)"),
    "model `audiodvp` (neural face renderer: bare `UnetGenerator` state dict; any `{epoch}_net_G.pth` loads)",
    fills=("renderer",), licence=AUDIODVP_LICENCE)
NFR_D = KnownWeights(
    "latest_net_D.pth", NOT_PUBLISHED.format(
        script="`vendor/neural-face-renderer/train.py` (`checkpoints/nfr/{epoch}_net_D.pth`, named by epoch)"),
    "model `audiodvp` (renderer's PatchGAN: bare `NLayerDiscriminator` state dict; any `{epoch}_net_D.pth` loads)",
    fills=("discriminator",), licence=AUDIODVP_LICENCE)

RELEASES = (ATNET, DELTA_NET, NFR_G, NFR_D)
