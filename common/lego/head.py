"""The task head of a block, applied to the frequency-domain latent."""

from __future__ import annotations

import math

import torch
from torch import nn


class LegoHead(nn.Module):
    """LayerNorm + Linear on the pooled frequency-domain latent.

    Each latent row's real and imaginary parts form a ``2d`` feature vector; it is
    layer-normalised row by row, mean-pooled over the ``c`` rows and mapped to the outputs.
    Normalising before pooling keeps every row in play: a mean over the rows of a linear
    transform of the 2-D DFT would only see the latent's first row.
    """

    def __init__(self, latent_dim: int, n_outputs: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(2 * latent_dim)
        self.linear = nn.Linear(2 * latent_dim, n_outputs)

    def forward(self, freq: torch.Tensor) -> torch.Tensor:
        """``freq`` complex (b, c, d) -> logits (b, n_outputs)."""
        feats = torch.cat([freq.real, freq.imag], dim=-1)  # (b, c, 2d)
        pooled = self.norm(feats).mean(dim=1)  # (b, 2d)
        return self.linear(pooled)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Default init, drawn from ``generator`` so that sites can share it."""
        nn.init.ones_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)
        bound = 1.0 / math.sqrt(self.linear.in_features)
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound, generator=generator)
            self.linear.bias.uniform_(-bound, bound, generator=generator)
