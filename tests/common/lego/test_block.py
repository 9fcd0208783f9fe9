"""LegoBlock: shapes, gradients reach every parameter, encoder runs once, shared init."""

from unittest import mock

import pytest
import torch

from common.lego import LegoBlock
from tests.factories import bag, block, tabular


@pytest.mark.parametrize("fourier", ["2d", "1d"])
@pytest.mark.parametrize("kind", ["tabular", "bag"])
def test_every_parameter_gets_a_gradient(fourier: str, kind: str) -> None:
    b = block(kind=kind, in_features=5 if kind == "tabular" else 4, fourier=fourier).train()
    item = tabular() if kind == "tabular" else bag()
    b(item.x, item.mask).pow(2).sum().backward()
    for name, p in b.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_output_shapes() -> None:
    b = block()
    x = tabular().x
    assert b(x).shape == (5, 4)
    z = b.frequency_latent(x)
    assert z.shape == (5, 6, 8) and torch.is_complex(z)


def test_encoder_runs_once_per_forward() -> None:
    b = block(depth=4)
    with mock.patch.object(b.encoder, "forward", wraps=b.encoder.forward) as spy:
        b(tabular().x)
    assert spy.call_count == 1


def test_shared_init_seed_gives_equal_latent_and_head() -> None:
    a = block("a", seed=1, init_seed=11)
    c = block("c", seed=2, init_seed=11, in_features=9)
    assert torch.equal(a.latent, c.latent)
    assert all(
        torch.equal(a.head.state_dict()[k], c.head.state_dict()[k]) for k in a.head.state_dict()
    )
    assert not torch.equal(block(seed=1, init_seed=12).latent, a.latent)


def test_initial_latent_is_not_overwritten_by_a_forward() -> None:
    b = block().train()
    before = b.latent.detach().clone()
    b(tabular().x).sum().backward()
    assert torch.equal(b.latent.detach(), before)
    assert isinstance(b.latent, torch.nn.Parameter) and b.latent.shape == (6, 8)


def test_blocks_are_modules_with_config() -> None:
    assert isinstance(block(), LegoBlock)
    assert block().config.latent_shape == (6, 8)
