"""DINet's data pipeline on the processed clip store: crops, 9-frame clips, references, datasets, inference plan.

See docs/dinet_data.md for every rule and its source in MRzzm/DINet.
"""
from .clips import ClipCrop, ClipPlan, clip_ends, generator_window, plan_clips, syncnet_window
from .crops import (crop_box, crop_face, crop_radius, face_size, mouth_box, mouth_mask, mouth_region,
                    rejection_reason)
from .dataset import DINetClipDataset, DINetFrameDataset
from .inference_plan import dinet_feather_mask, paste_dinet_feathered, paste_official, plan_references
from .references import clip_stage_pick, frame_stage_pick, inference_reference_indices

__all__ = ["ClipCrop", "ClipPlan", "DINetClipDataset", "DINetFrameDataset", "clip_ends",
           "clip_stage_pick", "crop_box", "crop_face", "crop_radius", "dinet_feather_mask", "face_size",
           "frame_stage_pick", "generator_window", "inference_reference_indices",
           "mouth_box", "mouth_mask", "mouth_region", "paste_dinet_feathered", "paste_official", "plan_clips",
           "plan_references", "rejection_reason", "syncnet_window"]
