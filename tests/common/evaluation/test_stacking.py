"""Stacked recipes' arithmetic: the sites' sums (loss, gradient, Hessian) are exact, add up over
folds and sites, a federated Newton fit on them equals the fit on the pooled patients, and the
amount kept is chosen out of fold: a component of pure noise is pulled back, a strong one kept."""

from __future__ import annotations

import numpy as np
import pytest

from common.evaluation.candidates import Candidate, EvaluationJob
from common.evaluation.stacking import (
    StackStats,
    block_weights,
    design,
    features,
    in_groups,
    loss_grad_hess,
    newton,
    shrinkage,
    shrunk,
    site_stats,
    summed,
)


def survival(n: int, seed: int, signal: tuple[float, ...]) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(signal)))
    t = np.round(rng.exponential(np.exp(-(x @ np.asarray(signal)))), 1)
    e = rng.random(n) < 0.7
    return x, {"time": t, "event": e}


@pytest.mark.parametrize("kind", ["survival", "classification"])
def test_the_gradient_and_hessian_are_those_of_the_loss(kind: str) -> None:
    rng = np.random.default_rng(1)
    if kind == "survival":
        x, y = survival(200, 1, (1.0, 0.3, 0.0))
    else:
        x = np.log(rng.dirichlet(np.ones(3), size=(200, 3)))
        y = {"label": rng.integers(0, 3, 200)}
    beta = np.array([0.5, 0.8, 0.2])
    _, grad, hess = loss_grad_hess(kind, x, y, beta)
    eps = 1e-5
    for j in range(3):
        d = np.zeros(3)
        d[j] = eps
        up, down = loss_grad_hess(kind, x, y, beta + d), loss_grad_hess(kind, x, y, beta - d)
        assert (up[0] - down[0]) / (2 * eps) == pytest.approx(grad[j], rel=1e-5, abs=1e-6)
        assert (up[1] - down[1]) / (2 * eps) == pytest.approx(hess[j], rel=1e-5, abs=1e-6)


def test_fold_sums_add_up_and_small_folds_send_the_total_only() -> None:
    x, y = survival(120, 2, (1.0, 0.0))
    present = np.ones_like(x, dtype=bool)
    fold_of = np.arange(120) % 5
    stats = site_stats("survival", x, present, y, [(1.0, 1.0)], fold_of, 5, min_cell=5)
    assert sorted(s.fold for s in stats) == [0, 1, 2, 3, 4]
    assert sum(s.patients for s in stats) == 120
    # a fold too small for the minimum cell size: the site's total only (risk sets of all)
    few = site_stats("survival", x, present, y, [(1.0, 1.0)], fold_of, 5, min_cell=20)
    assert [s.fold for s in few] == [-1] and few[0].patients == 120
    whole = loss_grad_hess("survival", x, y, np.ones(2))
    assert few[0].loss == pytest.approx(whole[0])
    assert site_stats("survival", x, present, y, [(1.0, 1.0)], fold_of, 5, min_cell=200) == []
    # patients no component scored are left out
    present[:10] = False
    assert site_stats("survival", x, present, y, [(1.0, 1.0)], None, 0, 5)[0].patients == 110


def test_a_federated_newton_fit_equals_the_pooled_fit_and_finds_the_signal() -> None:
    sites = {f"hosp-{i}": survival(300, 10 + i, (1.0, 0.2, 0.0)) for i in range(3)}
    folds = {s: np.arange(300) % 5 for s in sites}
    beta = np.ones(3)
    for _ in range(6):
        stats = {
            s: site_stats("survival", x, np.ones_like(x, bool), y, [tuple(beta)], folds[s], 5, 5)
            for s, (x, y) in sites.items()
        }
        sums = summed(stats, 0, 3)
        beta = newton(beta, sums.gradient, sums.hessian)
    # the same loss on the pooled patients (risk sets within site and fold) is minimal there
    pooled = np.zeros(3)
    for s, (x, y) in sites.items():
        for k in range(5):
            r = folds[s] == k
            pooled += loss_grad_hess("survival", x[r], {a: v[r] for a, v in y.items()}, beta)[1]
    assert np.abs(pooled).max() < 1e-3
    assert beta[0] > 0.8 and abs(beta[2]) < 0.15  # the signal, and a noise component near 0


def test_noise_is_pulled_back_and_a_strong_fit_kept_out_of_fold() -> None:
    def fitted(n: int, signal: tuple[float, ...], seed: int) -> tuple[float | None, np.ndarray]:
        x, y = survival(n, seed, signal)
        u = np.ones(len(signal))
        beta = u.copy()
        for _ in range(5):
            stats = {
                "s": site_stats(
                    "survival", x, np.ones_like(x, bool), y, [tuple(beta)], np.arange(n) % 5, 5, 2
                )
            }
            sums = summed(stats, 0, len(signal))
            at, beta = beta, newton(beta, sums.gradient, sums.hessian)
        chosen = shrinkage(at, u, sums)
        if chosen.folds == 0:  # a fold with too few censored patients: the total only
            assert chosen.losses == {} and chosen.amount == 0.5
            return None, beta
        assert chosen.folds == 5 and set(chosen.losses) == {0.0, 0.25, 0.5, 0.75, 1.0}
        return chosen.amount, shrunk(at, beta, u, sums, chosen.amount)

    strong, w = fitted(2000, (1.5, 0.0), 3)  # one component carries everything
    assert strong == 1.0 and w[0] > 5 * abs(w[1])
    # two equally useful components: the uniform weights are right, the fit is mostly noise
    amounts = [a for seed in range(8) if (a := fitted(80, (0.5, 0.5), seed)[0]) is not None]
    assert len(amounts) >= 6 and np.mean(amounts) < 0.5


