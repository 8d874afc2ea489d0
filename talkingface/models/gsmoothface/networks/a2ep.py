"""A2EP, GSmoothFace's audio-to-expression predictor (``Face3DMMOneHotFormer`` of zhanghm1995/GSmoothFace, itself
FaceFormer adapted to 64 3DMM expression coefficients; 3dmm_methods.md §2.1, §8), in the layout of the released
Lightning checkpoint's ``model.*`` keys.

- ``audio_encoder``: transformers' ``Wav2Vec2Model`` run by ``wav2vec.encode`` (CNN features interpolated to the
  frames before the transformer), ``audio_feature_map`` Linear(hidden, feature_dim);
- ``obj_vector`` Linear(num_speakers, feature_dim, no bias) on the one-hot speaker: the style embedding, the first
  decoder token, and added to every fed-back output;
- ``vertice_map`` Linear(vertice_dim, feature_dim) on fed-back outputs, ``vertice_map_r`` Linear(feature_dim,
  vertice_dim) zero-initialised;
- ``PPE``: a sinusoidal table ``pe`` (5000, 1, feature_dim) written for (T, B, D) input but **called on batch-first
  data**, so item b of the batch gets row ``pe[b]`` at every frame (row 0, ``[0, 1, 0, 1, ...]``, at batch 1): kept;
- ``transformer_decoder``: one post-norm ReLU ``TransformerDecoderLayer(feature_dim, 4 heads, ff 2·feature_dim,
  batch_first)``; self-attention under the ALiBi-style ``biased_mask`` (4 heads, slopes 1/4 ... 1/256, the bias steps
  every ``period`` frames, ``max_seq_len`` 600) in ``predict`` and teacher forcing, **no mask in the free-running
  training forward** (as the official code); cross-attention restricted to the frame's own audio feature
  (``alignment_mask``, FaceFormer's ``vocaset`` mode). The 3-D masks hold one batch item's heads, so the masked paths
  take batch 1, as the official ones.

The masks and the mouth weights are not in the state dict (plain attributes there, non-persistent buffers here).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
from torch import nn

from . import wav2vec

HEADS = 4
MAX_SEQ_LEN = 600
PE_ROWS = 5000


def alibi_slopes(n_head: int) -> list[float]:
    """ALiBi's head slopes (1/4, 1/16, 1/64, 1/256 for 4 heads; the interleaved rule otherwise)."""
    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start ** i for i in range(n)]

    if math.log2(n_head).is_integer():
        return power_of_2(n_head)
    closest = 2 ** math.floor(math.log2(n_head))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n_head - closest]


def biased_mask(n_head: int = HEADS, max_seq_len: int = MAX_SEQ_LEN, period: int = 25) -> torch.Tensor:
    """FaceFormer's ``init_biased_mask``: (n_head, L, L) float, ``-inf`` above the diagonal, and on and below it
    ``-slope · (number of whole periods between the frames)`` as the official loop builds it."""
    slopes = torch.tensor(alibi_slopes(n_head), dtype=torch.float32)
    steps = torch.arange(0, max_seq_len, period).unsqueeze(1).repeat(1, period).view(-1) // period
    steps = -torch.flip(steps, dims=[0])
    alibi = torch.zeros(max_seq_len, max_seq_len)
    for i in range(max_seq_len):
        alibi[i, : i + 1] = steps[-(i + 1):]
    alibi = slopes.view(-1, 1, 1) * alibi.unsqueeze(0)
    causal = (torch.triu(torch.ones(max_seq_len, max_seq_len)) == 1).transpose(0, 1)
    mask = causal.float().masked_fill(~causal, float("-inf")).masked_fill(causal, 0.0)
    return mask.unsqueeze(0) + alibi


