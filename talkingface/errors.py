"""Exception types. Every error a user can cause derives from ``TalkingFaceError``.

The CLI prints these as one line on stderr (no traceback unless ``--debug``) and exits non-zero.
"""


class TalkingFaceError(Exception):
    """Base class of errors caused by input, configuration or missing files."""


class RegistryError(TalkingFaceError, KeyError):
    """An unknown or duplicate name in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(TalkingFaceError):
    """An invalid configuration: unknown key, bad value, missing file."""


class CheckpointError(TalkingFaceError):
    """A checkpoint that cannot be read or does not match the model."""


class MediaError(TalkingFaceError):
    """A video or audio file that cannot be decoded or written."""


class DataError(TalkingFaceError):
    """A dataset or processed clip store that is missing or invalid."""


class AudioError(TalkingFaceError, ValueError):
    """Audio that cannot be turned into features (wrong shape or rate, NaN, too short)."""