def test_weights_reach_the_blocks_through_their_grouping() -> None:
    plan = design(["genes", "genes", "clinical"], ["a/genes", "b/genes", "c/clinical"])
    assert plan is not None and [g.name for g in plan.groupings] == ["blocks", "modalities"]
    assert len(plan.components) == 3  # each block alone
    by_mod = plan.groupings[1]  # modalities sorted: clinical, genes
    assert by_mod.uniform.tolist() == [1.0, 2.0]
    assert block_weights(by_mod.uniform, by_mod.to_blocks) == (1.0, 1.0, 1.0)
    assert block_weights(np.array([1.0, 4.0]), by_mod.to_blocks) == pytest.approx((1.2, 1.2, 0.6))
    # a negative fitted weight is floored: every published weight is > 0
    assert min(block_weights(np.array([-1.0, 2.0]), by_mod.to_blocks)) > 0
    many = design(["genes"] * 10 + ["clinical"] * 5, [str(i) for i in range(15)])
    assert many is not None and len(many.components) == 2  # one ensemble per modality
    assert design(["genes"] * 10, [str(i) for i in range(10)]) is None  # nothing to weigh
    assert design(["genes"], ["a"]) is None
    # grouped sums are the chain rule of the component sums
    x, y = survival(100, 4, (1.0, 0.5, 0.5))
    stats = {
        "s": site_stats("survival", x, np.ones_like(x, bool), y, [(0.5, 0.5, 1.0)], None, 0, 5)
    }
    grouped = in_groups(summed(stats, 0, 3), by_mod.to_components)
    direct = loss_grad_hess("survival", x @ by_mod.to_components, y, np.array([1.0, 1.0]))
    assert grouped.gradient == pytest.approx(direct[1]) and grouped.hessian == pytest.approx(
        direct[2]
    )


def test_sums_and_stack_jobs_that_cannot_be_are_named() -> None:
    ok = StackStats(0, 1, 40, 10, 12.0, (0.1, 0.2), (2.0, 0.5, 0.5, 1.0))
    assert ok.problem(2, 1, 5) is None
    bad = {
        "point 1 is not": StackStats(1, 1, 40, 10, 1.0, (0.1, 0.2), (2.0, 0.5, 0.5, 1.0)),
        "fold 7 cannot": StackStats(0, 7, 40, 10, 1.0, (0.1, 0.2), (2.0, 0.5, 0.5, 1.0)),
        "events 50": StackStats(0, 1, 40, 50, 1.0, (0.1, 0.2), (2.0, 0.5, 0.5, 1.0)),
        "a gradient of 2": StackStats(0, 1, 40, 10, 1.0, (0.1,), (2.0, 0.5, 0.5, 1.0)),
        "finite": StackStats(0, 1, 40, 10, float("nan"), (0.1, 0.2), (2.0, 0.5, 0.5, 1.0)),
        "symmetric": StackStats(0, 1, 40, 10, 1.0, (0.1, 0.2), (2.0, 0.5, 0.4, 1.0)),
        "positive semi-definite": StackStats(0, 1, 40, 10, 1.0, (0.1, 0.2), (1.0, 2.0, 2.0, 1.0)),
    }
    for words, stats in bad.items():
        assert words in (stats.problem(2, 1, 5) or ""), words
    ids = ("a" * 64, "b" * 64)
    parts = (Candidate("p0", "merge", "", ids[:1]), Candidate("p1", "merge", "", ids[1:]))
    assert EvaluationJob("j", "t", "stack", parts, points=((1.0, 1.0),)).problem() is None
    assert "points" in (EvaluationJob("j", "t", "stack", parts).problem() or "")
    wrong = EvaluationJob("j", "t", "stack", parts, points=((1.0,),))
    assert "2 finite weights" in (wrong.problem() or "")
    assert "only a stack job" in (
        EvaluationJob("j", "t", "merge", parts, points=((1.0, 1.0),)).problem() or ""
    )


def test_features_leave_absent_components_at_zero() -> None:
    scores = [np.array([1.0, 2.0, 3.0]), None]
    x, present = features("survival", scores, [np.array([True, False, True]), np.zeros(3, bool)], 3)
    assert x.tolist() == [[1.0, 0.0], [0.0, 0.0], [3.0, 0.0]]
    assert present.tolist() == [[True, False], [False, False], [True, False]]


def test_a_loss_that_is_zero_does_not_round_below_zero() -> None:
    """A fold whose only event is the last to happen (its risk set is itself) has a Cox loss of 0,
    and a patient predicted with certainty a cross-entropy of 0: float rounding took such sums just
    below zero, which the coordinator refuses (in a fifth of such folds before the fix)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.normal(size=(5, 2)) * 3
        targets = {"time": np.arange(5.0), "event": np.array([0, 0, 0, 0, 1])}
        loss, grad, hess = loss_grad_hess("survival", x, targets, np.array([0.7, 1.3]))
        assert loss >= 0
        stats = StackStats(0, -1, 5, 1, loss, tuple(grad), tuple(hess.ravel()))
        assert stats.problem(2, 1, 5) is None
    logp = np.log(np.array([[[1.0 - 1e-17, 1e-17]] * 2]))  # one patient, two components, certain
    loss, _, _ = loss_grad_hess("classification", logp, {"label": np.array([0])}, np.ones(2))
    assert loss >= 0
