"""merge_latents: harmonic magnitude, circular phase, presence per sample."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from common.lego import merge_latents


def rand_latent(b: int = 4, c: int = 3, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(
        torch.randn(b, c, d, generator=g, dtype=torch.float64),
        torch.randn(b, c, d, generator=g, dtype=torch.float64),
    )


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_identical_latents_give_that_latent(m: int) -> None:
    z = rand_latent()
    assert_close(merge_latents([z.clone() for _ in range(m)]), z)


def test_by_hand_two_elements() -> None:
    a = torch.tensor([[[2.0 + 0.0j]]], dtype=torch.complex128)
    b = torch.tensor([[[0.0 + 6.0j]]], dtype=torch.complex128)
    out = merge_latents([a, b])
    # harmonic mean of 2 and 6 is 3; circular mean of 0 and pi/2 is pi/4
    assert_close(out.abs(), torch.tensor([[[3.0]]], dtype=torch.float64))
    assert_close(out.angle(), torch.tensor([[[math.pi / 4]]], dtype=torch.float64))


def test_phase_wraps_around_pi() -> None:
    a = torch.polar(
        torch.ones(1, 1, 1, dtype=torch.float64), torch.full((1, 1, 1), 3.1, dtype=torch.float64)
    )
    b = torch.polar(
        torch.ones(1, 1, 1, dtype=torch.float64), torch.full((1, 1, 1), -3.1, dtype=torch.float64)
    )
    phase = merge_latents([a, b]).angle().abs().item()
    assert abs(phase - math.pi) < 1e-9  # not 0, as an arithmetic mean of the angles would give


def test_order_invariant() -> None:
    zs = [rand_latent(seed=s) for s in range(4)]
    ref = merge_latents(zs)
    for perm in ([3, 1, 0, 2], [2, 3, 1, 0]):
        assert_close(merge_latents([zs[i] for i in perm]), ref)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000))
def test_harmonic_magnitude_at_most_arithmetic(m: int, seed: int) -> None:
    zs = [rand_latent(2, 2, 3, seed + i) for i in range(m)]
    arith = torch.stack([z.abs() for z in zs]).mean(dim=0)
    assert (merge_latents(zs).abs() <= arith * (1 + 1e-12)).all()


def test_third_block_changes_the_result() -> None:
    zs = [rand_latent(seed=s) for s in range(3)]
    two = merge_latents(zs[:2])
    three = merge_latents(zs)
    assert (two - three).abs().max() > 1e-3


def test_one_present_block_is_copied_exactly() -> None:
    zs = [rand_latent(seed=s) for s in range(3)]
    present = torch.tensor(
        [[True, False, False], [False, True, True], [True, True, True], [False, False, True]]
    )
    out = merge_latents(zs, present)
    assert torch.equal(out[0], zs[0][0])  # bitwise
    assert torch.equal(out[3], zs[2][3])
    assert_close(out[1], merge_latents([zs[1][1:2], zs[2][1:2]])[0])
    assert_close(out[2], merge_latents([z[2:3] for z in zs])[0])


def test_absent_latent_values_do_not_leak() -> None:
    zs = [rand_latent(seed=s) for s in range(2)]
    present = torch.tensor([[True, False]] * 4)
    poisoned = [zs[0], torch.full_like(zs[1], complex(float("nan"), 1.0))]
    assert torch.equal(merge_latents(poisoned, present), zs[0])


def test_zero_magnitude_gives_zero() -> None:
    z = rand_latent()
    out = merge_latents([z, torch.zeros_like(z)])
    assert out.abs().max() < 1e-9 and torch.isfinite(out.real).all()


def test_sample_without_any_modality_is_an_error() -> None:
    z = rand_latent(b=2)
    with pytest.raises(ValueError, match=r"samples \[1\] have no modality"):
        merge_latents([z, z], torch.tensor([[True, False], [False, False]]))


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="at least one"):
        merge_latents([])
    with pytest.raises(ValueError, match="complex"):
        merge_latents([torch.randn(2, 3, 4)])
    with pytest.raises(ValueError, match="latent 1 has shape"):
        merge_latents([rand_latent(), rand_latent(b=2)])
    with pytest.raises(ValueError, match="present must be"):
        merge_latents([rand_latent()], torch.ones(4, 2, dtype=torch.bool))
