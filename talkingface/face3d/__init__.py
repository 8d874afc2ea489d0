"""Shared 3D face machinery: the face model files (BFM09 readers, the derived ``BFM_model_front.mat`` and
AudioDVP ``data.mat``, a synthetic stand-in), the parametric face model in Deep3DFaceRecon's and AudioDVP's
conventions, the differentiable triangle rasterizer, and Deep3DFaceRecon's coefficient regressor (``ReconNet``) with
its ``align_img`` preprocessing, and per-video fitting as AudioDVP does it. Imports only torch, numpy, scipy, PIL and the lower layers (docs/face3d.md)."""
from .align import (align_img, align_params, crop_box, extract_5p, landmarks_from_crop, landmarks_to_crop, landmarks_y_up,
                    pos_fit, resize_n_crop)
from .bfm_files import (AUDIODVP_DATA, BFM_FRONT, RAW_FILES, STANDIN_FILE, STANDIN_KEY, Bfm09Sources,
                        audiodvp_data, build_bfm, is_standin, load_lm3d, read_audiodvp_data, read_bfm09_sources,
                        read_bfm_front, read_exp_pca, read_facemodel_info, read_index, read_lm3d,
                        read_morphable_model, read_std_exp, transfer_bfm09)
from .face_model import AUDIODVP, CONVENTIONS, DEEP3DFACERECON, MIRROR_68, FaceConvention, ParametricFaceModel
from .fitting import LANDMARK_WEIGHTS, FitResult, FitSettings, fit_video, screen_vertices
from .portrait import crop_portrait, from_portrait, portrait_box, portrait_params, to_portrait
from .rasterizer import DEFAULT_CHUNK_PAIRS, Fragments, candidate_pairs, interpolate, rasterize, render
from .recon import (COEFF_DIM, COEFF_SLICES, DEEP3DFACERECON_EPOCH_20, FINAL_LAYERS, VIDEORETALKING_FACE3D, ReconNet,
                    image_to_tensor, net_recon_state, read_recon_checkpoint, split_coeffs)
from ..nets.resnet import Bottleneck, ResNet50
from .standin import (JAW_COMPONENT, JAW_OPEN_SIGN, StandinMesh, bfm_sized_standin, bfm_sized_standin_config,
                      standin_mesh, write_standin_bfm)

__all__ = [
    "AUDIODVP", "AUDIODVP_DATA", "BFM_FRONT", "CONVENTIONS", "DEEP3DFACERECON", "DEFAULT_CHUNK_PAIRS", "JAW_COMPONENT",
    "JAW_OPEN_SIGN", "MIRROR_68", "RAW_FILES", "STANDIN_FILE", "STANDIN_KEY", "Bfm09Sources", "FaceConvention",
    "Fragments", "ParametricFaceModel", "StandinMesh", "audiodvp_data", "build_bfm", "candidate_pairs",
    "interpolate", "is_standin", "load_lm3d", "rasterize", "read_audiodvp_data", "read_bfm09_sources",
    "read_bfm_front", "read_exp_pca", "read_facemodel_info", "read_index", "read_lm3d", "read_morphable_model",
    "read_std_exp", "render", "standin_mesh", "bfm_sized_standin", "bfm_sized_standin_config", "transfer_bfm09", "write_standin_bfm",
    # the coefficient regressor and its preprocessing
    "COEFF_DIM", "COEFF_SLICES", "DEEP3DFACERECON_EPOCH_20", "FINAL_LAYERS", "VIDEORETALKING_FACE3D", "Bottleneck",
    "ReconNet", "ResNet50", "align_img", "align_params", "crop_box", "extract_5p", "image_to_tensor", "landmarks_from_crop",
    "landmarks_to_crop", "landmarks_y_up", "net_recon_state", "pos_fit", "read_recon_checkpoint", "resize_n_crop",
    "split_coeffs",
    # per-video fitting (AudioDVP) and its portrait crop
    "LANDMARK_WEIGHTS", "FitResult", "FitSettings", "crop_portrait", "fit_video", "from_portrait", "portrait_box",
    "portrait_params", "screen_vertices", "to_portrait",
]
