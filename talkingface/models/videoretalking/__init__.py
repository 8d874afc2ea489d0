"""VideoReTalking (OpenTalker/video-retalking): D-Net expression neutralisation, L-Net lip synthesis and E-Net
enhancement. ``networks`` (the releases' layouts and numerics, and Wav2Lip's training networks), ``data`` (face boxes,
crop cache, training windows), ``model`` (the registered ``videoretalking`` model: stages, losses), ``dubbing`` (the
shared loop's hooks), ``stabilise`` (D-Net references), ``enhance`` and ``blending`` (the enhancement chain). See
docs/videoretalking.md."""
from .model import VideoReTalking

__all__ = ["VideoReTalking"]
