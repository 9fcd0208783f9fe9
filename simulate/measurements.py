"""What a simulated run measured on its test patients, as report.json records it: every kind's
within-site metric, the paired comparisons with ``recommended``, and each hospital's own view;
each with its ``to_json``/``from_json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .evidence import LocalInfo

Json = dict[str, Any]


def _rows(items: Sequence[Any]) -> list[Json]:
    return [x.to_json() for x in items]


@dataclass(frozen=True)
class KindRow:
    """A kind's within-site metric on a test set's patients."""

    kind: str
    model: str
    patients: int
    value: float

    def to_json(self) -> Json:
        return {
            "kind": self.kind,
            "model": self.model,
            "patients": self.patients,
            "value": self.value,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> KindRow:
        return cls(d["kind"], d["model"], d["patients"], d["value"])


@dataclass(frozen=True)
class SummaryRow:
    """A kind on the summary's test patients, in the form the summary over seeds has too."""

    kind: str
    model: str
    patients: int
    value: float
    mean: float
    std: float
    seeds: tuple[int, ...]

    @classmethod
    def of(cls, row: KindRow, seed: int) -> SummaryRow:
        return cls(row.kind, row.model, row.patients, row.value, row.value, 0.0, (seed,))

    def to_json(self) -> Json:
        return {
            "kind": self.kind,
            "model": self.model,
            "patients": self.patients,
            "value": self.value,
            "mean": self.mean,
            "std": self.std,
            "seeds": list(self.seeds),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SummaryRow:
        return cls(
            d["kind"], d["model"], d["patients"], d["value"], d["mean"], d["std"], tuple(d["seeds"])
        )


@dataclass(frozen=True)
class ComparisonRow:
    """Kind ``a`` minus kind ``b``: the difference and its 95 % interval (None where undefined),
    on how many test patients and seeds (:meth:`common.evaluation.paired.Comparison.to_dict`)."""

    a: str
    b: str
    diff: float | None
    low: float | None
    high: float | None
    patients: int
    seeds: int

    def to_json(self) -> Json:
        return {
            "a": self.a,
            "b": self.b,
            "diff": self.diff,
            "low": self.low,
            "high": self.high,
            "patients": self.patients,
            "seeds": self.seeds,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ComparisonRow:
        return cls(d["a"], d["b"], d["diff"], d["low"], d["high"], d["patients"], d["seeds"])


def comparisons_from_json(items: Sequence[Mapping[str, Any]]) -> tuple[ComparisonRow, ...]:
    return tuple(ComparisonRow.from_json(c) for c in items)


@dataclass(frozen=True)
class SiteResult:
    """Each hospital's own test patients through its own modalities."""

    site: str
    modalities: tuple[str, ...]
    patients: int
    rows: tuple[KindRow, ...]
    comparisons: tuple[ComparisonRow, ...]
    local: LocalInfo | None  # None: the hospital released no block

    def to_json(self) -> Json:
        return {
            "site": self.site,
            "modalities": list(self.modalities),
            "patients": self.patients,
            "rows": _rows(self.rows),
            "comparisons": _rows(self.comparisons),
            "local": self.local.to_json() if self.local is not None else {},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SiteResult:
        return cls(
            d["site"],
            tuple(d["modalities"]),
            d["patients"],
            tuple(KindRow.from_json(x) for x in d["rows"]),
            comparisons_from_json(d["comparisons"]),
            LocalInfo.from_json(d["local"]),
        )