def alignment_mask(frames: int, features: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(frames, features) bool, True where attention is *not* allowed: frame i sees audio feature i only."""
    mask = torch.ones(frames, features, dtype=torch.bool, device=device)
    index = torch.arange(min(frames, features), device=device)
    mask[index, index] = False
    return mask


class BatchAxisPositionalEncoding(nn.Module):
    """The official ``PositionalEncoding``: ``x + pe[:x.size(0)]`` then dropout; ``pe`` is (max_len, 1, d), so on
    batch-first input it adds row b to every frame of item b (kept: the released weights were trained with it)."""

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = PE_ROWS):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.size(0)])


class A2EP(nn.Module):
    """``Face3DMMOneHotFormer`` with the official forward (``teacher_forcing`` True/False) and ``predict``.

    Batches are the official dicts: ``raw_audio`` (B, samples) normalised 16 kHz audio, ``template`` (teacher
    forcing: (B, 1, D); free running: (B, T, 3N) per-frame neutral vertices), ``face_vertex`` (B, T, D or 3N),
    ``one_hot`` (B, num_speakers), ``exp_base`` (B, 3N, 64).

    ``audio_width``: instead of wav2vec 2.0, per-frame rows of a registered audio feature (B, T, audio_width) in
    ``raw_audio``, mapped by ``audio_feature_map`` alone (``audio_encoder`` is None; a toolkit option for small
    models, not the release).
    """

    def __init__(self, wav2vec2: Mapping[str, Any] | None = None, feature_dim: int = 1024, vertice_dim: int = 64,
                 num_speakers: int = 8, period: int = 25, max_seq_len: int = MAX_SEQ_LEN, attention: str = "eager",
                 audio_width: int | None = None):
        super().__init__()
        self.vertice_dim = vertice_dim
        if audio_width is None:
            self.audio_encoder = wav2vec.build_wav2vec2(wav2vec2, attention)
            hidden = int(self.audio_encoder.config.hidden_size)
        else:
            self.audio_encoder = None
            hidden = int(audio_width)
        self.audio_feature_map = nn.Linear(hidden, feature_dim)
        self.vertice_map = nn.Linear(vertice_dim, feature_dim)
        self.PPE = BatchAxisPositionalEncoding(feature_dim)
        self.register_buffer("biased_mask", biased_mask(HEADS, max_seq_len, period), persistent=False)
        layer = nn.TransformerDecoderLayer(d_model=feature_dim, nhead=HEADS, dim_feedforward=2 * feature_dim,
                                           batch_first=True)
        self.transformer_decoder = nn.TransformerDecoder(layer, num_layers=1)
        self.vertice_map_r = nn.Linear(feature_dim, vertice_dim)
        self.obj_vector = nn.Linear(num_speakers, feature_dim, bias=False)
        nn.init.constant_(self.vertice_map_r.weight, 0)
        nn.init.constant_(self.vertice_map_r.bias, 0)
        self.register_buffer("mouth_mask_weight", torch.empty(0), persistent=False)

    @property
    def max_frames(self) -> int:
        """The longest sequence the biased mask covers (official: 600 frames, 24 s)."""
        return int(self.biased_mask.shape[-1])

    def set_mouth_weights(self, weights: torch.Tensor | None) -> None:
        """Per-vertex loss weights (1.8 on the mouth, 1 elsewhere; None: unweighted ``criterion``), kept in float64
        as the official ``np.ones`` and cast to the prediction's dtype in ``loss``."""
        weights = torch.empty(0) if weights is None else torch.as_tensor(weights).reshape(1, -1)
        self.mouth_mask_weight = weights.to(self.obj_vector.weight.device, torch.float64)

    def audio_features(self, audio: torch.Tensor, frame_num: int | None = None, output_fps: float = 30.0
                       ) -> torch.Tensor:
        """(B, frames, feature_dim): the wav2vec 2.0 encoding (or the feature rows, resampled to ``frame_num`` when
        their count differs) mapped by ``audio_feature_map``."""
        if self.audio_encoder is None:
            if frame_num is not None and audio.shape[1] != frame_num:
                audio = wav2vec.linear_interpolation(audio, 1, 1, output_len=frame_num)
            return self.audio_feature_map(audio)
        return self.audio_feature_map(wav2vec.encode(self.audio_encoder, audio, frame_num, output_fps))

    def _decode(self, tokens: torch.Tensor, memory: torch.Tensor, masked: bool) -> torch.Tensor:
        length = tokens.shape[1]
        tgt_mask = self.biased_mask[:, :length, :length].clone().detach() if masked else None
        memory_mask = alignment_mask(length, memory.shape[1], memory.device)
        return self.vertice_map_r(self.transformer_decoder(tokens, memory, tgt_mask=tgt_mask, memory_mask=memory_mask))

    def _autoregress(self, style: torch.Tensor, memory: torch.Tensor, frames: int, masked: bool) -> torch.Tensor:
        """The official loop: frames steps, each decoding the whole prefix; the last step's output is returned."""
        tokens = style
        out = style.new_zeros(style.shape[0], 0, self.vertice_dim)
        for _ in range(frames):
            out = self._decode(self.PPE(tokens), memory, masked)
            fed_back = self.vertice_map(out[:, -1, :]).unsqueeze(1) + style
            tokens = torch.cat((tokens, fed_back), 1)
        return out

    def forward(self, batch: Mapping[str, torch.Tensor], criterion: Callable | None = None, teacher_forcing: bool = True,
                return_loss: bool = True, return_exp: bool = False) -> torch.Tensor:
        """The official training forward: the loss, or the outputs with ``return_loss=False`` (expressions with
        ``return_exp``, else ``template + exp_base · expressions``)."""
        template, vertice = batch["template"], batch["face_vertex"]
        style = self.obj_vector(batch["one_hot"]).unsqueeze(1)
        frame_num = vertice.shape[1]
        memory = self.audio_features(batch["raw_audio"], frame_num=frame_num)
        if teacher_forcing:
            tokens = self.vertice_map(torch.cat((template, vertice[:, :-1]), 1) - template) + style
            out = self._decode(self.PPE(tokens), memory, masked=True)
        else:
            out = self._autoregress(style, memory, frame_num, masked=False)
        if self.vertice_dim == 64:
            if not return_exp:
                out = template + torch.einsum("ijk,iak->iaj", batch["exp_base"], out)
        else:
            out = out + template
        if not return_loss:
            return out
        return self.loss(out, vertice, criterion)

    def loss(self, predicted: torch.Tensor, target: torch.Tensor, criterion: Callable | None = None) -> torch.Tensor:
        """With mouth weights: mean over frames and vertices of the weighted squared vertex distance; else
        ``mean(criterion(predicted, target))``."""
        if self.mouth_mask_weight.numel():
            b, t = predicted.shape[:2]
            squared = ((predicted.reshape(b, t, -1, 3) - target.reshape(b, t, -1, 3)) ** 2).sum(-1)
            return torch.mean(squared * self.mouth_mask_weight[None].to(squared))
        if criterion is None:
            raise ValueError("A2EP.loss needs a criterion when no mouth weights are set")
        return torch.mean(criterion(predicted, target))

    def predict(self, batch: Mapping[str, torch.Tensor], incremental: bool = True) -> torch.Tensor:
        """The official ``predict``: audio at 25 fps (``round(features / 50 · 25)`` frames), autoregressive with the
        biased mask; (B, frames, 64) raw expression coefficients.

        ``incremental`` (in eval mode): the same numbers decoded one new row per step (``_incremental``) instead of the
        official loop, which re-decodes the whole prefix at every step (``_autoregress``: O(T²) decoder rows per chunk;
        a 600-frame chunk is 6.3 TFLOP with the release's sizes)."""
        style = self.obj_vector(batch["one_hot"]).unsqueeze(1)
        memory = self.audio_features(batch["raw_audio"], output_fps=25)
        if incremental and not self.training:
            return self._incremental(style, memory)
        return self._autoregress(style, memory, memory.shape[1], masked=True)

    def _incremental(self, style: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """``_autoregress(masked=True)`` without the repeated work. Under the causal biased mask the decoder's row i
        depends on tokens 0 .. i only, and every token is fixed once fed back, so each step decodes its new row alone
        against cached keys and values. The cross-attention sees exactly one audio feature per row (the alignment
        mask), so its softmax is 1 and its output is ``out_proj(v_proj(memory))`` of that row, for all rows at once.
        The one post-norm layer is spelled out: self-attention, add & norm1, cross, add & norm2, ReLU feed-forward,
        add & norm3 (eval mode: no dropout)."""
        layer = self.transformer_decoder.layers[0]
        attention, heads = layer.self_attn, layer.self_attn.num_heads
        width = style.shape[-1]
        head_dim = width // heads
        batch, frames = style.shape[0], memory.shape[1]
        w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attention.in_proj_bias.chunk(3)
        cross = layer.multihead_attn
        cross_v = torch.nn.functional.linear(memory, cross.in_proj_weight.chunk(3)[2], cross.in_proj_bias.chunk(3)[2])
        cross_out = cross.out_proj(cross_v)  # (B, frames, D): each row's only attended value
        offset = self.PPE.pe[:batch].transpose(0, 1)  # (1, B, D) -> the batch-axis quirk, one row per item
        keys = style.new_zeros(batch, heads, frames, head_dim)
        values = style.new_zeros(batch, heads, frames, head_dim)
        token = style
        outputs = []
        for i in range(frames):
            x = token[:, 0] + offset[0]  # (B, D)
            keys[:, :, i] = torch.nn.functional.linear(x, w_k, b_k).view(batch, heads, head_dim)
            values[:, :, i] = torch.nn.functional.linear(x, w_v, b_v).view(batch, heads, head_dim)
            query = torch.nn.functional.linear(x, w_q, b_q).view(batch, heads, 1, head_dim)
            scores = query @ keys[:, :, :i + 1].transpose(-1, -2) / math.sqrt(head_dim)
            scores = scores + self.biased_mask[:, i:i + 1, :i + 1].to(scores.dtype)
            mixed = (torch.softmax(scores, -1) @ values[:, :, :i + 1]).reshape(batch, width)
            x = layer.norm1(x + attention.out_proj(mixed))
            x = layer.norm2(x + cross_out[:, i])
            x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
            row = self.vertice_map_r(x)
            outputs.append(row)
            token = (self.vertice_map(row) + style[:, 0]).unsqueeze(1)
        return torch.stack(outputs, 1)
