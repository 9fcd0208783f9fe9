"""Classification: (weighted) cross-entropy and AUC on predicted probabilities."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def inverse_frequency_weights(
    labels: np.ndarray, n_classes: int, min_count: int = 1
) -> tuple[float, ...]:
    """Class weights n / (K * n_k), from the training labels; absent classes get weight 0. A class
    with fewer than ``min_count`` patients is weighted as if it had ``min_count`` (the weights
    travel with a block, and must not reveal a count below the site's minimum cell size)."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    total = counts.sum()
    counts = np.where(counts > 0, np.maximum(counts, min_count), 0.0)
    w = np.where(counts > 0, total / (n_classes * np.maximum(counts, 1)), 0.0)
    return tuple(float(x) for x in w)


def cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: tuple[float, ...] = (),
    reduction: str = "mean",
) -> torch.Tensor:
    """Class-weighted cross-entropy: the weighted mean (``reduction="none"``: each sample's
    weighted loss)."""
    w = torch.tensor(weights, dtype=torch.float32, device=logits.device) if weights else None
    return F.cross_entropy(logits.float(), labels.long(), weight=w, reduction=reduction)


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=1)


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC on probabilities (scikit-learn): binary on P(class 1); multi-class the macro
    one-vs-rest mean over the classes that occur in ``labels`` (a small split may lack one)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"probs must be (n, classes) with n = {labels.shape[0]}, got {probs.shape}"
        )
    if not np.isfinite(probs).all():
        raise ValueError("probabilities contain NaN or infinity")
    classes = np.unique(labels)
    if classes.size < 2:
        raise ValueError("AUC is undefined when only one class occurs")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(np.mean([roc_auc_score(labels == k, probs[:, k]) for k in classes]))
