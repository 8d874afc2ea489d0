"""L-Net's cross-attention between the masked face and the reference (``encoder.ca2``), with the release's layout.

A pre-norm Transformer over the ``H·W`` feature positions of the deepest encoder level (12×12 = 144 tokens of 512
channels at 96×96 faces). Each layer is ``x = attention(norm_x(x), norm_y(y)) + x`` then
``x = feed_forward(norm(x)) + x``. As in the release, **queries and keys are both projected from the masked face's
tokens** (``x``) and only the values from the reference's (``y``): each masked-face position attends to the other
masked-face positions and gathers reference features with those weights. The feed-forward's GELU is the tanh
approximation, written out as the release writes it.

Keys: ``layers.{i}.0.{normx,normy,fn.to_q,fn.to_k,fn.to_v,fn.to_out.0}`` and ``layers.{i}.1.{norm,fn.net.0,fn.net.3}``
(the dropouts, p = 0, keep the indices).
"""
from __future__ import annotations

import math

import torch
from torch import nn

_GELU_SCALE = math.sqrt(2.0 / math.pi)


class TanhGELU(nn.Module):
    """``0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))``, the release's own formula (not ``F.gelu``'s erf)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(_GELU_SCALE * (x + 0.044715 * torch.pow(x, 3))))


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))``."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class DualPreNorm(nn.Module):
    """``fn(LayerNorm_x(x), LayerNorm_y(y))``."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.normx = nn.LayerNorm(dim)
        self.normy = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(self.normx(x), self.normy(y))


class FeedForward(nn.Module):
    """Linear -> tanh GELU -> Linear (``net.0`` and ``net.3``)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), TanhGELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttention(nn.Module):
    """Multi-head attention whose queries AND keys come from ``x`` and whose values come from ``y``."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        project = not (heads == 1 and dim_head == dim)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout)) if project else nn.Identity()

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, N, heads·d)`` -> ``(B, heads, N, d)``."""
        batch, tokens, _ = t.shape
        return t.reshape(batch, tokens, self.heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(x)), self._heads(self.to_v(y))
        attention = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        out = torch.matmul(attention, v)  # (B, heads, N, d)
        batch, _, tokens, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, -1))


class Transformer(nn.Module):
    """``(B, C, H, W)`` masked-face and reference features -> ``(B, C, H, W)`` (the masked face's, attended)."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([DualPreNorm(dim, CrossAttention(dim, heads=heads, dim_head=dim_head, dropout=dropout)),
                           PreNorm(dim, FeedForward(dim, mlp_dim, dropout=dropout))])
            for _ in range(depth)])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        x = x.reshape(batch, channels, -1).transpose(1, 2)  # (B, H·W, C) tokens in raster order
        y = y.reshape(batch, channels, -1).transpose(1, 2)
        for attend, feed_forward in self.layers:
            x = attend(x, y) + x
            x = feed_forward(x) + x
        return x.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


class PassThrough(nn.Module):
    """The release's ``RETURNX``: the levels without cross-attention return the masked face's features."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x
