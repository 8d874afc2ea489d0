"""The model-agnostic dubbing loop and its parts: plan, face tracking, frame order, paste-back, options.

A model implements ``DubbingHooks`` (crop, generator call, paste) and calls ``dub``; see docs/architecture.md.
"""
from .faces import ChosenFace, face_choice, track_landmarks
from .frames import fetch_frames, frames_in_order
from .loop import (DubbingHooks, DubbingSettings, PreparedSource, SourceTrack, audio_vectors, dub,
                   LOOP_STAGES, inference_mode, prepare_source, prepare_template)
from .options import LOOP_OPTIONS, GenerateOption, check_options, face_flag
from .paste import feather_mask, paste_feathered
from .plan import InferencePlan, audio_frame_index, edge_pad, output_frame_count, ping_pong, plan_inference

__all__ = ["LOOP_OPTIONS", "ChosenFace", "DubbingHooks", "DubbingSettings", "GenerateOption", "InferencePlan",
           "PreparedSource", "SourceTrack", "prepare_source", "prepare_template", "audio_frame_index", "audio_vectors", "check_options", "dub", "edge_pad", "face_choice",
           "face_flag", "feather_mask", "fetch_frames", "frames_in_order", "LOOP_STAGES", "inference_mode",
           "output_frame_count", "paste_feathered", "ping_pong", "plan_inference", "track_landmarks"]
