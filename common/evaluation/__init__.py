"""Federated evaluation: what a site computes on its validation patients (pair counts, jackknife
variances), how the consortium combines them, and how candidates are chosen on them."""

from .pairs import n_strata, score_candidates
from .scores import CandidateScore, Consortium, PairCounts, compare, consortium, stratified_metric

__all__ = [
    "CandidateScore",
    "Consortium",
    "PairCounts",
    "compare",
    "consortium",
    "n_strata",
    "score_candidates",
    "stratified_metric",
]
