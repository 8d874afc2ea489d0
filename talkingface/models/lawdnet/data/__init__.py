"""LawDNet's data pipeline: the frontalised crop (``FaceAlign``), its soft mouth mask (``SmoothSqMask``), the
paste-backs, and the training crops on the shared 9-frame clip datasets."""
from .face_align import (LANDMARKS_68_TO_25, align_face, align_matrix, crop_pixels_of, crop_size, paste_aligned,
                         paste_scattered, smooth_square_mask, template_points, warp_crop, warp_source_pixels)
from .training_crops import LAWDNET_CROPS, box_matrix, crop_aligned, matrix_box, plan_aligned_clips

__all__ = ["LANDMARKS_68_TO_25", "LAWDNET_CROPS", "align_face", "align_matrix", "box_matrix", "crop_aligned",
           "crop_pixels_of", "crop_size", "matrix_box", "paste_aligned", "paste_scattered", "plan_aligned_clips",
           "smooth_square_mask", "template_points", "warp_crop", "warp_source_pixels"]
