"""Encoders: attention-MIL is per sample and ignores padding; user encoders plug in."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.lego import BagEncoder, BlockConfig, EncoderConfig, LegoBlock, TabularEncoder, build_encoder
from tests.factories import SURV, bag


def bag_encoder() -> BagEncoder:
    torch.manual_seed(0)
    return BagEncoder(EncoderConfig("bag", in_features=4, token_dim=16, n_tokens=3, hidden=32, dropout=0.0)).eval()


def test_bag_output_of_a_sample_is_independent_of_the_batch() -> None:
    enc = bag_encoder()
    batch = bag(b=6)
    tokens, _ = enc(batch.x, batch.mask)
    for i in range(6):
        alone, _ = enc(batch.x[i : i + 1], batch.mask[i : i + 1])
        assert_close(alone[0], tokens[i], rtol=1e-5, atol=1e-6)
    other = bag(b=6, seed=99)
    mixed_x = torch.cat([batch.x[:1], other.x[1:]])
    mixed_m = torch.cat([batch.mask[:1], other.mask[1:]])
    assert_close(enc(mixed_x, mixed_m)[0][0], tokens[0], rtol=1e-5, atol=1e-6)


def test_bag_output_ignores_padding_content_and_length() -> None:
    enc = bag_encoder()
    x = torch.randn(1, 3, 4)
    base, _ = enc(x, torch.ones(1, 3, dtype=torch.bool))
    padded = torch.cat([x, torch.randn(1, 5, 4) * 100], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 5])
    out, tmask = enc(padded, mask)
    assert_close(out, base, rtol=1e-5, atol=1e-6)
    assert tmask.all()


def test_empty_bag_gives_no_valid_token_and_no_nan() -> None:
    enc = bag_encoder()
    tokens, mask = enc(torch.randn(2, 4, 4), torch.tensor([[True, False, False, False], [False] * 4]))
    assert torch.isfinite(tokens).all()
    assert mask[0].all() and not mask[1].any()


def test_tabular_emits_k_tokens() -> None:
    enc = TabularEncoder(EncoderConfig("tabular", in_features=7, token_dim=16, n_tokens=5))
    tokens, mask = enc(torch.randn(3, 7))
    assert tokens.shape == (3, 5, 16) and mask.shape == (3, 5) and mask.all()


def test_unknown_encoder_kind_names_known_ones() -> None:
    with pytest.raises(ValueError, match="known: bag, tabular"):
        build_encoder(EncoderConfig("resnet", in_features=3))


class MeanTokens(nn.Module):
    """A user encoder: each feature becomes a token."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(1, 16)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.proj(x.unsqueeze(-1))
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool)


def test_user_module_as_encoder() -> None:
    cfg = BlockConfig("a", EncoderConfig("user", in_features=5, token_dim=16), SURV, latent_rows=4, latent_dim=8)
    block = LegoBlock(cfg, encoder=MeanTokens())
    assert block(torch.randn(3, 5)).shape == (3, 4)


def test_bad_encoder_output_is_reported() -> None:
    class Wrong(nn.Module):
        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros(x.shape[0], 2, 9), torch.ones(x.shape[0], 2, dtype=torch.bool)

    cfg = BlockConfig("a", EncoderConfig("user", in_features=5, token_dim=16), SURV, latent_rows=4, latent_dim=8)
    with pytest.raises(ValueError, match=r"tokens of shape \(3, n, 16\)"):
        LegoBlock(cfg, encoder=Wrong())(torch.randn(3, 5))
