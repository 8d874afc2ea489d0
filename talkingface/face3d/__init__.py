"""Shared 3D face machinery: the face model files (BFM09 readers, the derived ``BFM_model_front.mat`` and
AudioDVP ``data.mat``, a synthetic stand-in), the parametric face model in Deep3DFaceRecon's and AudioDVP's
conventions, and the differentiable triangle rasterizer. The Deep3DFaceRecon coefficient regressor and fitting
will land here. Imports only torch, numpy, scipy and the lower layers (docs/face3d.md)."""
from .bfm_files import (AUDIODVP_DATA, BFM_FRONT, RAW_FILES, STANDIN_FILE, STANDIN_KEY, Bfm09Sources,
                        audiodvp_data, build_bfm, is_standin, load_lm3d, read_audiodvp_data, read_bfm09_sources,
                        read_bfm_front, read_exp_pca, read_facemodel_info, read_index, read_lm3d,
                        read_morphable_model, read_std_exp, transfer_bfm09)
from .face_model import AUDIODVP, CONVENTIONS, DEEP3DFACERECON, MIRROR_68, FaceConvention, ParametricFaceModel
from .rasterizer import DEFAULT_CHUNK_PAIRS, Fragments, candidate_pairs, interpolate, rasterize, render
from .standin import JAW_COMPONENT, JAW_OPEN_SIGN, StandinMesh, standin_mesh, write_standin_bfm

__all__ = [
    "AUDIODVP", "AUDIODVP_DATA", "BFM_FRONT", "CONVENTIONS", "DEEP3DFACERECON", "DEFAULT_CHUNK_PAIRS", "JAW_COMPONENT",
    "JAW_OPEN_SIGN", "MIRROR_68", "RAW_FILES", "STANDIN_FILE", "STANDIN_KEY", "Bfm09Sources", "FaceConvention",
    "Fragments", "ParametricFaceModel", "StandinMesh", "audiodvp_data", "build_bfm", "candidate_pairs",
    "interpolate", "is_standin", "load_lm3d", "rasterize", "read_audiodvp_data", "read_bfm09_sources",
    "read_bfm_front", "read_exp_pca", "read_facemodel_info", "read_index", "read_lm3d", "read_morphable_model",
    "read_std_exp", "render", "standin_mesh", "transfer_bfm09", "write_standin_bfm",
]
