"""The offline demo dataset: a photo of a face speaking eSpeak NG sentences, mouth driven by the speech.

Generated deterministically for a seed in seconds, with per-frame ground truth (mouth opening and
68 landmarks); see ``docs/demo_dataset.md``.
"""
from .animate import HeadMotion, MouthAnimator, animate, mouth_opening
from .face import BaseFace, base_face, detect_landmarks
from .generate import DemoClipSpec, demo_clip_spec, write_demo_clip, write_demo_videos
from .speech import synthesize_speech

__all__ = ["BaseFace", "DemoClipSpec", "HeadMotion", "MouthAnimator", "animate", "base_face", "demo_clip_spec",
           "detect_landmarks", "mouth_opening", "synthesize_speech", "write_demo_clip", "write_demo_videos"]
