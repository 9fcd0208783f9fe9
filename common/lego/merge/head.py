"""Merging of task heads: an N-way, order-independent spherical mean that is SLERP for two."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ...recipe_defaults import DEFAULT_HEAD_MERGE
from .registry import Registry

HeadState = Mapping[str, torch.Tensor]
HeadMerge = Callable[..., dict[str, torch.Tensor]]
HEAD_MERGES: Registry[HeadMerge] = Registry("head merge")

ANTIPODAL = 1e-3  # |mean of unit directions| below this: no great circle is defined; use the mean


def _check_heads(heads: Sequence[HeadState]) -> list[str]:
    if len(heads) == 0:
        raise ValueError("merge_heads needs at least one head")
    keys = sorted(heads[0])
    for i, h in enumerate(heads[1:], start=1):
        if sorted(h) != keys:
            raise ValueError(f"head {i} has keys {sorted(h)}, head 0 has {keys}")
        for k in keys:
            if h[k].shape != heads[0][k].shape:
                raise ValueError(
                    f"head {i} tensor {k!r} has shape {tuple(h[k].shape)}, head 0 has "
                    f"{tuple(heads[0][k].shape)}"
                )
    return keys


def spherical_mean(
    tensors: Sequence[torch.Tensor], weights: Sequence[float] | None = None
) -> torch.Tensor:
    """Spherical mean of M same-shape tensors, each taken as one vector.

    ``sum_m w_m v_m / |sum_m w_m v_m/|v_m||`` with weights summing to one (default equal):
    for two vectors at angle W and equal weights this is ``(v0 + v1) / (2 cos(W/2))``, i.e.
    SLERP at t = 0.5; for equal norms r it is r times the normalised mean direction. Symmetric
    in its arguments, so order-independent; identical inputs return themselves, and a single
    non-zero weight returns that tensor exactly (the endpoints). When the directions (nearly)
    cancel (antipodal weights), no great circle is defined and the weighted arithmetic mean is
    returned, which is finite.
    """
    w = (
        torch.ones(len(tensors), dtype=torch.float64)
        if weights is None
        else torch.tensor(list(weights), dtype=torch.float64)
    )
    if w.shape != (len(tensors),) or (w < 0).any() or not torch.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(
            f"weights must be {len(tensors)} finite non-negative numbers with a positive sum, got "
            f"{weights}"
        )
    nonzero = w.nonzero().flatten().tolist()
    if len(nonzero) == 1:
        return tensors[nonzero[0]].detach().clone()
    w = (w / w.sum())[:, None]
    v = torch.stack([t.detach().to(torch.float64).flatten() for t in tensors])  # (m, n)
    norms = v.norm(dim=1, keepdim=True)
    units = torch.where(norms > 0, v / norms.clamp_min(1e-300), torch.zeros_like(v))
    spread = (w * units).sum(dim=0).norm().item()  # |mean direction| in [0, 1]
    mean = (w * v).sum(dim=0)
    out = mean if spread < ANTIPODAL else mean / spread
    return out.reshape(tensors[0].shape).to(tensors[0].dtype)


@HEAD_MERGES.register(DEFAULT_HEAD_MERGE)
def merge_heads(
    heads: Sequence[HeadState], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """Merge M >= 1 head state dicts tensor by tensor with :func:`spherical_mean` (optionally
    weighted, e.g. by training-set size). M = 1 returns (copies of) the head unchanged."""
    keys = _check_heads(heads)
    return {k: spherical_mean([h[k] for h in heads], weights) for k in keys}


@HEAD_MERGES.register("linear")
def merge_heads_linear(
    heads: Sequence[HeadState], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """Ablation: plain (weighted) arithmetic mean of each tensor."""
    keys = _check_heads(heads)
    w = (
        torch.ones(len(heads))
        if weights is None
        else torch.tensor(list(weights), dtype=torch.float32)
    )
    w = w / w.sum()
    return {
        k: (
            torch.stack([h[k].detach() for h in heads]) * w.view(-1, *([1] * heads[0][k].dim()))
        ).sum(dim=0)
        for k in keys
    }
