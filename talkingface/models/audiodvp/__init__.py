"""AudioDVP (Wen et al., "Photorealistic Audio-driven Video Portraits", TVCG 2020): docs/audiodvp.md."""
from . import model  # registers "audiodvp"
from .model import AudioDVP

__all__ = ["AudioDVP"]
