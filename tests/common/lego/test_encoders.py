"""Encoders: attention-MIL is per sample and ignores padding; user encoders plug in."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.lego import (
    BagEncoder,
    BlockConfig,
    EncoderConfig,
    LegoBlock,
    TabularEncoder,
    build_encoder,
)
from tests.factories import SURV, bag, packed


def bag_encoder() -> BagEncoder:
    torch.manual_seed(0)
    return BagEncoder(
        EncoderConfig("bag", in_features=4, token_dim=16, n_tokens=3, hidden=32, dropout=0.0)
    ).eval()


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
    tokens, mask = enc(
        torch.randn(2, 4, 4), torch.tensor([[True, False, False, False], [False] * 4])
    )
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

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.proj(x.unsqueeze(-1))
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool)


def test_user_module_as_encoder() -> None:
    cfg = BlockConfig(
        "a", EncoderConfig("user", in_features=5, token_dim=16), SURV, latent_rows=4, latent_dim=8
    )
    block = LegoBlock(cfg, encoder=MeanTokens())
    assert block(torch.randn(3, 5)).shape == (3, 4)


def test_bad_encoder_output_is_reported() -> None:
    class Wrong(nn.Module):
        def forward(
            self, x: torch.Tensor, mask: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.zeros(x.shape[0], 2, 9), torch.ones(x.shape[0], 2, dtype=torch.bool)

    cfg = BlockConfig(
        "a", EncoderConfig("user", in_features=5, token_dim=16), SURV, latent_rows=4, latent_dim=8
    )
    with pytest.raises(ValueError, match=r"tokens of shape \(3, n, 16\)"):
        LegoBlock(cfg, encoder=Wrong())(torch.randn(3, 5))


def test_packed_bags_give_the_padded_result_and_gradients() -> None:
    """Ragged attention-MIL (segment softmax and pooling over bags packed end to end) equals the
    padded path with a mask to 1e-5, tokens and gradients alike; an empty bag gives no valid
    token."""
    enc = bag_encoder()
    enc.pack_below = 0.0  # the padded path as written, never packed by the encoder
    padded = bag(b=6, n=9, seed=5)
    padded.mask[2] = False  # an empty bag
    padded.x[2] = 0.0
    flat = packed(padded)
    x_pad = padded.x.clone().requires_grad_(True)
    x_flat = flat.x.clone().requires_grad_(True)
    assert flat.offsets is not None
    t_pad, m_pad = enc(x_pad, padded.mask)
    t_flat, m_flat = enc(x_flat, None, offsets=flat.offsets)
    assert_close(t_flat, t_pad, rtol=1e-5, atol=1e-5)
    assert torch.equal(m_flat, m_pad) and not m_flat[2].any() and m_flat[[0, 1, 3, 4, 5]].all()
    weights = torch.randn_like(t_pad)
    (t_pad * weights).sum().backward()
    (t_flat * weights).sum().backward()
    assert x_pad.grad is not None and x_flat.grad is not None
    assert_close(x_flat.grad, x_pad.grad[padded.mask], rtol=1e-5, atol=1e-5)
    for p in enc.parameters():
        assert p.grad is not None


def test_a_mostly_padded_batch_is_packed_with_the_same_result() -> None:
    """A padded batch of long bags with fewer real instances than ``pack_below`` of it takes the
    packed path (faster when bag sizes vary); a dense or a short one stays padded; both give the
    padded result."""
    enc = bag_encoder()
    sparse = bag(b=8, n=40, seed=3)  # lengths 1..40: about half padding
    sparse.mask[:, 20:] = False
    sparse.x[:, 20:] = 0.0
    assert float(sparse.mask.float().mean()) < enc.pack_below
    calls = []
    original = enc._packed
    enc._packed = lambda x, offsets: calls.append(len(offsets)) or original(x, offsets)  # type: ignore[method-assign]
    auto, auto_mask = enc(sparse.x, sparse.mask)
    assert calls == [9]  # packed: 8 bags
    enc.pack_below = 0.0
    forced, forced_mask = enc(sparse.x, sparse.mask)
    assert calls == [9] and torch.equal(auto_mask, forced_mask)
    assert_close(auto, forced, rtol=1e-5, atol=1e-5)
    enc.pack_below = 0.5
    enc(torch.randn(4, 40, 4), torch.ones(4, 40, dtype=torch.bool))  # no padding: stays padded
    enc(
        sparse.x[:, :20], (torch.arange(20)[None, :] < 2).expand(8, -1)
    )  # short bags (a lab series): stays padded
    assert calls == [9]


def test_packed_rows_select_whole_bags_and_blocks_take_them() -> None:
    padded = bag(b=5, n=6, seed=8)
    flat = packed(padded)
    idx = torch.tensor([3, 0, 4])
    x, mask, offsets = flat.rows(idx)
    assert mask is None and offsets is not None
    lengths = padded.mask.sum(dim=1)[idx]
    assert offsets.tolist() == [0, *torch.cumsum(lengths, 0).tolist()]
    for j, i in enumerate(idx.tolist()):
        assert torch.equal(x[offsets[j] : offsets[j + 1]], padded.x[i][padded.mask[i]])
    torch.manual_seed(1)
    blk = LegoBlock(
        BlockConfig(
            "slides",
            EncoderConfig("bag", in_features=4, token_dim=8, n_tokens=2, dropout=0.0),
            SURV,
            latent_rows=4,
            latent_dim=8,
        )
    ).eval()
    assert_close(blk(x, None, offsets), blk(padded.x[idx], padded.mask[idx]), rtol=1e-5, atol=1e-5)


def test_an_encoder_without_offsets_is_named_when_given_packed_bags() -> None:
    class Plain(nn.Module):
        def forward(
            self, x: torch.Tensor, mask: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            return x[:, None, :], torch.ones(x.shape[0], 1, dtype=torch.bool)

    from common.lego.encoders import run_encoder

    flat = packed(bag(b=2, n=3))
    assert flat.offsets is not None
    with pytest.raises(ValueError, match="does not take packed bags"):
        run_encoder(Plain(), flat.x, None, flat.offsets)
