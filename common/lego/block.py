"""LegoBlock: encoder + learned initial latent + S Fourier update steps + task head."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .attention import CrossAttention, FeedForward
from .config import BlockConfig
from .encoders import build_encoder, run_encoder
from .fourier import FourierMode, to_frequency, to_spatial
from .head import LegoHead
from .scaling import InputScaling

Memo = dict[tuple[Any, ...], tuple[nn.Module, torch.Tensor]]
_MEMO: contextvars.ContextVar[Memo | None] = contextvars.ContextVar("latent_memo", default=None)


@contextlib.contextmanager
def latent_memo() -> Iterator[None]:
    """Within it, a block in evaluation mode computes its frequency latent of the same CPU input
    once: candidates rebuilt from the same blocks (the merges and ensembles a site scores in one
    job) share their blocks' latents. The latents are kept until the context ends."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def _digest(t: torch.Tensor | None) -> tuple[Any, ...] | None:
    if t is None:
        return None
    data = t.detach().contiguous()
    raw = data.reshape(-1).view(torch.uint8).numpy().tobytes()
    return (tuple(data.shape), str(data.dtype), hashlib.blake2b(raw).digest())


class LatentStep(nn.Module):
    """One update step (paper, Sec. 3): F(L) -> Re is the query of a cross-attention over the
    tokens, then a feed-forward; Im is carried along; returns the complex frequency latent."""

    def __init__(self, config: BlockConfig) -> None:
        super().__init__()
        d, ctx = config.latent_dim, config.encoder.token_dim
        self.fourier: FourierMode = config.fourier
        self.norm_latent = nn.LayerNorm(d)
        self.norm_context = nn.LayerNorm(ctx)
        self.attn = CrossAttention(d, ctx, config.heads, config.dim_head, config.attn_dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = FeedForward(d, config.ff_mult, config.ff_dropout)

    def forward(
        self, latent: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``latent`` real (b, c, d) spatial -> complex (b, c, d) frequency."""
        freq = to_frequency(latent, self.fourier)
        q = freq.real
        q = q + self.attn(self.norm_latent(q), self.norm_context(tokens), mask)
        q = q + self.ff(self.norm_ff(q))
        return torch.complex(q.float(), freq.imag)


class LegoBlock(nn.Module):
    """A unimodal block. ``forward`` gives logits; :meth:`frequency_latent` the latent to merge."""

    def __init__(self, config: BlockConfig, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else build_encoder(config.encoder)
        self.latent = nn.Parameter(torch.empty(config.latent_rows, config.latent_dim))  # L0 (c, d)
        self.steps = nn.ModuleList(LatentStep(config) for _ in range(config.depth))
        self.head = LegoHead(config.latent_dim, config.task.n_outputs)
        self.scaling = InputScaling(config.encoder.in_features)  # the site's input standardisation
        self.reset_shared(config.init_seed)

    @property
    def modality(self) -> str:
        return self.config.modality

    def reset_shared(self, seed: int | None) -> None:
        """(Re)draw L0 and the head, from ``seed`` when given, so that blocks of one task can
        start from the same point (shared initialisation, DESIGN.md Sec. 2)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            self.latent.normal_(0.0, 0.02, generator=gen)
        self.head.reset_parameters(gen)

    def encode(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, offsets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardise, then run the encoder once: tokens (b, n, D) and their mask (b, n).
        ``x`` is padded (``mask``) or, for bags, packed end to end (``offsets``)."""
        return run_encoder(
            self.encoder, self.scaling(x, mask), mask, offsets, self.config.encoder.token_dim
        )

    def set_input_scaling(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training rows' per-feature mean and std (constant features: std 1)."""
        self.scaling.set(mean, std)

    def initial_latent(self, batch: int) -> torch.Tensor:
        return self.latent.unsqueeze(0).expand(
            batch, -1, -1
        )  # (b, c, d), a view: L0 stays a parameter

    def update(
        self, tokens: torch.Tensor, mask: torch.Tensor, latent: torch.Tensor | None = None
    ) -> torch.Tensor:
        """S update steps from ``latent`` (default L0); returns the frequency latent (b, c, d).
        The inverse transform runs between steps only (not after the last)."""
        spatial = self.initial_latent(tokens.shape[0]) if latent is None else latent
        freq = spatial
        for i, step in enumerate(self.steps):
            freq = step(spatial, tokens, mask)
            if i + 1 < len(self.steps):
                spatial = to_spatial(freq, self.config.fourier).real
        return freq

    def frequency_latent(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, offsets: torch.Tensor | None = None
    ) -> torch.Tensor:
        memo = _MEMO.get()
        if memo is None or self.training or torch.is_grad_enabled() or x.device.type != "cpu":
            return self.update(*self.encode(x, mask, offsets))
        key = (id(self), *(_digest(t) for t in (x, mask, offsets)))
        if key not in memo:  # the block is kept with its latent: its id is not reused meanwhile
            memo[key] = (self, self.update(*self.encode(x, mask, offsets)))
        return memo[key][1]

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, offsets: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.head(self.frequency_latent(x, mask, offsets))
