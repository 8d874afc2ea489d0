"""Where the released S3FD weights come from and how they are checked."""
from __future__ import annotations

from ...weights import KnownWeights

# URL from joonson/syncnet_python download_model.sh. The full SHA-256 of the 89,844,381-byte file is
# d54a87c2b7543b64729c9a25eafd188da15fd3f6e02f0ecec76ae1b30d86c491 (the same digest is quoted independently by
# several mirrors); KnownWeights checks the prefix and suffix.
SFD_FACE_SHA256 = "d54a87c2b7543b64729c9a25eafd188da15fd3f6e02f0ecec76ae1b30d86c491"
SFD_FACE = KnownWeights(
    "sfd_face.pth", "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth",
    "S3FD face detection for the LSE face protocol", sha256_prefix="d54a87c2", sha256_suffix="c491",
    licence="not stated (its host states none; syncnet_python, which fetches it, is MIT; S3FD's sfzhang15/SFD states "
            "none)")
