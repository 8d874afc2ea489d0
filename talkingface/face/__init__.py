"""Face detection, 68 landmarks, tracking, smoothing and crops. Importing it registers the face backends."""
from .arcface import ARCFACE_R100, identity_loss, load_arcface
from .base import Box, FaceBackend, build_face_backend
from .crops import align_to_template, crop_and_resize, resize_image, similarity_transform, square_box, warp_affine
from .dlib_backend import DlibBackend, dlib_model_path
from .face_alignment_backend import FaceAlignmentBackend
from .openface import OpenFaceBackend, read_openface_csv
from .parsenet import PARSENET_LATEST, ParseNet, load_parsenet
from .retinaface import RETINAFACE_R50, RetinaFaceDetector
from .tracking import FaceTrack, FaceTracker, fill_gaps, savgol_smooth, smooth_track, track_frames

__all__ = [
    "ARCFACE_R100", "identity_loss", "load_arcface",
    "Box", "DlibBackend", "FaceAlignmentBackend", "FaceBackend", "FaceTrack", "FaceTracker", "OpenFaceBackend",
    "PARSENET_LATEST", "ParseNet", "RETINAFACE_R50", "RetinaFaceDetector",
    "align_to_template", "build_face_backend", "crop_and_resize", "dlib_model_path", "fill_gaps", "load_parsenet",
    "read_openface_csv",
    "resize_image", "savgol_smooth", "similarity_transform", "smooth_track", "square_box", "track_frames",
    "warp_affine",
]
