"""Shared 3D face machinery (in progress): so far the differentiable triangle rasterizer. The BFM 3D morphable
model, the Deep3DFaceRecon coefficient regressor and fitting will land here. Imports only torch and numpy."""
from .rasterizer import DEFAULT_CHUNK_PAIRS, Fragments, candidate_pairs, interpolate, rasterize, render

__all__ = ["DEFAULT_CHUNK_PAIRS", "Fragments", "candidate_pairs", "interpolate", "rasterize", "render"]
