"""Paired comparisons: the within-site metric is the sites' stratified metric (and sksurv's c-index
at one site), a bootstrap replicate is the metric of the explicitly duplicated data, and
compare_models gives zero for a model against itself, an interval excluding zero for a much worse
model, intervals that narrow like 1/sqrt(n), the same answer for the same seed, and skips seeds
that lack a model."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.metrics import concordance_index_censored

from common.evaluation import score_candidates, stratified_metric
from common.evaluation.paired import (
    TestSet,
    compare_models,
    multiplicities,
    weighted_metric,
    within_site_metric,
)


def survival_set(
    n: int, seed: int, sites: int = 3, ties: bool = True, noise: float = 3.0
) -> TestSet:
    """Risks "good" (follows the hazard), "same" (a copy), "noisy" (good plus strong noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    time = rng.exponential(np.exp(-x))
    if ties:
        time = np.ceil(time * 4) / 4  # many tied times
    event = (rng.random(n) < 0.7).astype(int)
    good = np.round(x + 0.5 * rng.normal(size=n), 1 if ties else 8)  # tied risks too
    scores = {"good": good, "same": good.copy(), "noisy": good + noise * rng.normal(size=n)}
    return TestSet("survival", 0, rng.integers(0, sites, n), {"time": time, "event": event}, scores)


def classification_set(n: int, seed: int, classes: int = 3, sites: int = 3) -> TestSet:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    p = rng.dirichlet(np.ones(classes), n)
    p[np.arange(n), y] += 0.3
    p = np.round(p / p.sum(axis=1, keepdims=True), 1)  # ties on the probabilities
    q = rng.dirichlet(np.ones(classes), n)
    site = np.array(["a", "b", "c", "d"][:sites])[rng.integers(0, sites, n)]
    return TestSet("classification", classes, site, {"label": y}, {"good": p, "random": q})


def make(kind: str, n: int, seed: int) -> TestSet:
    return survival_set(n, seed) if kind == "survival" else classification_set(n, seed)


def site_counts_metric(test: TestSet, model: str, rows: np.ndarray | None = None) -> float:
    """pairs.py's counting, site by site, on the patients ``rows`` (repeats allowed), summed by
    stratified_metric."""
    rows = np.arange(test.patients) if rows is None else rows
    per_site = []
    for label in np.unique(test.site[rows]):
        keep = rows[test.site[rows] == label]
        targets = {k: v[keep] for k, v in test.targets.items()}
        (s,) = score_candidates(
            test.kind,
            test.n_classes,
            targets,
            [test.scores[model][keep]],
            [np.ones(keep.size, dtype=bool)],
        )
        if s is not None:
            per_site.append(s)
    return stratified_metric(per_site)


@pytest.mark.parametrize("kind", ["survival", "classification"])
def test_within_site_metric_is_the_stratified_metric_of_site_counts(kind: str) -> None:
    test = make(kind, 150, 1)
    for model in test.scores:
        assert within_site_metric(test, model) == pytest.approx(
            site_counts_metric(test, model), abs=1e-12
        )


def test_one_site_is_sksurvs_cindex() -> None:
    test = survival_set(120, 3, sites=1)
    t, e = test.targets["time"], test.targets["event"].astype(bool)
    for model in ("good", "noisy"):
        expected = concordance_index_censored(e, t, test.scores[model])[0]
        assert within_site_metric(test, model) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("kind", ["survival", "classification"])
def test_a_replicate_is_the_metric_of_the_duplicated_data(kind: str) -> None:
    test = make(kind, 60, 4)
    w = multiplicities(test.site, 5, np.random.default_rng(6))  # (5, n)
    assert (w.max(axis=1) >= 2).all()  # every draw repeats some patient
    got = weighted_metric(test, "good", w)
    for r in range(w.shape[0]):
        rows = np.repeat(
            np.arange(test.patients), w[r].astype(int)
        )  # the resampled data, copies side by side
        assert got[r] == pytest.approx(site_counts_metric(test, "good", rows), abs=1e-12)


def test_draws_keep_every_sites_patient_count() -> None:
    site = np.array([0] * 7 + [1] * 3 + [2] * 11)
    w = multiplicities(site, 50, np.random.default_rng(0))
    for label in (0, 1, 2):
        assert (w[:, site == label].sum(axis=1) == (site == label).sum()).all()
    assert w.min() >= 0 and len(np.unique(w[:, site == 2], axis=0)) > 1


def test_a_model_against_itself_is_zero() -> None:
    tests = [survival_set(100, s) for s in range(2)]
    (c,) = compare_models(tests, "good", ["same"], replicates=200)
    assert (c.diff, c.low, c.high) == (0.0, 0.0, 0.0)
    assert c.to_dict() == {
        "a": "good",
        "b": "same",
        "diff": 0.0,
        "low": 0.0,
        "high": 0.0,
        "patients": 200,
        "seeds": 2,
    }


def test_a_much_noisier_model_is_worse_and_the_interval_excludes_zero() -> None:
    tests = [survival_set(400, 7, sites=4), classification_set(400, 8)]
    (surv,) = compare_models(tests[:1], "good", ["noisy"], replicates=500)
    (clf,) = compare_models(tests[1:], "good", ["random"], replicates=500)
    for c in (surv, clf):
        assert 0.0 < c.low < c.diff < c.high
    assert surv.diff == pytest.approx(
        within_site_metric(tests[0], "good") - within_site_metric(tests[0], "noisy"), abs=1e-12
    )


def test_intervals_narrow_like_one_over_sqrt_n() -> None:
    def width(n: int) -> float:
        (c,) = compare_models(
            [survival_set(n, 9, sites=4, noise=1.0)], "good", ["noisy"], replicates=800
        )
        return c.high - c.low

    assert 1.4 < width(200) / width(800) < 2.8  # 2 expected


def test_the_same_seed_gives_the_same_answer() -> None:
    tests = [survival_set(120, s) for s in range(3)]
    first = compare_models(tests, "good", ["noisy", "same"], replicates=300, seed=11)
    assert first == compare_models(tests, "good", ["noisy", "same"], replicates=300, seed=11)
    other = compare_models(tests, "good", ["noisy"], replicates=300, seed=12)[0]
    assert (other.low, other.high) != (first[0].low, first[0].high)
    assert other.diff == first[0].diff  # the point estimate does not depend on the draws


def test_seeds_without_a_model_are_skipped() -> None:
    tests = [survival_set(80, s) for s in range(3)]
    del tests[1].scores["noisy"]
    (c,) = compare_models(tests, "good", ["noisy", "absent"], replicates=100)
    assert (c.b, c.seeds, c.patients) == ("noisy", 2, 160)
    expected = np.mean(
        [
            within_site_metric(t, "good") - within_site_metric(t, "noisy")
            for t in (tests[0], tests[2])
        ]
    )
    assert c.diff == pytest.approx(expected, abs=1e-12)
    assert compare_models(tests, "missing", ["good"], replicates=100) == []


def test_scores_of_the_wrong_shape_are_named() -> None:
    test = classification_set(30, 1)
    test.scores["bad"] = test.scores["good"][:, :2]
    with pytest.raises(ValueError, match="'bad' have shape"):
        within_site_metric(test, "bad")
