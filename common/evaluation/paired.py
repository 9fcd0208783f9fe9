"""Paired comparisons of models scored on the same test patients: the difference of their
within-site c-index / AUC and its interval by a bootstrap stratified by site.

The metric is the one sites report (:func:`~common.evaluation.scores.stratified_metric`): only two
patients of the same site form a pair (pairs as in :mod:`~common.evaluation.pairs`), counts are
summed over sites per stratum, and the metric is the mean over strata with pairs of
(concordant + tied / 2) / comparable.

Bootstrap. A replicate draws every site's patients with replacement, as many as the site has, and
scores both models on the same draw (paired). A draw is a vector of multiplicities ``w`` (patient i
drawn ``w_i`` times); the resampled set holds ``w_i * w_j`` copies of pair (i, j), so a stratum's
counts are the quadratic forms ``w' V w`` (values: 1 concordant, 0.5 tied) and ``w' P w``
(comparable), computed for a block of replicates at once as matrix products over pairs found once.
Convention for a patient drawn twice: its two copies form no pair. This is what pairs.py's counting
gives on the explicitly duplicated data, exactly: copies share time, event and class, so they are
never comparable (Harrell's rule needs a shorter time, or an equal time with only the first an
event; a classification stratum needs two different classes). Replicates are therefore the metric
of the duplicated data, not an approximation of it.

Seeds (one :class:`TestSet` each) are resampled independently and a replicate's value is the mean
over seeds of their differences. Independence holds for the built-in scenarios, whose seeds' test
sets are disjoint folds of the cohort; overlapping test sets would make the interval too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .pairs import n_strata, pair_blocks, strata_scores

CHUNK = 128  # replicates per matrix product (memory: CHUNK x patients of a site, per block)


@dataclass(frozen=True)
class TestSet:
    """One seed's test patients."""

    __test__ = False  # not a pytest class

    kind: str  # "survival" or "classification"
    n_classes: int  # classification: C; survival: ignored
    site: np.ndarray  # (n,) site label of each patient
    targets: dict[str, np.ndarray]  # survival {"time", "event"}; classification {"label"}
    scores: dict[
        str, np.ndarray
    ]  # model -> (n,) risk or (n, C) class probabilities; every patient scored

    @property
    def patients(self) -> int:
        return int(np.asarray(self.site).shape[0])

    def same_patients(self, other: TestSet) -> bool:
        """Whether ``other`` holds the same patients in the same order (hospitals and targets)."""
        return (
            self.targets.keys() == other.targets.keys()
            and np.array_equal(np.asarray(self.site), np.asarray(other.site))
            and all(
                np.array_equal(np.asarray(v), np.asarray(other.targets[k]))
                for k, v in self.targets.items()
            )
        )


@dataclass(frozen=True)
class Block:
    """The comparable pairs at one site of the strata whose pairs share their first patients
    (survival: the site's one stratum; classification: the strata (a, b) of one class a):
    ``pairs[r, c]`` = 1 where (rows[r], cols[c]) is comparable. The columns run stratum by
    stratum: group g (stratum ``strata[g]``) starts at column ``starts[g]``."""

    rows: np.ndarray  # (r,) patient indices into the test set, the patients that should rank higher
    cols: np.ndarray  # (c,)
    pairs: np.ndarray  # (r, c) float32, 0 or 1
    strata: np.ndarray  # (g,)
    starts: np.ndarray  # (g,)


