"""GSmoothFace's long-audio chunks (``talkingface/models/gsmoothface/chunks.py``; docs/gsmoothface.md, "Long audio"):
the spans A2EP decodes (at most ``max_seq_len`` frames, the official 600-frame split with overlap 0), the linear
cross-fade that joins them, and ``predict_chunked`` calling ``predict`` once per span. Exact comparisons: the join is
a weighted mean computed in float64, so identical predictions come back bit for bit once rounded to float32."""
from __future__ import annotations

import numpy as np
import pytest

from talkingface.models.gsmoothface import chunks
from talkingface.models.gsmoothface.chunks import chunk_spans, join_chunks, predict_chunked

from breaks import mutated


@pytest.mark.parametrize("total,length,overlap", [
    (1, 600, 50), (600, 600, 50), (601, 600, 50), (1500, 600, 0), (1500, 600, 50), (1799, 600, 300),
    (37, 10, 3), (40, 10, 5), (11, 10, 0), (100, 1, 0)])
def test_chunk_spans_bound_cover_and_step(total, length, overlap):
    spans = chunk_spans(total, length, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == total
    assert all(0 < end - start <= length for start, end in spans)  # no chunk longer than the limit, none empty
    covered = np.zeros(total, int)
    for start, end in spans:
        covered[start:end] += 1
    assert covered.min() >= 1  # every frame predicted
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s1 == s0 + length - overlap and e0 - s1 == overlap  # each chunk starts length - overlap later
        assert e1 > e0  # ... and adds frames of its own
    assert all(end - start == length for start, end in spans[:-1])  # only the last may be short


def test_official_split_is_consecutive_600_frame_pieces():
    """Overlap 0: the official demo's cut of the audio into 600-frame pieces (the last one shorter)."""
    assert chunk_spans(1500, 600, 0) == [(0, 600), (600, 1200), (1200, 1500)]
    assert chunk_spans(1200, 600, 0) == [(0, 600), (600, 1200)]  # no empty trailing piece
    assert chunk_spans(600, 600, 0) == [(0, 600)]
    assert chunk_spans(250, 600, 50) == [(0, 250)]


@pytest.mark.parametrize("length,overlap", [(0, 0), (10, 6), (10, 10), (10, 11), (10, -1)])
def test_chunk_spans_errors(length, overlap):
    with pytest.raises(ValueError, match=f"chunks of {length} frames cannot overlap by {overlap}"):
        chunk_spans(100, length, overlap)


@pytest.mark.parametrize("total,length,overlap", [(97, 20, 7), (1500, 600, 50), (45, 10, 0), (12, 20, 5)])
def test_identical_overlapping_predictions_join_exactly(total, length, overlap):
    """Where the chunks agree, the cross-fade is the identity: (w1 x + w2 x) / (w1 + w2) in float64 is x within a few
    float64 roundings, far inside half a float32 step, so it rounds back to x exactly."""
    x = np.random.default_rng(0).standard_normal((total, 64)).astype(np.float32)
    spans = chunk_spans(total, length, overlap)
    joined = join_chunks([x[s:e].copy() for s, e in spans], spans, total)
    assert joined.dtype == np.float32 and joined.shape == x.shape
    assert np.array_equal(joined, x)


def offset_steps(total: int, length: int, overlap: int, offset: float) -> tuple[np.ndarray, float]:
    """Chunk k predicts a smooth base sequence plus k·offset; returns the joined sequence minus the base and the
    largest frame-to-frame step of that offset part."""
    t = np.arange(total, dtype=np.float64)
    base = np.sin(t / 7.0)[:, None] * np.array([[1.0, -0.5]])
    spans = chunk_spans(total, length, overlap)
    pieces = [base[s:e] + k * offset for k, (s, e) in enumerate(spans)]
    shift = chunks.join_chunks(pieces, spans, total) - base  # through the module: the break test patches it
    return shift, float(np.abs(np.diff(shift, axis=0)).max())


def test_constant_offset_is_spread_over_the_overlap():
    """A jump of ``offset`` between consecutive chunks becomes a linear ramp across their overlap: frame i (1..O) of
    the overlap moves by offset · i / (O + 1), so the largest step is offset / (O + 1), against the whole offset at
    the official seam (overlap 0)."""
    offset, total, length = 3.0, 58, 20
    for overlap in (5, 9, 1):
        spans = chunk_spans(total, length, overlap)
        assert len(spans) >= 3
        shift, step = offset_steps(total, length, overlap, offset)
        expected = np.zeros(total)  # the ramp, written out per chunk
        for k, (start, end) in enumerate(spans):
            expected[start:] = k * offset
            if k:
                ramp = np.arange(1, overlap + 1) / (overlap + 1)
                expected[start:start + overlap] = (k - 1) * offset + offset * ramp
        assert np.abs(shift - expected[:, None]).max() <= 1e-12 * offset
        assert step == pytest.approx(offset / (overlap + 1), rel=1e-12)
    shift, step = offset_steps(total, length, 0, offset)
    assert step == pytest.approx(offset, rel=1e-12)  # the official seam: the full jump in one frame


def test_uneven_cross_fade_is_caught(monkeypatch):
    """Deliberate break (docs/testing.md rule 5): weights 1/2 across the overlap instead of the ramp leave a step
    of offset / 2 at both ends of the overlap, (O + 1) / 2 = 3 times the bound offset / (O + 1) at O = 5."""
    mutated(monkeypatch, chunks, "join_chunks",
            ("w[:overlap] = np.arange(1, overlap + 1) / (overlap + 1)", "w[:overlap] = 0.5"),
            ("w[-overlap:] = 1 - np.arange(1, overlap + 1) / (overlap + 1)", "w[-overlap:] = 0.5"))
    _, step = offset_steps(58, 20, 5, 3.0)
    assert step == pytest.approx(3.0 / 2, rel=1e-12)


def test_predict_chunked_calls_predict_once_per_span():
    total, length, overlap = 130, 50, 10
    x = np.random.default_rng(1).standard_normal((total, 64)).astype(np.float32)
    calls = []

    def predict(start: int, end: int) -> np.ndarray:
        calls.append((start, end))
        return x[start:end].copy()

    out = predict_chunked(predict, total, length, overlap)
    assert calls == chunk_spans(total, length, overlap) == [(0, 50), (40, 90), (80, 130)]
    assert np.array_equal(out, x)
