"""RetinaFace-R50 face detector (GPEN's ``RetinaFace(cfg_re50)``, VideoReTalking's enhancement chain): network,
priors/decoding/NMS and a detector giving boxes and five landmarks (docs/retinaface.md)."""
from .boxes import (CONFIDENCE_THRESHOLD, KEEP_TOP_K, MIN_SIZES, NMS_THRESHOLD, STEPS, TOP_K, VARIANCES, decode,
                    decode_detections, decode_landmarks, feature_map_sizes, nms, postprocess, prior_boxes)
from .detector import RetinaFaceDetector, load_retinaface_weights, to_gpen_landmarks
from .network import FPN, SSH, RetinaFace, ResNet50Body
from .preprocess import BGR_MEAN, detection_scale, prepare, resize_linear
from .weights import RETINAFACE_R50

__all__ = [
    "BGR_MEAN", "CONFIDENCE_THRESHOLD", "FPN", "KEEP_TOP_K", "MIN_SIZES", "NMS_THRESHOLD", "RETINAFACE_R50", "SSH",
    "STEPS", "TOP_K", "VARIANCES", "ResNet50Body", "RetinaFace", "RetinaFaceDetector", "decode", "decode_detections",
    "decode_landmarks",
    "detection_scale", "feature_map_sizes", "load_retinaface_weights", "nms", "postprocess", "prepare",
    "prior_boxes", "resize_linear", "to_gpen_landmarks",
]
