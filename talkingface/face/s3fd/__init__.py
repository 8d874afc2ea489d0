"""S3FD face detector as joonson/syncnet_python's ``detectors/s3fd`` runs it (the LSE face protocol)."""
from .boxes import decode, detect_one, feature_map_sizes, nms_numpy, prior_boxes, ssd_nms
from .detector import CONF_TH, FINAL_NMS_IOU, SCALES, S3FDDetector
from .network import S3FD, L2Norm
from .preprocess import RGB_MEAN, prepare, resize_linear, scaled_size
from .weights import SFD_FACE, SFD_FACE_SHA256

__all__ = [
    "CONF_TH", "FINAL_NMS_IOU", "L2Norm", "RGB_MEAN", "S3FD", "S3FDDetector", "SCALES", "SFD_FACE",
    "SFD_FACE_SHA256", "decode", "detect_one", "feature_map_sizes", "nms_numpy", "prepare", "prior_boxes",
    "resize_linear", "scaled_size", "ssd_nms",
]
