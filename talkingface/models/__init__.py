"""Model plugins. Importing this package registers the built-in models."""
from .base import TalkingFaceModel
from .dinet import model as _dinet_model  # noqa: F401  (registers the "dinet" model)

__all__ = ["TalkingFaceModel"]
