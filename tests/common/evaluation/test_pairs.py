"""What a site sends for a candidate: Harrell's pair counts equal scikit-survival's, AUC counts
equal scikit-learn's (Hand and Till for several classes), the jackknife variances are the
delete-one recomputation done by hand, counts summed over sites give the within-site metric, and a
score that cannot be is named."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sksurv.metrics import concordance_index_censored

from common.evaluation import (
    CandidateScore,
    PairCounts,
    consortium,
    score_candidates,
    stratified_metric,
)


def everyone(n: int) -> np.ndarray:
    return np.ones(n, dtype=bool)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 60), seed=st.integers(0, 10_000), ties=st.booleans())
@example(n=3, seed=5526, ties=True)  # every time tied
def test_survival_counts_are_harrells(n: int, seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 8 if ties else 1000, n).astype(float)
    event = rng.random(n) < 0.6
    first = np.argmin(time)
    event[first] = True
    time[first] -= (
        0.5  # at least one comparable pair, even when every time ties (found by CI: n=3, seed=5526)
    )
    risk = np.round(rng.normal(size=n), 1 if ties else 6)
    (s,) = score_candidates(
        "survival", 0, {"time": time, "event": event.astype(int)}, [risk], [everyone(n)]
    )
    assert s is not None
    cindex, conc, disc, tied, _ = concordance_index_censored(event, time, risk)
    assert s.strata == (PairCounts(int(conc), int(disc), int(tied)),)
    assert s.metric == pytest.approx(cindex, abs=1e-12)
    assert s.patients == n and s.events == int(event.sum())


def test_auc_counts_are_mann_whitney_per_ordered_class_pair() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    p1 = np.clip(0.3 * y + rng.random(80) * 0.7, 0, 1)
    probs = np.stack([1 - p1, p1], axis=1)
    (s,) = score_candidates("classification", 2, {"label": y}, [probs], [everyone(80)])
    assert (
        s is not None
        and len(s.strata) == 2
        and s.strata[0].comparable == int((y == 0).sum() * (y == 1).sum())
    )
    assert s.metric == pytest.approx(roc_auc_score(y, p1), abs=1e-12)
    assert s.events == int(
        min((y == 0).sum(), (y == 1).sum())
    )  # the smallest class is the protected cell
    y3 = rng.integers(0, 3, 90)
    p3 = rng.dirichlet([1, 1, 1], 90)
    p3[np.arange(90), y3] += 0.4
    p3 /= p3.sum(axis=1, keepdims=True)
    (m,) = score_candidates("classification", 3, {"label": y3}, [p3], [everyone(90)])
    assert m is not None and len(m.strata) == 6
    assert m.metric == pytest.approx(
        roc_auc_score(y3, p3, multi_class="ovo"), abs=1e-12
    )  # Hand and Till


def test_jackknife_variances_are_the_delete_one_recomputation() -> None:
    rng = np.random.default_rng(2)
    n = 25
    time, event = rng.random(n) * 10, (rng.random(n) < 0.7).astype(int)
    a, b = rng.normal(size=n), rng.normal(size=n)
    ra, rb = score_candidates(
        "survival", 0, {"time": time, "event": event}, [a, b], [everyone(n), everyone(n)]
    )
    assert ra is not None and rb is not None

    def c(risk: np.ndarray, keep: np.ndarray) -> float:
        return float(
            concordance_index_censored(event[keep].astype(bool), time[keep], risk[keep])[0]
        )

    loo_a = np.array([c(a, np.arange(n) != p) for p in range(n)])
    loo_b = np.array([c(b, np.arange(n) != p) for p in range(n)])

    def jack(x: np.ndarray) -> float:
        return float((n - 1) / n * ((x - x.mean()) ** 2).sum())

    assert rb.var_metric == pytest.approx(jack(loo_b), rel=1e-9)
    assert rb.var_diff == pytest.approx(jack(loo_b - loo_a), rel=1e-9)
    assert ra.var_diff == 0.0  # the reference against itself


def test_a_candidate_scores_only_the_patients_with_its_modalities() -> None:
    rng = np.random.default_rng(3)
    n = 30
    time, event = rng.random(n), (rng.random(n) < 0.5).astype(int)
    risk = rng.normal(size=n)
    some = rng.random(n) < 0.5
    full, part = score_candidates(
        "survival", 0, {"time": time, "event": event}, [risk, risk], [everyone(n), some]
    )
    assert full is not None and part is not None and part.patients == int(some.sum())
    assert part.metric == pytest.approx(
        concordance_index_censored(event[some].astype(bool), time[some], risk[some])[0]
    )
    assert (
        score_candidates(
            "survival", 0, {"time": time, "event": event}, [risk, None], [everyone(n), some]
        )[1]
        is None
    )


def test_summed_counts_are_the_pair_weighted_mean_of_site_metrics_se_combines_variances() -> None:
    a = CandidateScore((PairCounts(30, 10, 0),), 20, 8, 0.004, 0.001)
    b = CandidateScore((PairCounts(5, 4, 1),), 8, 5, 0.02, 0.003)
    value = stratified_metric([a, b])
    assert value == pytest.approx((30 + 5.5) / 50)
    assert value == pytest.approx(
        (40 * a.metric + 10 * b.metric) / 50
    )  # not the plain mean of 0.75 and 0.55
    ref = {
        "a": CandidateScore((PairCounts(28, 12, 0),), 20, 8, 0.004, 0.0),
        "b": CandidateScore((PairCounts(5, 5, 0),), 8, 5, 0.02, 0.0),
    }
    r = consortium({"a": a, "b": b}, ref)
    assert r.se == pytest.approx(math.sqrt((40 / 50) ** 2 * 0.004 + (10 / 50) ** 2 * 0.02))
    assert r.diff == pytest.approx(value - (28 + 5) / 50)
    assert r.se_diff == pytest.approx(math.sqrt((40 / 50) ** 2 * 0.001 + (10 / 50) ** 2 * 0.003))
    assert r.sites == ("a", "b") and r.patients == 28 and r.events == 13


@pytest.mark.parametrize(
    "score,strata,message",
    [
        (CandidateScore((PairCounts(-1, 3, 0),), 10, 5, 0.01, 0.01), 1, "negative"),
        (CandidateScore((PairCounts(40, 10, 0),), 10, 5, 0.01, 0.01), 1, "at most 45"),
        (CandidateScore((PairCounts(4, 3, 0),), 10, 11, 0.01, 0.01), 1, "events 11 cannot be"),
        (CandidateScore((PairCounts(4, 3, 0),), 10, 5, 0.01, 0.01), 2, "this task has 2"),
        (CandidateScore((PairCounts(4, 3, 0),), 10, 5, float("inf"), 0.01), 1, "var_metric"),
        (CandidateScore((PairCounts(4, 3, 0),), 10, 5, 0.01, -0.5), 1, "var_diff"),
        (CandidateScore((PairCounts(0, 0, 0),), 10, 5, 0.01, 0.01), 1, "no comparable pair"),
    ],
)
def test_scores_that_cannot_be_are_named(score: CandidateScore, strata: int, message: str) -> None:
    problem = score.problem(strata)
    assert problem is not None and message in problem
