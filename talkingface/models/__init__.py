"""Model plugins. Importing this package registers the built-in models."""
from .base import TalkingFaceModel

__all__ = ["TalkingFaceModel"]
