"""The summary of a run over several seeds (``--seeds N``: the top report.json) as dataclasses: the
one place that writes it to JSON and reads it back, key for key and in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .evidence import (
    ValidationSummary,
)
from .measurements import (
    ComparisonRow,
    comparisons_from_json,
)
from .reportfile import (
    Json,
)


@dataclass(frozen=True)
class SeedRow:
    """A kind's within-site test metric over the seeds: mean, standard deviation, every value."""

    model: str
    kind: str
    patients: int  # test patients over all the seeds
    mean: float
    std: float
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    picked: tuple[str, ...]  # the model each seed measured

    def to_json(self) -> Json:
        return {
            "model": self.model,
            "kind": self.kind,
            "patients": self.patients,
            "mean": self.mean,
            "std": self.std,
            "seeds": list(self.seeds),
            "values": list(self.values),
            "picked": list(self.picked),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SeedRow:
        return cls(
            d["model"],
            d["kind"],
            d["patients"],
            d["mean"],
            d["std"],
            tuple(d["seeds"]),
            tuple(d["values"]),
            tuple(d["picked"]),
        )


@dataclass(frozen=True)
class SiteKindRow:
    kind: str
    mean: float
    std: float
    seeds: int

    def to_json(self) -> Json:
        return {"kind": self.kind, "mean": self.mean, "std": self.std, "seeds": self.seeds}


@dataclass(frozen=True)
class SeedSite:
    """A hospital's own test patients over the seeds."""

    site: str
    patients: int
    rows: tuple[SiteKindRow, ...]
    comparisons: tuple[ComparisonRow, ...]

    def to_json(self) -> Json:
        return {
            "site": self.site,
            "patients": self.patients,
            "rows": [r.to_json() for r in self.rows],
            "comparisons": [c.to_json() for c in self.comparisons],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SeedSite:
        return cls(
            d["site"],
            d["patients"],
            tuple(SiteKindRow(r["kind"], r["mean"], r["std"], r["seeds"]) for r in d["rows"]),
            comparisons_from_json(d["comparisons"]),
        )


@dataclass(frozen=True)
class SeedRun:
    """What the consortium chose in one seed."""

    seed: int
    merge: Any  # the recipe the merge chose (the card's; None when nothing was measured)
    scored_by: tuple[str, ...]
    declined_by: tuple[str, ...]
    fuse: str  # the fused version, or "not stored: <why>"
    recommended: str | None
    validation: ValidationSummary
    # site -> the version recommended for its patients, where not the consortium's
    for_sites: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> Json:
        return {
            "seed": self.seed,
            "merge": self.merge,
            "scored_by": list(self.scored_by),
            "declined_by": list(self.declined_by),
            "fuse": self.fuse,
            "recommended": self.recommended,
            "for_sites": dict(self.for_sites),
            "validation": self.validation.to_json(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SeedRun:
        return cls(
            d["seed"],
            d["merge"],
            tuple(d["scored_by"]),
            tuple(d["declined_by"]),
            d["fuse"],
            d["recommended"],
            ValidationSummary.from_json(d["validation"]),
            dict(d.get("for_sites", {})),
        )


@dataclass(frozen=True)
class SeedsSummary:
    """Every kind over the seeds, ``recommended`` minus every other kind with 95 % intervals
    combined over the seeds of one block of test folds (``comparison_seeds`` of them), the same per
    hospital, and each seed's choices."""

    scenario: str
    metric: str
    metric_scope: str
    folds: int
    seeds: tuple[int, ...]
    summary: tuple[SeedRow, ...]
    comparisons: tuple[ComparisonRow, ...]
    comparison_seeds: int
    per_site: tuple[SeedSite, ...]
    runs: tuple[SeedRun, ...]

    def to_json(self) -> Json:
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "metric_scope": self.metric_scope,
            "folds": self.folds,
            "seeds": list(self.seeds),
            "summary": [r.to_json() for r in self.summary],
            "comparisons": [c.to_json() for c in self.comparisons],
            "comparison_seeds": self.comparison_seeds,
            "per_site": [s.to_json() for s in self.per_site],
            "runs": [r.to_json() for r in self.runs],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SeedsSummary:
        return cls(
            d["scenario"],
            d["metric"],
            d["metric_scope"],
            d["folds"],
            tuple(d["seeds"]),
            tuple(SeedRow.from_json(r) for r in d["summary"]),
            comparisons_from_json(d["comparisons"]),
            d["comparison_seeds"],
            tuple(SeedSite.from_json(s) for s in d["per_site"]),
            tuple(SeedRun.from_json(r) for r in d["runs"]),
        )
