"""Survival: hazard NLL and c-index on cases checked by hand; c-index cross-checked."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from common.tasks import bin_index, c_index, hazard_nll, risk_score, survival_bins

LOG2 = math.log(2)


@pytest.mark.parametrize(
    ("bin_", "event", "expected"),
    [
        (0, 1, LOG2),  # -log S_-1 - log h_0 = 0 + log 2
        (1, 1, 2 * LOG2),  # -log S_0 - log h_1
        (0, 0, LOG2),  # -log S_0
        (1, 0, 2 * LOG2),  # -log S_1 = -log 0.25
    ],
)
def test_nll_by_hand(bin_: int, event: int, expected: float) -> None:
    loss = hazard_nll(torch.zeros(1, 2), torch.tensor([bin_]), torch.tensor([float(event)]))
    assert_close(loss, torch.tensor(expected))


def test_alpha_weights_the_uncensored_term() -> None:
    loss = hazard_nll(torch.zeros(2, 2), torch.tensor([1, 1]), torch.tensor([1.0, 0.0]), alpha=0.5)
    # nll = [2 log2, 2 log2]; uncensored = [2 log2, 0]; 0.5 * 2log2 + 0.5 * log2
    assert_close(loss, torch.tensor(1.5 * LOG2))


def test_nll_is_finite_for_extreme_logits() -> None:
    logits = torch.tensor([[80.0, -80.0, 80.0], [-80.0, -80.0, -80.0]])
    assert torch.isfinite(hazard_nll(logits, torch.tensor([2, 0]), torch.tensor([1.0, 1.0])))


def test_risk_by_hand() -> None:
    assert_close(risk_score(torch.zeros(1, 2)), torch.tensor([-0.75]))
    low, high = risk_score(torch.tensor([[-3.0, -3.0], [3.0, 3.0]]))
    assert high > low


@pytest.mark.parametrize(
    ("risk", "expected"), [([4, 3, 1, 2], 1.0), ([4, 1, 3, 2], 0.6), ([4, 2, 2, 1], 0.9)]
)
def test_c_index_by_hand(risk: list[float], expected: float) -> None:
    # comparable pairs (i has the event, T_i < T_j): (0,1) (0,2) (0,3) (1,2) (1,3)
    assert c_index(
        np.array([1.0, 2, 3, 4]), np.array([1, 1, 0, 1]), np.array(risk, dtype=float)
    ) == pytest.approx(expected)


def harrell(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Second implementation: every ordered pair, O(n^2)."""
    num = den = 0.0
    for i in range(len(time)):
        if not event[i]:
            continue
        for j in range(len(time)):
            if time[i] < time[j]:
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


@settings(max_examples=40, deadline=None)
@given(st.integers(5, 60), st.integers(0, 100_000))
def test_c_index_matches_pairwise_implementation(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    time = rng.permutation(n).astype(float) + 1  # distinct times
    event = rng.random(n) < 0.6
    event[np.argmin(time)] = (
        True  # the earliest time is an event: there is at least one comparable pair
    )
    risk = rng.integers(0, 5, n).astype(float)  # many ties in the predictions
    assert c_index(time, event, risk) == pytest.approx(harrell(time, event, risk))


def test_c_index_matches_scikit_survival() -> None:
    from sksurv.metrics import concordance_index_censored

    rng = np.random.default_rng(3)
    time, event, risk = rng.exponential(size=80), rng.random(80) < 0.5, rng.normal(size=80)
    ours = c_index(time, event, risk)
    theirs = concordance_index_censored(event, time, risk)[0]
    assert ours == pytest.approx(theirs)


def test_c_index_refuses_nan_and_no_events() -> None:
    with pytest.raises(ValueError, match="NaN"):
        c_index(np.array([1.0, 2]), np.array([1, 0]), np.array([np.nan, 1]))
    with pytest.raises(ValueError, match="without any event"):
        c_index(np.array([1.0, 2]), np.array([0, 0]), np.array([1.0, 2]))


def test_bins_from_uncensored_times() -> None:
    time = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 100])
    event = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0], dtype=bool)  # the censored 100 is ignored
    edges = survival_bins(time, event, 4)
    assert edges == pytest.approx((2.75, 4.5, 6.25))
    assert bin_index(np.array([0.5, 2.75, 5.0, 100.0]), edges).tolist() == [0, 1, 2, 3]


def test_bins_need_enough_events() -> None:
    with pytest.raises(ValueError, match="at least 4 events"):
        survival_bins(np.array([1.0, 2, 3]), np.array([1, 1, 1]), 4)
