"""Fourier transforms of the latent: the frequency domain in which MM-Lego merges."""

from __future__ import annotations

from typing import Literal

import torch

FourierMode = Literal["2d", "1d"]
FOURIER_MODES: tuple[str, ...] = ("2d", "1d")


def check_mode(mode: str) -> FourierMode:
    """Return ``mode`` if it is a known Fourier mode, else raise naming the known ones."""
    if mode not in FOURIER_MODES:
        raise ValueError(f"unknown fourier mode {mode!r}; known: {', '.join(FOURIER_MODES)}")
    return mode  # type: ignore[return-value]


def to_frequency(latent: torch.Tensor, mode: FourierMode = "2d") -> torch.Tensor:
    """Unitary DFT of a latent ``(b, c, d)``.

    ``"2d"`` transforms both latent axes (the paper); ``"1d"`` transforms each latent row
    along ``d`` (the authors' code). ``norm="ortho"`` makes the transform unitary, so
    Parseval holds: ``sum |L|^2 == sum |F(L)|^2``. Always computed in float32 or wider,
    also under autocast, since half-precision FFTs are restricted to power-of-two sizes.
    """
    if latent.dtype in (torch.float16, torch.bfloat16):
        latent = latent.float()
    if mode == "2d":
        return torch.fft.fft2(latent, dim=(-2, -1), norm="ortho")
    if mode == "1d":
        return torch.fft.fft(latent, dim=-1, norm="ortho")
    raise ValueError(f"unknown fourier mode {mode!r}; known: {', '.join(FOURIER_MODES)}")


def to_spatial(freq: torch.Tensor, mode: FourierMode = "2d") -> torch.Tensor:
    """Inverse of :func:`to_frequency`; complex in, complex out (take ``.real`` for a latent)."""
    if mode == "2d":
        return torch.fft.ifft2(freq, dim=(-2, -1), norm="ortho")
    if mode == "1d":
        return torch.fft.ifft(freq, dim=-1, norm="ortho")
    raise ValueError(f"unknown fourier mode {mode!r}; known: {', '.join(FOURIER_MODES)}")
