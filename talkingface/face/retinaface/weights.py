"""Where the released RetinaFace-R50 weights come from."""
from __future__ import annotations

from ...weights import KnownWeights

# No SHA-256 is published for it. (biubug6/Pytorch_Retinaface's Resnet50_Final.pth, which facexlib re-released as
# detection_Resnet50_Final.pth, has the same architecture and, by a third-party listing, possibly the same bytes:
# docs/retinaface.md.)
RETINAFACE_R50 = KnownWeights(
    "RetinaFace-R50.pth", "GitHub release v0.0.1 of vinthony/video-retalking (GPEN's RetinaFace-R50)",
    "face detector RetinaFace-R50 (`talkingface.face.retinaface`; VideoReTalking's GPEN enhancement)",
    licence="not stated (yangxy/GPEN has no licence file; its README said 'For academic and non-commercial use "
            "only' until 2026-03)")
