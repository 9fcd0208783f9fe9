"""Modality encoders g_m: a batch of one modality -> tokens (b, n, D) and a padding mask (b, n).

Built-ins: ``tabular`` (a self-normalising MLP that emits K tokens) and ``bag`` (gated
attention-MIL with K attention branches, for patch embeddings and time series; it takes padded
bags with a mask, or packed bags with offsets). Any ``nn.Module`` whose ``forward(x, mask)``
returns ``(tokens, mask)`` can be used (one that also takes ``offsets=`` can be fed packed bags);
register a factory with :func:`register_encoder` so that a block file can rebuild it from its
manifest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..fields import reject_unknown
from .attention import masked_softmax, segment_softmax


@dataclass(frozen=True)
class EncoderConfig:
    """Topology of an encoder; recorded in a block's manifest."""

    kind: str  # a registered encoder name: "tabular", "bag", or a user one
    in_features: int  # features per row (tabular) or per instance (bag)
    token_dim: int = 64  # D, width of each emitted token
    n_tokens: int = 4  # K, tokens emitted per sample
    hidden: int = 128  # width of the hidden layers
    depth: int = 2  # hidden layers
    dropout: float = 0.1  # (alpha-)dropout inside the encoder
    options: dict[str, Any] = field(default_factory=dict)  # extra settings of a user encoder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        reject_unknown(cls, data, "encoder config")
        return cls(**data)


EncoderFactory = Callable[[EncoderConfig], nn.Module]
_ENCODERS: dict[str, EncoderFactory] = {}


