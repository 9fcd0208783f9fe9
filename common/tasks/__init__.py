"""Tasks: survival and classification heads' losses, scores and metrics behind one interface."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from .classification import auc, cross_entropy, inverse_frequency_weights, probabilities
from .spec import TASK_KINDS, TaskSpec
from .survival import bin_index, c_index, hazard_nll, risk_score, survival_bins

__all__ = [
    "TASK_KINDS",
    "TaskSpec",
    "auc",
    "bin_index",
    "c_index",
    "cross_entropy",
    "hazard_nll",
    "inverse_frequency_weights",
    "metric",
    "probabilities",
    "risk_score",
    "scores",
    "survival_bins",
    "task_loss",
]


def task_loss(
    spec: TaskSpec,
    logits: torch.Tensor,
    targets: dict[str, torch.Tensor],
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """The training loss of ``spec`` for a batch; targets hold ``bin``+``event`` or ``label``.
    ``reduction="none"``: one loss per sample (class-weighted, for classification)."""
    if spec.kind == "survival":
        return hazard_nll(logits, targets["bin"], targets["event"], spec.alpha, reduction)
    return cross_entropy(logits, targets["label"], spec.class_weights, reduction)


def scores(spec: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """What a model predicts for a patient: risk (b,) for survival, probabilities (b, K)
    otherwise."""
    return risk_score(logits) if spec.kind == "survival" else probabilities(logits)


def metric(spec: TaskSpec, score: np.ndarray, targets: dict[str, np.ndarray]) -> float:
    """c-index (survival) or AUC (classification) of predicted scores."""
    if spec.kind == "survival":
        return c_index(targets["time"], targets["event"], score)
    return auc(targets["label"], score)
