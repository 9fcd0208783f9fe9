"""What sites report for a candidate and what the consortium makes of it.

The consortium metric sums every site's pair counts, stratum by stratum, before dividing: it is
the *within-site* (stratified) c-index / AUC, which compares patients of the same site only
(patients of different sites are never compared; R's ``survival::concordance`` with a strata term
computes the same). Its standard error combines the sites' own jackknife variances: the
consortium metric is the pair-weighted mean of the site metrics, so
``var = sum_s w_s^2 var_s`` with ``w_s`` = the site's share of comparable pairs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_PATIENTS = 10_000_000  # more validation patients than this at one site cannot be


@dataclass(frozen=True)
class PairCounts:
    """Pairs of one stratum: concordant, discordant, tied on the score (comparable = their sum)."""

    concordant: int
    discordant: int
    tied: int

    @property
    def comparable(self) -> int:
        return self.concordant + self.discordant + self.tied

    @property
    def numerator(self) -> float:
        return self.concordant + 0.5 * self.tied


@dataclass(frozen=True)
class CandidateScore:
    """One site's aggregate score of one candidate: pair counts per stratum (survival: one;
    classification: one per ordered class pair), the patients scored, the protected cell
    (events; for classification the smallest class), and delete-one jackknife variances of the
    site's metric and of its difference to the job's reference candidate."""

    strata: tuple[PairCounts, ...]
    patients: int
    events: int
    var_metric: float
    var_diff: float

    @property
    def comparable(self) -> int:
        return sum(s.comparable for s in self.strata)

    @property
    def metric(self) -> float:
        return stratified_metric([self])

    def problem(self, n_strata: int) -> str | None:
        """Why these numbers cannot be (negative counts, more pairs than patients allow, a wrong
        number of strata, non-finite or negative variances), or None."""
        n = self.patients
        if len(self.strata) != n_strata:
            return f"{len(self.strata)} strata; this task has {n_strata}"
        if n < 2 or self.events < 0 or self.events > n or n > MAX_PATIENTS:
            return (
                f"patients {n} and events {self.events} cannot be "
                f"(at most {MAX_PATIENTS:,} patients)"
            )
        most = n * (n - 1) // 2
        for s in self.strata:
            if min(s.concordant, s.discordant, s.tied) < 0:
                return "a pair count is negative"
            if s.comparable > most:
                return f"{s.comparable} comparable pairs among {n} patients (at most {most})"
        if self.comparable == 0:
            return "no comparable pair"
        if not (math.isfinite(self.var_metric) and 0.0 <= self.var_metric <= 1.0):
            return f"var_metric {self.var_metric} is not a variance of a metric in [0, 1]"
        if not (
            math.isnan(self.var_diff) or 0.0 <= self.var_diff <= 1.0
        ):  # NaN: too few patients shared with the reference
            return f"var_diff {self.var_diff} is not a variance of a difference of metrics"
        return None


def stratified_metric(scores: Sequence[CandidateScore]) -> float:
    """Counts summed over sites per stratum, then the mean over strata with pairs of
    (concordant + tied / 2) / comparable: Harrell's c-index, or the (Hand-Till) AUC, within
    sites."""
    if not scores:
        return float("nan")
    ratios = []
    for k in range(len(scores[0].strata)):
        num = sum(s.strata[k].numerator for s in scores)
        den = sum(s.strata[k].comparable for s in scores)
        if den > 0:
            ratios.append(num / den)
    return sum(ratios) / len(ratios) if ratios else float("nan")


@dataclass(frozen=True)
class Consortium:
    """A candidate's consortium validation metric, its standard error, and what it rests on."""

    value: float
    se: float
    sites: tuple[str, ...]
    patients: int
    events: int
    diff: float = float("nan")  # value - the reference candidate's value, on the same sites
    se_diff: float = float("nan")

    def to_dict(self) -> dict[str, object]:
        return {
            "value": _r(self.value),
            "se": _r(self.se),
            "sites": list(self.sites),
            "patients": self.patients,
            "events": self.events,
            "diff": _r(self.diff),
            "se_diff": _r(self.se_diff),
        }


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def _weighted_se(scores: Sequence[CandidateScore], attr: str) -> float:
    total = sum(s.comparable for s in scores)
    if total == 0:
        return float("nan")
    var = 0.0
    for s in scores:
        v = getattr(s, attr)
        if math.isnan(v):
            return float("nan")
        var += (s.comparable / total) ** 2 * v
    return math.sqrt(var)


def consortium(
    by_site: Mapping[str, CandidateScore], reference: Mapping[str, CandidateScore] | None = None
) -> Consortium:
    """Combine one candidate's site scores; with ``reference`` (the reference candidate's scores
    from the same job), also the difference on the sites that scored both."""
    sites = tuple(sorted(by_site))
    scores = [by_site[s] for s in sites]
    value = stratified_metric(scores)
    out = Consortium(
        value,
        _weighted_se(scores, "var_metric"),
        sites,
        sum(s.patients for s in scores),
        sum(s.events for s in scores),
    )
    if reference is None:
        return out
    common = [s for s in sites if s in reference]
    if not common:
        return out
    mine = [by_site[s] for s in common]
    diff = stratified_metric(mine) - stratified_metric([reference[s] for s in common])
    return Consortium(
        out.value, out.se, out.sites, out.patients, out.events, diff, _weighted_se(mine, "var_diff")
    )


def compare(
    a: Mapping[str, CandidateScore], b: Mapping[str, CandidateScore]
) -> tuple[float, float, tuple[str, ...]]:
    """(metric of a, metric of b, sites) on the sites that scored both: versions measured in
    different jobs are compared on the same patients only."""
    common = tuple(sorted(set(a) & set(b)))
    if not common:
        return float("nan"), float("nan"), ()
    return (
        stratified_metric([a[s] for s in common]),
        stratified_metric([b[s] for s in common]),
        common,
    )
