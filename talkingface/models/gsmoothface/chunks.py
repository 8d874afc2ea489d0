"""Long driving audio for A2EP (docs/gsmoothface.md, "Long audio").

A2EP's biased mask covers ``max_seq_len`` frames (600, 24 s); longer sequences fail in the official code (FaceFormer
issue #48), whose demo therefore cuts the audio into 600-frame chunks, predicts each on its own and concatenates the
results: each chunk restarts from the style token, so the face jumps at every cut. Here the chunks overlap by
``overlap`` frames and the overlap is cross-faded linearly (each frame a weighted mean of the two predictions, the
weights moving from the earlier chunk to the later one), so no frame changes abruptly at a chunk boundary. With
``overlap = 0`` the split is the official one.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def chunk_spans(total: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``total`` frames with chunks of at most ``length`` frames, each starting
    ``length - overlap`` after the previous one (the last one ends at ``total``)."""
    if length < 1 or not 0 <= 2 * overlap <= length:
        raise ValueError(f"chunks of {length} frames cannot overlap by {overlap} (at most half a chunk: a middle "
                         f"chunk fades in and out)")
    if total <= length:
        return [(0, total)]
    spans, start = [], 0
    while start + length < total:
        spans.append((start, start + length))
        start += length - overlap
    spans.append((start, total))
    return spans


def join_chunks(pieces: list[np.ndarray], spans: list[tuple[int, int]], total: int) -> np.ndarray:
    """(total, ...) from per-chunk predictions (``pieces[k]`` covers ``spans[k]``), cross-fading where chunks
    overlap: frame t of an overlap [a, b) gets weight (t - a + 1) / (b - a + 1) for the later chunk."""
    out = np.zeros((total, *pieces[0].shape[1:]), np.float64)
    weight = np.zeros(total, np.float64)
    for k, ((start, end), piece) in enumerate(zip(spans, pieces)):
        w = np.ones(end - start)
        if k > 0:
            overlap = spans[k - 1][1] - start
            if overlap > 0:
                w[:overlap] = np.arange(1, overlap + 1) / (overlap + 1)
        if k + 1 < len(spans):
            overlap = end - spans[k + 1][0]
            if overlap > 0:
                w[-overlap:] = 1 - np.arange(1, overlap + 1) / (overlap + 1)
        out[start:end] += w.reshape(-1, *([1] * (piece.ndim - 1))) * piece[: end - start]
        weight[start:end] += w
    return (out / weight.reshape(-1, *([1] * (out.ndim - 1)))).astype(pieces[0].dtype)


def predict_chunked(predict: Callable[[int, int], np.ndarray], total: int, length: int, overlap: int) -> np.ndarray:
    """``predict(start, end) -> (end - start, ...)`` over every chunk, joined (``join_chunks``)."""
    spans = chunk_spans(total, length, overlap)
    return join_chunks([predict(start, end) for start, end in spans], spans, total)
