"""LSE-D, LSE-C and the AV offset from per-window SyncNet embeddings (``calc_pdist`` of the reference)."""
from __future__ import annotations

import torch

VSHIFT = 15
PAIRWISE_EPS = 1e-6


def shifted_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """``(N, D)`` video and ``(N, D)`` audio embeddings -> ``(N, 2 * vshift + 1)`` distances.

    ``d[n, k] = ||video[n] - audio_padded[n + k] + 1e-6||`` where the audio is zero-padded by ``vshift``
    rows at both ends (``F.pairwise_distance`` semantics), so near the clip ends the video embedding
    is compared with zero vectors.
    """
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    windows = padded.unfold(0, 2 * vshift + 1, 1)  # (N, D, 2 * vshift + 1)
    return torch.linalg.vector_norm(video.unsqueeze(-1) - windows + PAIRWISE_EPS, dim=1)


def sync_scores(distances: torch.Tensor, vshift: int = VSHIFT) -> dict[str, float | int]:
    """``(N, 2 * vshift + 1)`` distances -> ``{"lse_d", "lse_c", "offset"}``.

    LSE-D is the smallest offset-wise mean distance, LSE-C the median of the means minus that
    minimum (``torch.median`` of 31 values: the middle one), and the offset ``vshift - argmin``.
    """
    mean = distances.mean(dim=0)
    best = int(torch.argmin(mean))
    lse_d = mean[best]
    return {"lse_d": float(lse_d), "lse_c": float(torch.median(mean) - lse_d), "offset": vshift - best}
