"""Per-feature standardisation of a modality's input, fitted on a site's training rows
(aggregates only) and stored with the block, so that any site that uses the block sees the same
scale; identity until set."""

from __future__ import annotations

import torch
from torch import nn


class InputScaling(nn.Module):
    mean: torch.Tensor  # buffers, (F,)
    std: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        n = self.mean.shape[0]
        if mean.shape != (n,) or std.shape != (n,):
            raise ValueError(
                f"input scaling needs shapes ({n},), got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        if not (std > 0).all():
            raise ValueError("input scaling std must be > 0")
        with torch.no_grad():
            self.mean.copy_(mean)
            self.std.copy_(std)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (b, F), (b, n, F) or packed (N, F); padded instances (``mask`` False) stay 0.
        float16 input (slide features as stored) comes out in the statistics' float32."""
        x = (
            x.to(self.mean.dtype, copy=True).sub_(self.mean).div_(self.std)
        )  # one new tensor, whatever x's dtype
        if mask is not None and x.dim() == 3:
            x = torch.where(mask.unsqueeze(-1), x, torch.zeros_like(x))
        return x