@dataclass(frozen=True)
class Comparison:
    """Model ``a`` minus model ``b``: the mean over seeds of the within-site metric difference,
    its percentile bootstrap interval, and what it rests on."""

    a: str
    b: str
    diff: float
    low: float
    high: float
    patients: int  # test patients in all (sum over seeds)
    seeds: int  # seeds that scored both models

    def to_dict(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "diff": _r(self.diff),
            "low": _r(self.low),
            "high": _r(self.high),
            "patients": self.patients,
            "seeds": self.seeds,
        }


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def site_blocks(test: TestSet) -> list[Block]:
    """Every site's comparable pairs as dense blocks (pairs.py decides what a pair is); strata with
    the same first patients share a block, so that one matrix product serves them all."""
    site = np.asarray(test.site)
    out: list[Block] = []
    for label in np.unique(site):
        idx = np.flatnonzero(site == label)
        sub = {k: np.asarray(v)[idx] for k, v in test.targets.items()}
        groups: dict[bytes, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for k, rows, cols, pairs in _strata_pairs(test.kind, sub, test.n_classes):
            groups.setdefault(rows.tobytes(), []).append((k, cols, pairs))
        for key, members in groups.items():
            rows = np.frombuffer(key, dtype=np.intp)
            widths = [cols.size for _, cols, _ in members]
            out.append(
                Block(
                    idx[rows],
                    idx[np.concatenate([cols for _, cols, _ in members])],
                    np.hstack([pairs for _, _, pairs in members]),
                    np.array([k for k, _, _ in members]),
                    np.cumsum([0, *widths[:-1]]),
                )
            )
    return out


def _strata_pairs(
    kind: str, targets: dict[str, np.ndarray], n_classes: int
) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(stratum, rows, cols, (r, c) 0/1 comparable) of one site's patients, for every stratum
    with pairs."""
    firsts: dict[int, list[np.ndarray]] = {}
    seconds: dict[int, list[np.ndarray]] = {}
    for k, first, second in pair_blocks(kind, targets, n_classes):
        firsts.setdefault(k, []).append(first)
        seconds.setdefault(k, []).append(second)
    out = []
    for k in sorted(firsts):
        first, second = np.concatenate(firsts[k]), np.concatenate(seconds[k])
        if first.size == 0:
            continue
        rows, cols = np.unique(first).astype(np.intp), np.unique(second).astype(np.intp)
        pairs = np.zeros((rows.size, cols.size), dtype=np.float32)  # (r, c)
        pairs[np.searchsorted(rows, first), np.searchsorted(cols, second)] = 1.0
        out.append((k, rows, cols, pairs))
    return out


def pair_values(test: TestSet, model: str, blocks: Sequence[Block]) -> list[np.ndarray]:
    """Per block, each comparable pair's value for ``model``: 1 concordant, 0.5 tied, 0
    otherwise."""
    scores = np.asarray(test.scores[model], dtype=float)
    n = test.patients
    expected = (n,) if test.kind == "survival" else (n, test.n_classes)
    if test.kind == "survival" and scores.size == n:
        scores = scores.reshape(n)  # (n,): a (n, 1) column of risks is fine
    if scores.shape != expected:
        raise ValueError(f"scores of {model!r} have shape {scores.shape}; expected {expected}")
    ranked = strata_scores(scores, test.n_classes, test.kind)
    out = []
    for b in blocks:
        ends = [*b.starts[1:], b.cols.size]
        parts = []
        for k, start, end in zip(b.strata, b.starts, ends, strict=True):
            hi, lo = (
                ranked[k][b.rows][:, None],
                ranked[k][b.cols[start:end]][None, :],
            )  # (r, 1), (1, c_k)
            parts.append((hi > lo) + 0.5 * (hi == lo))
        out.append(b.pairs * np.hstack(parts).astype(np.float32))  # (r, c)
    return out


def _counts(
    blocks: Sequence[Block], mats: Sequence[np.ndarray], w: np.ndarray, strata: int
) -> np.ndarray:
    """Per replicate and stratum, sum over pairs of w_i w_j m_ij: (R, n) multiplicities ->
    (R, strata).

    The float32 products are exact: entries are multiples of 0.5 no larger than the patients
    drawn."""
    out = np.zeros((w.shape[0], strata))
    for b, m in zip(blocks, mats, strict=True):
        both = (w[:, b.rows] @ m).astype(np.float64) * w[:, b.cols]  # (R, c): w_j sum_i w_i m_ij
        out[:, b.strata] += np.add.reduceat(both, b.starts, axis=1)  # (R, g)
    return out


def _mean_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Mean over strata with pairs of num / den: (R, strata) -> (R,); NaN where no stratum has
    pairs."""
    has = den > 0
    ratio = np.divide(num, den, out=np.zeros_like(num), where=has)
    k = has.sum(axis=1)
    return np.divide(ratio.sum(axis=1), k, out=np.full(k.shape, np.nan), where=k > 0)


def weighted_metric(test: TestSet, kind: str, w: np.ndarray) -> np.ndarray:
    """The within-site metric of model ``kind`` on the data in which patient i appears ``w_i``
    times, for each row of ``w``: (R, n) -> (R,), or (n,) -> one number."""
    blocks = site_blocks(test)
    strata = n_strata(test.kind, test.n_classes)
    mult = np.atleast_2d(np.asarray(w, dtype=np.float32))  # (R, n)
    num = _counts(blocks, pair_values(test, kind, blocks), mult, strata)
    den = _counts(blocks, [b.pairs for b in blocks], mult, strata)
    out = _mean_ratio(num, den)
    return out if np.ndim(w) > 1 else out[0]


def within_site_metric(test: TestSet, kind: str) -> float:
    """The within-site c-index / AUC of model ``kind`` on all patients of ``test``."""
    return float(weighted_metric(test, kind, np.ones(test.patients)))


def multiplicities(site: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap draws stratified by site: (R, n) float32, how often each patient is drawn; each
    site's patients are drawn with replacement as many times as the site has patients."""
    site = np.asarray(site)
    w = np.zeros((replicates, site.shape[0]), dtype=np.float32)  # (R, n)
    for label in np.unique(site):
        idx = np.flatnonzero(site == label)
        draws = (
            rng.integers(0, idx.size, size=(replicates, idx.size))
            + idx.size * np.arange(replicates)[:, None]
        )  # (R, n_s)
        w[:, idx] = np.bincount(draws.ravel(), minlength=replicates * idx.size).reshape(
            replicates, idx.size
        )
    return w


def _replicate_diffs(
    test: TestSet, a: str, others: Sequence[str], replicates: int, rng: np.random.Generator
) -> dict[str, tuple[float, np.ndarray]]:
    """One seed: for each b in ``others``, (metric(a) - metric(b) on all patients, (R,) the same
    difference on each bootstrap draw). The draws are shared by every b."""
    blocks = site_blocks(test)
    strata = n_strata(test.kind, test.n_classes)
    w = multiplicities(test.site, replicates, rng)  # (R, n)
    ones = np.ones((1, test.patients), dtype=np.float32)
    pairs = [b.pairs for b in blocks]
    den_all, den = _counts(blocks, pairs, ones, strata), _chunked(blocks, pairs, w, strata)

    def metrics(model: str) -> tuple[float, np.ndarray]:
        values = pair_values(test, model, blocks)
        full = _mean_ratio(_counts(blocks, values, ones, strata), den_all)[0]
        return float(full), _mean_ratio(_chunked(blocks, values, w, strata), den)

    ref_full, ref = metrics(a)
    out = {}
    for b in others:
        full, rep = (ref_full, ref) if b == a else metrics(b)
        out[b] = (ref_full - full, ref - rep)
    return out


def _chunked(
    blocks: Sequence[Block], mats: Sequence[np.ndarray], w: np.ndarray, strata: int
) -> np.ndarray:
    """:func:`_counts` over ``CHUNK`` replicates at a time: (R, n) -> (R, strata)."""
    return np.concatenate(
        [_counts(blocks, mats, w[s : s + CHUNK], strata) for s in range(0, w.shape[0], CHUNK)]
    )


def compare_models(
    tests: Sequence[TestSet],
    a: str,
    others: Sequence[str],
    replicates: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> list[Comparison]:
    """Model ``a`` against each of ``others`` on the seeds that scored both (a model no seed shares
    with ``a`` is left out): the mean over seeds of the within-site metric difference, and its
    ``level`` percentile interval over ``replicates`` paired draws stratified by site. Seed t's
    draws come from ``default_rng([seed, t])``, so the result depends on ``seed`` only."""
    if replicates < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"replicates {replicates} must be >= 1 and level {level} in (0, 1)")
    per_seed: list[dict[str, tuple[float, np.ndarray]]] = []
    for t, test in enumerate(tests):
        shared = [b for b in others if a in test.scores and b in test.scores]
        per_seed.append(
            _replicate_diffs(test, a, shared, replicates, np.random.default_rng([seed, t]))
            if shared
            else {}
        )
    out = []
    for b in others:
        used = [t for t, d in enumerate(per_seed) if b in d]
        if not used:
            continue
        diff = float(np.mean([per_seed[t][b][0] for t in used]))
        reps = np.mean([per_seed[t][b][1] for t in used], axis=0)  # (R,)
        low, high = _percentiles(reps, level)
        out.append(
            Comparison(a, b, diff, low, high, sum(tests[t].patients for t in used), len(used))
        )
    return out


def _percentiles(reps: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite replicates (NaN when there are none:
    a draw without any comparable pair has no metric)."""
    ok = reps[np.isfinite(reps)]
    if ok.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(ok, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)
