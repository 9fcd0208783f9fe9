"""Fourier transform of the latent: inverse and Parseval, both modes."""

import pytest
import torch
from torch.testing import assert_close

from common.lego import to_frequency, to_spatial
from common.lego.fourier import check_mode


@pytest.mark.parametrize("mode", ["2d", "1d"])
def test_inverse_returns_the_latent(mode: str) -> None:
    latent = torch.randn(3, 6, 8, dtype=torch.float64)
    freq = to_frequency(latent, mode)
    assert torch.is_complex(freq)
    back = to_spatial(freq, mode)
    assert_close(back.real, latent)
    assert back.imag.abs().max() < 1e-12


@pytest.mark.parametrize("mode", ["2d", "1d"])
def test_parseval(mode: str) -> None:
    latent = torch.randn(2, 5, 7, dtype=torch.float64)
    freq = to_frequency(latent, mode)
    assert_close((latent**2).sum(dim=(1, 2)), (freq.abs() ** 2).sum(dim=(1, 2)))


def test_modes_differ() -> None:
    latent = torch.randn(1, 4, 4, dtype=torch.float64)
    assert not torch.allclose(to_frequency(latent, "2d"), to_frequency(latent, "1d"))


def test_half_precision_is_transformed_in_float32() -> None:
    freq = to_frequency(torch.randn(1, 3, 5).to(torch.bfloat16), "2d")
    assert freq.dtype == torch.complex64


def test_unknown_mode_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: 2d, 1d"):
        check_mode("3d")