def register_encoder(kind: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator: make ``kind`` buildable from an :class:`EncoderConfig`."""

    def wrap(factory: EncoderFactory) -> EncoderFactory:
        if kind in _ENCODERS:
            raise ValueError(f"encoder kind {kind!r} is already registered")
        _ENCODERS[kind] = factory
        return factory

    return wrap


def known_encoders() -> list[str]:
    return sorted(_ENCODERS)


def build_encoder(config: EncoderConfig) -> nn.Module:
    """Build the encoder that ``config`` describes, or raise naming the known kinds."""
    if config.kind not in _ENCODERS:
        raise ValueError(
            f"unknown encoder kind {config.kind!r}; known: {', '.join(known_encoders())}"
        )
    if config.in_features < 1 or config.token_dim < 1 or config.n_tokens < 1:
        raise ValueError(f"encoder sizes must be positive, got {config}")
    return _ENCODERS[config.kind](config)


def check_tokens(tokens: torch.Tensor, mask: torch.Tensor, batch: int, token_dim: int) -> None:
    """Assert an encoder's output contract: tokens (b, n, D) float, mask (b, n) bool."""
    if tokens.dim() != 3 or tokens.shape[0] != batch or tokens.shape[2] != token_dim:
        raise ValueError(
            f"encoder must return tokens of shape ({batch}, n, {token_dim}), "
            f"got {tuple(tokens.shape)}"
        )
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(tokens.shape[:2]):
        raise ValueError(
            f"encoder must return a bool mask of shape {tuple(tokens.shape[:2])}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


def run_encoder(
    encoder: nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    offsets: torch.Tensor | None = None,
    token_dim: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``encoder`` on padded (``mask``) or packed (``offsets``) input and check its output.
    Half-precision input is widened to float32 first unless autocast is on (a block's input
    scaling has already widened it; this is for encoders used without one)."""
    if x.dtype in (torch.float16, torch.bfloat16) and not torch.is_autocast_enabled(x.device.type):
        x = x.float()
    if offsets is None:
        tokens, tmask = encoder(x, mask)
        batch = x.shape[0]
    else:
        try:
            tokens, tmask = encoder(x, mask, offsets=offsets)
        except TypeError as exc:
            if "offsets" not in str(exc):
                raise
            raise ValueError(
                f"encoder {type(encoder).__name__} does not take packed bags (offsets=); "
                "give it padded bags with a mask"
            ) from None
        batch = offsets.numel() - 1
    check_tokens(tokens, tmask, batch, token_dim if token_dim is not None else tokens.shape[-1])
    return tokens, tmask


class TabularEncoder(nn.Module):
    """Self-normalising MLP (SELU + alpha-dropout, LeCun-normal init) that emits K tokens."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = config.in_features
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SELU(), nn.AlphaDropout(config.dropout)]
            width = config.hidden
        self.body = nn.Sequential(*layers)
        self.to_tokens = nn.Linear(width, config.n_tokens * config.token_dim)
        self.n_tokens = config.n_tokens
        self.token_dim = config.token_dim
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(m.in_features))
                nn.init.zeros_(m.bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (b, F) -> tokens (b, K, D), mask (b, K) all True."""
        if x.dim() != 2:
            raise ValueError(f"tabular encoder expects (batch, features), got {tuple(x.shape)}")
        tokens = self.to_tokens(self.body(x)).view(x.shape[0], self.n_tokens, self.token_dim)
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)


class BagEncoder(nn.Module):
    """Gated attention-MIL (Ilse et al.) with K branches; each branch pools one token.

    The attention softmax runs over the instances of one sample only (dim 1), with padded
    instances masked out, so a sample's tokens do not depend on the rest of the batch or on
    how much padding it carries.

    Bags come padded with a mask (a ``sequence`` table in memory) or packed end to end with
    offsets (slides read from files). A padded batch of long bags (``pack_from`` instances or
    more) that is mostly padding (real instances under ``pack_below`` of it) is packed here: the
    same result, and faster when bag sizes vary; with every bag the same size the padded path is
    faster (docs/RESULTS.md section 8), and a few steps (a lab series) have nothing to save.
    """

    pack_below = 0.5
    pack_from = 32

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = config.in_features
        for _ in range(max(config.depth, 1)):
            layers += [nn.Linear(width, config.hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = config.hidden
        self.embed = nn.Sequential(*layers)
        att = max(config.hidden // 2, 8)
        self.att_v = nn.Linear(config.hidden, att)
        self.att_u = nn.Linear(config.hidden, att)
        self.att_w = nn.Linear(att, config.n_tokens)
        self.to_token = nn.Linear(config.hidden, config.token_dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, offsets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded: ``x`` (b, n, F) instances, ``mask`` (b, n) True = real instance. Packed:
        ``x`` (N, F), ``offsets`` (b + 1,), sample i = ``x[offsets[i]:offsets[i + 1]]``.
        Returns tokens (b, K, D) and their mask (b, K): False for an empty bag."""
        if offsets is not None:
            return self._packed(x, offsets)
        if x.dim() != 3:
            raise ValueError(
                f"bag encoder expects (batch, instances, features), got {tuple(x.shape)}"
            )
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        elif (
            x.shape[1] >= self.pack_from
            and mask.numel()
            and float(mask.float().mean()) < self.pack_below
        ):
            counts = mask.sum(dim=1)
            offsets = torch.zeros(counts.numel() + 1, dtype=torch.long, device=x.device)
            torch.cumsum(counts, 0, out=offsets[1:])
            return self._packed(x[mask], offsets)
        h = self.embed(x)  # (b, n, hidden)
        weights = masked_softmax(
            self._scores(h), mask[:, :, None], dim=1
        )  # (b, n, K), over one sample's instances
        pooled = torch.einsum("bnk,bnh->bkh", weights, h)  # (b, K, hidden)
        tokens = self.to_token(pooled)
        has_any = mask.any(dim=1, keepdim=True)  # (b, 1): an empty bag gives no valid token
        return tokens, has_any.expand(-1, tokens.shape[1]).contiguous()

    def _scores(self, h: torch.Tensor) -> torch.Tensor:
        """Gated attention scores (Ilse et al., Eq. 9): (..., hidden) -> (..., K)."""
        return self.att_w(torch.tanh(self.att_v(h)) * torch.sigmoid(self.att_u(h)))

    def _packed(self, x: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same attention-MIL on bags packed end to end: no padding, no mask; the softmax and
        the pooling run per segment."""
        if x.dim() != 2:
            raise ValueError(f"packed bags must be (instances, features), got {tuple(x.shape)}")
        b = offsets.numel() - 1
        lengths = offsets[1:] - offsets[:-1]  # (b,)
        segment = torch.repeat_interleave(
            torch.arange(b, device=x.device), lengths
        )  # (N,) sample of each instance
        h = self.embed(x)  # (N, hidden)
        weights = segment_softmax(
            self._scores(h).float(), segment, b
        )  # (N, K); sums in float32 even under autocast
        k, hf = weights.shape[1], h.float()
        pooled = torch.stack(
            [
                torch.zeros(b, h.shape[1], device=h.device).index_add(
                    0, segment, weights[:, j : j + 1] * hf
                )
                for j in range(k)
            ],
            dim=1,
        )  # (b, K, hidden)
        tokens = self.to_token(pooled)
        return tokens, (lengths > 0).unsqueeze(1).expand(-1, k).contiguous()


register_encoder("tabular")(TabularEncoder)
register_encoder("bag")(BagEncoder)
