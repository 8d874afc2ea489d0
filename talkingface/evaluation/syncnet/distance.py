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
    return _window_distances(video, padded, vshift)


def _window_distances(video: torch.Tensor, padded: torch.Tensor, vshift: int) -> torch.Tensor:
    """``d[n, k] = ||video[n] - padded[n + k] + eps||`` for ``k = 0 .. 2 * vshift``."""
    windows = padded.unfold(0, 2 * vshift + 1, 1)  # (N, D, 2 * vshift + 1)
    return torch.linalg.vector_norm(video.unsqueeze(-1) - windows + PAIRWISE_EPS, dim=1)


def sync_scores(distances: torch.Tensor, vshift: int = VSHIFT) -> dict[str, float | int]:
    """``(N, 2 * vshift + 1)`` distances -> ``{"lse_d", "lse_c", "offset"}`` (see ``scores_from_means``)."""
    return scores_from_means(distances.mean(dim=0), vshift)


def scores_from_means(mean: torch.Tensor, vshift: int = VSHIFT) -> dict[str, float | int]:
    """The ``2 * vshift + 1`` offset-wise mean distances -> ``{"lse_d", "lse_c", "offset"}``.

    LSE-D is the smallest mean distance, LSE-C the median of the means minus that minimum
    (``torch.median`` of 31 values: the middle one), and the offset ``vshift - argmin``.
    """
    best = int(torch.argmin(mean))
    lse_d = mean[best]
    return {"lse_d": float(lse_d), "lse_c": float(torch.median(mean) - lse_d), "offset": vshift - best}


class RunningDistances:
    """The offset-wise mean distances of ``shifted_distances`` accumulated while embeddings arrive.

    Feed consecutive windows' ``(b, D)`` video and audio embeddings with ``add``; a video window is
    settled as soon as the audio ``vshift`` windows ahead of it is known, so memory stays at about
    ``2 * vshift`` embeddings however long the clip. ``means()`` settles the rest against the
    trailing zero padding.
    """

    def __init__(self, vshift: int = VSHIFT):
        self.vshift = vshift
        self.sums = torch.zeros(2 * vshift + 1, dtype=torch.float64)
        self.count = 0  # settled video windows
        self._video: list[torch.Tensor] = []  # unsettled video windows, from index self.count
        self._audio: torch.Tensor | None = None  # audio windows from index self.count - vshift (zeros before 0)

    def add(self, video: torch.Tensor, audio: torch.Tensor) -> None:
        if video.shape != audio.shape or video.dim() != 2:
            raise ValueError(f"need equal (b, D) video and audio embeddings, got {tuple(video.shape)} "
                             f"and {tuple(audio.shape)}")
        video, audio = video.detach().cpu().float(), audio.detach().cpu().float()
        if self._audio is None:
            self._audio = torch.zeros(self.vshift, audio.shape[1])
        self._video.append(video)
        self._audio = torch.cat([self._audio, audio])
        self._settle(final=False)

    def _settle(self, final: bool) -> None:
        pending = torch.cat(self._video) if self._video else torch.zeros(0)
        if final:
            self._audio = torch.cat([self._audio, torch.zeros(self.vshift, self._audio.shape[1])])
        ready = len(self._audio) - 2 * self.vshift  # video windows whose whole audio range is known
        if ready <= 0 or len(pending) == 0:
            return
        ready = min(ready, len(pending))
        distances = _window_distances(pending[:ready], self._audio[:ready + 2 * self.vshift], self.vshift)
        self.sums += distances.double().sum(dim=0)
        self.count += ready
        self._video = [pending[ready:]]
        self._audio = self._audio[ready:]

    def means(self) -> torch.Tensor:
        """``(2 * vshift + 1,)`` mean distance per offset over all windows added (float64)."""
        if self._audio is not None and sum(map(len, self._video)):
            self._settle(final=True)
        if self.count == 0:
            raise ValueError("no window was added")
        return self.sums / self.count
