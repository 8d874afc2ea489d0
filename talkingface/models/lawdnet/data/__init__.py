"""LawDNet's data pipeline: the frontalised crop (``FaceAlign``) and its soft mouth mask (``SmoothSqMask``)."""
from .face_align import (LANDMARKS_68_TO_25, align_face, align_matrix, crop_pixels_of, crop_size, paste_aligned,
                         smooth_square_mask, template_points, warp_source_pixels)

__all__ = ["LANDMARKS_68_TO_25", "align_face", "align_matrix", "crop_pixels_of", "crop_size", "paste_aligned",
           "smooth_square_mask", "template_points", "warp_source_pixels"]
