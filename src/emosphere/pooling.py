"""Poolings from frame features (batch, frames, dim) to one vector per utterance.

Each takes ``mask`` (batch, frames), True on valid frames, and gives every
utterance in a padded batch the result it would get alone: padded frames are
zeroed before every convolution, masked as attention keys and left out of
every mean.

* :class:`StylePooling`: the paper's style pooling layer (after the
  Meta-StyleSpeech mel style encoder): spectral MLP, two gated temporal
  convolutions, multi-head self-attention, a projection and a masked mean.
* :class:`AttentiveStatisticsPooling`: the challenge baseline (weighted mean
  and standard deviation, 2 x dim out).
* :class:`MeanPooling`: the plain masked mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid frames of (batch, frames, dim)."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class GatedConv(nn.Module):
    """Residual gated convolution: Conv1d to 2x channels, GLU ``x1 * sigmoid(x2)``, dropout, + input."""

    def __init__(self, dim: int, kernel_size: int = 5, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, 2 * dim, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask.unsqueeze(-1).to(x.dtype)  # zero padding so it cannot leak into valid frames
        y = F.glu(self.conv(x.transpose(1, 2)), dim=1).transpose(1, 2)
        return x + self.dropout(y)


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with residual; padded frames are masked as keys.

    As in the original, scores are divided by sqrt(dim), not sqrt(d_k).
    """

    def __init__(self, dim: int, heads: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, frames, self.heads, dim // self.heads).transpose(1, 2)

        q, k, v = split_heads(self.query(x)), split_heads(self.key(x)), split_heads(self.value(x))
        keys = mask[:, None, None, :]  # (batch, 1, 1, frames): which keys each query may see
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keys, dropout_p=self.dropout.p if self.training else 0.0, scale=self.scale
        )
        y = y.transpose(1, 2).reshape(batch, frames, dim)
        return x + self.dropout(self.out(y))


class StylePooling(nn.Module):
    """The paper's style pooling layer; ``dim`` in and out."""

    def __init__(self, dim: int, heads: int = 2, kernel_size: int = 5, dropout: float = 0.1) -> None:
        super().__init__()
        self.spectral = nn.Sequential(
            nn.Linear(dim, dim),
            nn.Mish(),
            nn.Dropout(dropout),
            nn.Linear(dim, dim),
            nn.Mish(),
            nn.Dropout(dropout),
        )
        self.temporal = nn.ModuleList([GatedConv(dim, kernel_size, dropout) for _ in range(2)])
        self.attention = MultiHeadSelfAttention(dim, heads, dropout)
        self.projection = nn.Linear(dim, dim)
        self.output_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.spectral(x)
        for conv in self.temporal:
            x = conv(x, mask)
        x = self.attention(x, mask)
        return masked_mean(self.projection(x), mask)


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and standard deviation (the challenge baseline); ``2 * dim`` out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.attention = nn.Linear(dim, 1, bias=False)
        self.output_dim = 2 * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.attention(torch.tanh(self.linear(x))).squeeze(-1)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        mean = (x * weights).sum(1)
        variance = (x * x * weights).sum(1) - mean * mean
        return torch.cat([mean, variance.clamp_min(1e-5).sqrt()], dim=-1)


class MeanPooling(nn.Module):
    """Masked mean of the frame features; ``dim`` out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.output_dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask)


POOLINGS = ("style", "attentive", "mean")


def build_pooling(name: str, dim: int, *, heads: int = 2, dropout: float = 0.1) -> nn.Module:
    """A pooling by name: one of :data:`POOLINGS`."""
    if name == "style":
        return StylePooling(dim, heads=heads, dropout=dropout)
    if name == "attentive":
        return AttentiveStatisticsPooling(dim)
    if name == "mean":
        return MeanPooling(dim)
    raise ValueError(f"unknown pooling {name!r}; choose one of {POOLINGS}")
