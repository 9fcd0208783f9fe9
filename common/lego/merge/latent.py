"""LegoMerge of frequency-domain latents: harmonic mean of magnitudes, circular mean of phases."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ...recipe_defaults import DEFAULT_LATENT_MERGE
from .registry import Registry

EPS = 1e-12  # magnitudes below this count as zero in the harmonic mean

LatentMerge = Callable[..., torch.Tensor]  # (latents, present=None, weights=None) -> merged
LATENT_MERGES: Registry[LatentMerge] = Registry("latent merge")


def _stack_checked(
    latents: Sequence[torch.Tensor], present: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack M latents to (m, b, c, d) and return it with a presence mask (m, b, 1, 1)."""
    if len(latents) == 0:
        raise ValueError("merge needs at least one latent")
    shape = latents[0].shape
    for i, z in enumerate(latents):
        if not torch.is_complex(z):
            raise ValueError(f"latent {i} must be complex (frequency domain), got {z.dtype}")
        if z.shape != shape:
            raise ValueError(f"latent {i} has shape {tuple(z.shape)}, latent 0 has {tuple(shape)}")
    z = torch.stack(list(latents))  # (m, b, c, d)
    m, b = z.shape[:2]
    if present is None:
        present = torch.ones(b, m, dtype=torch.bool, device=z.device)
    if present.dtype != torch.bool or tuple(present.shape) != (b, m):
        raise ValueError(
            f"present must be a bool tensor of shape ({b}, {m}), got {present.dtype} "
            f"{tuple(present.shape)}"
        )
    missing = (~present.any(dim=1)).nonzero().flatten()
    if missing.numel():
        raise ValueError(f"samples {missing.tolist()[:10]} have no modality present; cannot merge")
    return z, present.T.reshape(m, b, 1, 1).to(z.device)


def block_weights(weights: Sequence[float] | None, m: int) -> torch.Tensor | None:
    """Per-block merge weights as (m, 1, 1, 1), checked: m finite numbers > 0 (None: uniform)."""
    if weights is None:
        return None
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    if w.shape != (m,) or not torch.isfinite(w).all() or (w <= 0).any():
        raise ValueError(
            f"merge weights must be {m} finite numbers > 0 (leave a block out instead of weighting "
            f"it 0), got {list(weights)}"
        )
    return w.view(m, 1, 1, 1)


def _circular_merge(
    latents: Sequence[torch.Tensor],
    present: torch.Tensor | None,
    magnitude: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    z, p = _stack_checked(latents, present)
    z = torch.where(p, z, torch.zeros_like(z))  # absent blocks' values never enter, not even NaN
    w = block_weights(weights, z.shape[0])
    if w is not None:
        w = w.to(device=z.device, dtype=z.real.dtype)
    # ``count`` is the (weighted) number of present blocks; unweighted it is the exact count.
    count = p.sum(dim=0) if w is None else (p * w).sum(dim=0)  # (b, 1, 1)
    mag = z.abs()  # (m, b, c, d)
    unit = torch.where(mag > 0, z / mag.clamp_min(EPS), torch.zeros_like(z))
    pw: torch.Tensor = p  # how much each present block counts: 1 (True), or its weight
    if w is not None:
        unit = unit * w
        pw = torch.where(p, w.expand_as(mag), torch.zeros_like(mag))
    phase = torch.angle(
        unit.sum(dim=0)
    )  # circular mean: angle of the (weighted) sum of unit phasors
    merged = torch.polar(magnitude(mag, pw, count).to(phase.dtype), phase)
    # A sample with one present block keeps that block's latent exactly (no round trip).
    only = z.sum(dim=0)  # exact: the other terms are zeros
    return torch.where(p.sum(dim=0) == 1, only, merged)


@LATENT_MERGES.register(DEFAULT_LATENT_MERGE)
def merge_latents(
    latents: Sequence[torch.Tensor],
    present: torch.Tensor | None = None,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Merge M >= 1 complex latents (b, c, d) per element over the blocks present per sample.

    magnitude = harmonic mean ``n / sum_m 1/|L_m|`` over the n present blocks (a zero
    magnitude pulls it to ~0); phase = circular mean ``angle(sum_m L_m/|L_m|)``, right across
    the +-pi wrap. ``present`` (b, M) bool says which blocks' modalities each sample has
    (default: all). A sample with one present block gets exactly that block's latent.
    ``weights`` (one > 0 per block): the weighted harmonic mean ``sum w / sum w/|L_m|`` and the
    angle of ``sum w L_m/|L_m|``, over the present blocks.
    """

    def harmonic(mag: torch.Tensor, p: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        inv = torch.where(p > 0, p / mag.clamp_min(EPS), torch.zeros_like(mag)).sum(dim=0)
        return count / inv

    return _circular_merge(latents, present, harmonic, weights)


@LATENT_MERGES.register("arithmetic")
def merge_latents_arithmetic(
    latents: Sequence[torch.Tensor],
    present: torch.Tensor | None = None,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Ablation: (weighted) arithmetic mean of magnitudes, circular mean of phases."""

    def arithmetic(mag: torch.Tensor, p: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        return (mag * p).sum(dim=0) / count

    return _circular_merge(latents, present, arithmetic, weights)
