"""Survival: discrete time bins, discrete-time hazard NLL, risk score, Harrell's c-index."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F


def survival_bins(time: np.ndarray, event: np.ndarray, n_bins: int = 4) -> tuple[float, ...]:
    """The ``n_bins - 1`` inner cut points: quantiles of the uncensored times (training split)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    observed = time[event]
    if observed.size < n_bins:
        raise ValueError(
            f"need at least {n_bins} events to cut {n_bins} time bins, got {observed.size}"
        )
    qs = np.quantile(observed, np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = tuple(float(q) for q in qs)
    if any(b <= a for a, b in pairwise(edges)):
        raise ValueError(f"event times are too tied to cut {n_bins} distinct bins (cuts {edges})")
    return edges


def bin_index(time: np.ndarray | torch.Tensor, edges: tuple[float, ...]) -> torch.Tensor:
    """Bin of each time: 0 below the first edge, ..., k-1 at or above the last."""
    t = torch.as_tensor(np.asarray(time, dtype=np.float64))
    return torch.searchsorted(torch.tensor(edges, dtype=torch.float64), t, right=True)


def hazard_nll(
    logits: torch.Tensor,
    bins: torch.Tensor,
    event: torch.Tensor,
    alpha: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Discrete-time hazard negative log-likelihood, mean over the batch (``reduction="none"``:
    per sample).

    hazards h_j = sigmoid(logit_j), survival S_j = prod_{i<=j} (1 - h_i), S_{-1} = 1.
    An event in bin y contributes -log S_{y-1} - log h_y; a censoring in bin y, -log S_y.
    ``alpha`` adds weight to the uncensored term: (1 - alpha) * nll + alpha * uncensored.
    Computed with log-sigmoids, so it stays finite for large logits.
    """
    logits = logits.float()
    y = bins.long().view(-1, 1)
    e = event.float().view(-1)
    log_h = F.logsigmoid(logits)  # (b, k)
    log_1mh = F.logsigmoid(-logits)
    log_s = torch.cumsum(log_1mh, dim=1)
    log_s_pad = torch.cat([torch.zeros_like(log_s[:, :1]), log_s], dim=1)  # S_{-1} = 1
    uncensored = -e * (log_s_pad.gather(1, y).view(-1) + log_h.gather(1, y).view(-1))
    censored = -(1 - e) * log_s_pad.gather(1, y + 1).view(-1)
    nll = censored + uncensored
    per_sample = (1 - alpha) * nll + alpha * uncensored
    return per_sample if reduction == "none" else per_sample.mean()


def risk_score(logits: torch.Tensor) -> torch.Tensor:
    """Risk = -sum_j S_j: higher means earlier expected event."""
    log_s = torch.cumsum(F.logsigmoid(-logits.float()), dim=1)
    return -torch.exp(log_s).sum(dim=1)


def c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (lifelines' implementation; tied risks count one half)."""
    from lifelines.utils import concordance_index

    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    risk = np.asarray(risk, dtype=float)
    if not np.isfinite(risk).all():
        raise ValueError("risk scores contain NaN or infinity")
    if event.sum() == 0:
        raise ValueError("c-index is undefined without any event")
    return float(concordance_index(time, -risk, event))
