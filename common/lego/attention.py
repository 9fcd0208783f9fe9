"""Masked cross-attention and feed-forward layers of a latent update step."""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` where ``mask`` is True; all-masked slices give zeros.

    A sample with no valid entry (an empty bag) must not produce NaN, which would poison
    gradients even where its output is later discarded.
    """
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return torch.nan_to_num(weights, nan=0.0)


def segment_softmax(scores: torch.Tensor, segment: torch.Tensor, segments: int) -> torch.Tensor:
    """Softmax of ``scores`` (N, K) over the rows of each segment: row i belongs to segment
    ``segment[i]`` (one of ``segments``). The per-segment maximum is subtracted first (without a
    gradient: the softmax does not depend on it), so large scores do not overflow."""
    k = scores.shape[1]
    index = segment.unsqueeze(1).expand(-1, k)
    top = torch.full((segments, k), float("-inf"), dtype=scores.dtype, device=scores.device)
    top = top.scatter_reduce(0, index, scores.detach(), reduce="amax", include_self=True)
    e = torch.exp(scores - top[segment])  # (N, K)
    total = torch.zeros((segments, k), dtype=e.dtype, device=e.device).index_add(0, segment, e)
    return e / total[segment]


class CrossAttention(nn.Module):
    """Multi-head attention: latent rows query the encoder tokens (keys and values)."""

    def __init__(
        self,
        query_dim: int,
        context_dim: int,
        heads: int = 1,
        dim_head: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (b, c, d) queries, ``context`` (b, n, D) tokens, ``mask`` (b, n) True = valid."""
        b, c, _ = x.shape
        n = context.shape[1]
        h = self.heads
        q = self.to_q(x).view(b, c, h, -1).transpose(1, 2)  # (b, h, c, e)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        k = k.view(b, n, h, -1).transpose(1, 2)  # (b, h, n, e)
        v = v.view(b, n, h, -1).transpose(1, 2)  # (b, h, n, e)
        scores = torch.einsum("bhce,bhne->bhcn", q, k) * self.scale
        attn = masked_softmax(scores, mask[:, None, None, :])  # (b, h, c, n)
        attn = self.dropout(attn)
        out = torch.einsum("bhcn,bhne->bhce", attn, v)
        out = out.transpose(1, 2).reshape(b, c, -1)  # (b, c, h*e)
        return self.to_out(out)


class FeedForward(nn.Module):
    """Position-wise GELU MLP applied to each latent row."""

    def __init__(self, dim: int, mult: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * mult, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
