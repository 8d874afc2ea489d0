"""GFPGANv1.3 (TencentARC's GFPGANv1Clean as VideoReTalking runs it on every output frame): the network with the
release's layout and numerics, the restore step of ``GFPGANer.enhance`` and strict loading of GFPGANv1.3.pth
(docs/videoretalking.md, "GFPGANv1.3")."""
from .network import GFPGAN_V13_CONFIG, GFPGANv1Clean, ResBlock, StyleGAN2GeneratorCSFT, gfpgan_v13, sft
from .restore import faces_to_input, output_to_faces, restore_faces
from .weights import GFPGAN_V13, STATE_KEYS, gfpgan_state, load_gfpgan, load_gfpgan_weights

__all__ = [
    "GFPGAN_V13", "GFPGAN_V13_CONFIG", "GFPGANv1Clean", "ResBlock", "STATE_KEYS", "StyleGAN2GeneratorCSFT",
    "faces_to_input", "gfpgan_state", "gfpgan_v13", "load_gfpgan", "load_gfpgan_weights", "output_to_faces",
    "restore_faces", "sft",
]
