"""What a site computes when it scores candidates on its validation patients: pair counts of
Harrell's c-index (survival) or of the Mann-Whitney AUC per ordered class pair (classification),
and delete-one jackknife variances of the site's metric and of its difference to a reference
candidate. Only these aggregates leave the site (:class:`~common.evaluation.scores.CandidateScore`).

A survival pair (i, j) is comparable when i's observed time is shorter and i had the event, or
the times are equal and only i had the event; it is concordant when i's risk is higher, tied on
risk when the risks are equal (sksurv's ``concordance_index_censored`` counts the same). A
classification stratum (a, b), a != b, holds the pairs of a patient of class a and one of class
b; it is concordant when the first has the higher probability of class a. With two classes both
strata equal the AUC; with more, their mean is Hand and Till's multi-class AUC.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from .scores import CandidateScore, PairCounts

ROWS = 512  # patients per block of the pair matrix (memory: ROWS x n per candidate)


def n_strata(kind: str, n_classes: int) -> int:
    """How many strata a report of this task has: 1 (survival) or C (C - 1) ordered class pairs."""
    return 1 if kind == "survival" else n_classes * (n_classes - 1)


def pair_blocks(
    kind: str, targets: dict[str, np.ndarray], n_classes: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(stratum, first, second): the comparable pairs in blocks of at most ``ROWS`` x n; ``first``
    is the patient that should rank higher (memory stays O(ROWS x n) for any validation set)."""
    if kind == "survival":
        t = np.asarray(targets["time"], dtype=float)
        e = np.asarray(targets["event"]).astype(bool)
        for start in range(0, t.size, ROWS):
            i = np.arange(start, min(start + ROWS, t.size))
            ok = e[i, None] & (
                (t[i, None] < t[None, :]) | ((t[i, None] == t[None, :]) & ~e[None, :])
            )  # (rows, n)
            hi, lo = np.nonzero(ok)
            yield 0, i[hi], lo
        return
    y = np.asarray(targets["label"], dtype=int)
    k = 0
    for a in range(n_classes):
        for b in range(n_classes):
            if a == b:
                continue
            first, second = np.flatnonzero(y == a), np.flatnonzero(y == b)
            rows = max(1, ROWS * 64 // max(1, second.size))
            for start in range(0, first.size, rows):
                chunk = first[start : start + rows]
                yield k, np.repeat(chunk, second.size), np.tile(second, chunk.size)
            k += 1


def strata_scores(scores: np.ndarray, n_classes: int, kind: str) -> list[np.ndarray]:
    """The score each stratum ranks by: the risk (survival) or P(class a) for stratum (a, b)."""
    if kind == "survival":
        return [np.asarray(scores, dtype=float).reshape(-1)]
    p = np.asarray(scores, dtype=float)
    return [p[:, a] for a in range(n_classes) for b in range(n_classes) if a != b]


def _metric(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Mean over strata of num / den, over the strata with pairs: (..., strata) -> (...)."""
    ratio = np.full(num.shape, np.nan)
    np.divide(num, den, out=ratio, where=den > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row without any pair is NaN, on purpose
        return np.asarray(np.nanmean(ratio, axis=-1))


def events_of(kind: str, targets: dict[str, np.ndarray], n_classes: int, rows: np.ndarray) -> int:
    """The cell the minimum cell size protects: events (survival), or the smallest class present."""
    if kind == "survival":
        return int(np.asarray(targets["event"])[rows].astype(bool).sum())
    counts = np.bincount(np.asarray(targets["label"])[rows].astype(int), minlength=n_classes)
    return int(counts[counts > 0].min()) if counts.any() else 0


def score_candidates(
    kind: str,
    n_classes: int,
    targets: dict[str, np.ndarray],
    scores: list[np.ndarray | None],
    scored: list[np.ndarray],
    min_cell: int = 1,
) -> list[CandidateScore | None]:
    """Pair counts and jackknife variances of every candidate on the same patients.

    ``scores[k]``: candidate k's risk (n,) or probabilities (n, C), or None; ``scored[k]``: (n,)
    bool, the patients candidate k can score (it needs a modality they have). Candidate 0 is the
    reference ``var_diff`` is measured against; over fewer than ``min_cell`` patients scored by
    both it is NaN (not sent as a number). A candidate without a comparable pair is None."""
    n, m, s_n = len(scored[0]), len(scores), n_strata(kind, n_classes)
    ranked = [strata_scores(s, n_classes, kind) if s is not None else None for s in scores]
    num, den = np.zeros((m, s_n)), np.zeros((m, s_n))
    num_p, den_p = (
        np.zeros((m, n, s_n)),
        np.zeros((m, n, s_n)),
    )  # each patient's share: the pairs it is part of
    conc, tied = np.zeros((m, s_n), dtype=np.int64), np.zeros((m, s_n), dtype=np.int64)
    for k, first, second in pair_blocks(kind, targets, n_classes):
        for c, (r, ok) in enumerate(zip(ranked, scored, strict=True)):
            if r is None:
                continue
            keep = ok[first] & ok[second]
            f, g = first[keep], second[keep]
            hi, lo = r[k][f], r[k][g]
            value = (hi > lo) + 0.5 * (hi == lo)
            num[c, k] += value.sum()
            den[c, k] += f.size
            num_p[c, :, k] += np.bincount(f, weights=value, minlength=n) + np.bincount(
                g, weights=value, minlength=n
            )
            den_p[c, :, k] += np.bincount(f, minlength=n) + np.bincount(g, minlength=n)
            conc[c, k] += int((hi > lo).sum())
            tied[c, k] += int((hi == lo).sum())
    loo = _metric(
        num[:, None, :] - num_p, den[:, None, :] - den_p
    )  # (m, n): the metric without patient p
    out: list[CandidateScore | None] = []
    for c in range(m):
        if ranked[c] is None or den[c].sum() == 0:
            out.append(None)
            continue
        ok = scored[c]
        counts = tuple(
            PairCounts(
                int(conc[c, k]), int(den[c, k]) - int(conc[c, k]) - int(tied[c, k]), int(tied[c, k])
            )
            for k in range(s_n)
        )
        shared = ok & scored[0]
        var_diff = (
            _jackknife((loo[c] - loo[0])[shared])
            if den[0].sum() > 0 and shared.sum() >= min_cell
            else float("nan")
        )
        out.append(
            CandidateScore(
                counts,
                int(ok.sum()),
                events_of(kind, targets, n_classes, ok),
                _jackknife(loo[c][ok]),
                var_diff,
            )
        )
    return out


def _jackknife(values: np.ndarray) -> float:
    """Delete-one jackknife variance (n-1)/n * sum (theta_-p - mean)^2 over finite values."""
    v = values[np.isfinite(values)]
    if v.size < 2:
        return float("nan")
    return float((v.size - 1) / v.size * np.sum((v - v.mean()) ** 2))
