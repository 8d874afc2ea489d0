"""GPEN-BFR-512 (yangxy/GPEN's ``FullGenerator``, as VideoReTalking runs it on its reference frames) in plain PyTorch:
the release's state-dict layout and numerics, its ``upfirdn2d`` and fused leaky ReLU as torch operations, and
``FaceGAN.process``'s conversions around it (docs/videoretalking.md, "GPEN-BFR-512")."""
from .network import (ConvLayer, EqualConv2d, EqualLinear, FullGenerator, Generator, ModulatedConv2d, NoiseInjection,
                      StyledConv, ToRGB, channel_widths)
from .ops import FusedLeakyReLU, fused_leaky_relu, make_kernel, upfirdn2d
from .restore import faces_to_input, output_to_faces, restore_faces
from .weights import GPEN_BFR_512, RELEASE_CONFIG, gpen_bfr_512, load_gpen

__all__ = [
    "ConvLayer", "EqualConv2d", "EqualLinear", "FullGenerator", "FusedLeakyReLU", "GPEN_BFR_512", "Generator",
    "ModulatedConv2d", "NoiseInjection", "RELEASE_CONFIG", "StyledConv", "ToRGB", "channel_widths",
    "faces_to_input", "fused_leaky_relu", "gpen_bfr_512", "load_gpen", "make_kernel", "output_to_faces",
    "restore_faces", "upfirdn2d",
]
