"""ParseNet face parsing (PSFR-GAN's network, GPEN's ``ParseNet-latest.pth``) and the face and mouth masks GPEN and
VideoReTalking make from it (docs/faces.md, "Face parsing (ParseNet)")."""
from .imageops import gaussian_blur, gaussian_kernel, resize_linear_u8
from .masks import (BLUR_KSIZE, BLUR_SIGMA, CLASS_NAMES, FACE_MASK_VALUES, MASK_BORDER, MOUTH_MASK_VALUES, PARSE_SIZE,
                    face_masks, image_to_input, labels_to_mask, mask_postprocess, mouth_mask, parse_labels,
                    parse_logits, parse_mask, zero_border)
from .network import ParseNet
from .weights import PARSENET_LATEST, load_parsenet

__all__ = [
    "BLUR_KSIZE", "BLUR_SIGMA", "CLASS_NAMES", "FACE_MASK_VALUES", "MASK_BORDER", "MOUTH_MASK_VALUES",
    "PARSENET_LATEST", "PARSE_SIZE", "ParseNet", "face_masks", "gaussian_blur", "gaussian_kernel", "image_to_input",
    "labels_to_mask", "load_parsenet", "mask_postprocess", "mouth_mask", "parse_labels", "parse_logits", "parse_mask",
    "resize_linear_u8", "zero_border",
]
