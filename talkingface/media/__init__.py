"""Video and audio decoding and encoding (PyAV)."""
from .audio import read_audio, write_wav
from .video import VideoInfo, VideoWriter, iter_frames, probe_video, read_frames

__all__ = ["VideoInfo", "VideoWriter", "iter_frames", "probe_video", "read_audio", "read_frames", "write_wav"]
