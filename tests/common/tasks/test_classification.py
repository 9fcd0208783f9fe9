"""Classification: AUC on probabilities, cross-checked; weighted cross-entropy."""

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from torch.testing import assert_close

from common.tasks import TaskSpec, auc, cross_entropy, inverse_frequency_weights, metric


def mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Second implementation: AUC = U / (n_pos * n_neg) from mid-ranks."""
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def test_binary_auc_by_hand_and_cross_checked() -> None:
    labels = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    probs = np.stack([1 - p1, p1], axis=1)
    assert auc(labels, probs) == pytest.approx(0.75)  # 3 of 4 pos/neg pairs ordered
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p1 = np.round(rng.random(200), 1)  # ties
    probs = np.stack([1 - p1, p1], axis=1)
    assert auc(labels, probs) == pytest.approx(mann_whitney_auc(p1[labels == 1], p1[labels == 0]))


def test_auc_uses_probabilities_not_hard_labels() -> None:
    labels = np.array([0, 1, 0, 1])
    p1 = np.array([0.1, 0.2, 0.3, 0.4])  # all below 0.5: hard labels would give 0.5
    assert auc(labels, np.stack([1 - p1, p1], axis=1)) == pytest.approx(0.75)


def test_multiclass_macro_ovr_matches_sklearn_and_second_implementation() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + np.eye(4)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ours = auc(labels, probs)
    assert ours == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    by_hand = np.mean(
        [mann_whitney_auc(probs[labels == k, k], probs[labels != k, k]) for k in range(4)]
    )
    assert ours == pytest.approx(by_hand)


def test_multiclass_with_an_absent_class() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    assert auc(labels, probs) == pytest.approx(1.0)


def test_auc_refuses_single_class_and_nan() -> None:
    with pytest.raises(ValueError, match="one class"):
        auc(np.array([1, 1]), np.array([[0.5, 0.5], [0.2, 0.8]]))
    with pytest.raises(ValueError, match="NaN"):
        auc(np.array([0, 1]), np.array([[np.nan, 0.5], [0.2, 0.8]]))


def test_inverse_frequency_weights_and_weighted_ce() -> None:
    w = inverse_frequency_weights(np.array([0, 0, 0, 1]), 2)
    assert w == pytest.approx((4 / 6, 2.0))
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    expected = torch.nn.functional.cross_entropy(
        logits, labels, weight=torch.tensor(w, dtype=torch.float32)
    )
    assert_close(cross_entropy(logits, labels, w), expected)


def test_metric_dispatch() -> None:
    spec = TaskSpec("classification", n_classes=2)
    assert metric(spec, np.array([[0.9, 0.1], [0.2, 0.8]]), {"label": np.array([0, 1])}) == 1.0
