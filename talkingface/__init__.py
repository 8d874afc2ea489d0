"""talkingface: audio-driven talking-face generation (lip-sync dubbing) toolkit."""
from .config import Config, load_config
from .errors import CheckpointError, ConfigError, DataError, MediaError, RegistryError, TalkingFaceError
from .models.base import TalkingFaceModel
from .pipeline import build_model, evaluate_checkpoints, evaluate_videos, infer, preprocess, run
from .registry import (AUDIO_FEATURES, DATASETS, FACE_BACKENDS, METRICS, MODELS, PREPROCESS_STEPS,
                       register_audio_feature, register_dataset, register_face_backend, register_metric,
                       register_model, register_preprocess_step)

__version__ = "0.1.0"


def list_models() -> list[str]:
    """Sorted names of the registered models."""
    return MODELS.names()


def list_datasets() -> list[str]:
    """Sorted names of the registered datasets."""
    return DATASETS.names()


def list_metrics() -> list[str]:
    """Sorted names of the registered metrics."""
    return METRICS.names()


__all__ = [
    "AUDIO_FEATURES", "DATASETS", "FACE_BACKENDS", "METRICS", "MODELS", "PREPROCESS_STEPS", "CheckpointError", "Config", "ConfigError",
    "DataError", "MediaError", "RegistryError", "TalkingFaceError", "TalkingFaceModel", "build_model",
    "evaluate_checkpoints", "evaluate_videos", "infer", "list_datasets", "list_metrics", "list_models",
    "load_config", "preprocess", "register_audio_feature", "register_dataset", "register_face_backend",
    "register_metric", "register_model", "register_preprocess_step", "run",
]
