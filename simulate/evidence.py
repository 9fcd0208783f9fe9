"""What the choices of a simulated run rested on, as report.json records it: the merge candidates
as the sites scored them, LegoFuse's validation curve, how each hospital alone chose its own model
and how each reference was chosen (``validation``, ``per_site[].local``, ``references``,
``baselines``); each with its ``to_json``/``from_json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


def _rows(items: Sequence[Any]) -> list[Json]:
    return [x.to_json() for x in items]


# ---- what the choices rested on ------------------------------------------------------------------
@dataclass(frozen=True)
class CandidateRow:
    """A merge candidate as the sites scored it (the card's figures; None where it has none)."""

    candidate: str | None
    label: str | None
    value: float | None
    se: float | None
    diff: float | None
    se_diff: float | None
    patients: int | None
    events: int | None

    def to_json(self) -> Json:
        return {
            "candidate": self.candidate,
            "label": self.label,
            "value": self.value,
            "se": self.se,
            "diff": self.diff,
            "se_diff": self.se_diff,
            "patients": self.patients,
            "events": self.events,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CandidateRow:
        return cls(
            d.get("candidate"),
            d.get("label"),
            d.get("value"),
            d.get("se"),
            d.get("diff"),
            d.get("se_diff"),
            d.get("patients"),
            d.get("events"),
        )


@dataclass(frozen=True)
class CurvePoint:
    """A LegoFuse round's consortium validation beside the parent's."""

    value: float | None
    parent: float | None
    diff: float | None
    se_diff: float | None

    def to_json(self) -> Json:
        return {
            "value": self.value,
            "parent": self.parent,
            "diff": self.diff,
            "se_diff": self.se_diff,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CurvePoint:
        return cls(d.get("value"), d.get("parent"), d.get("diff"), d.get("se_diff"))


@dataclass(frozen=True)
class ValidationSummary:
    """How sites validate, every merge candidate's consortium validation, who scored or declined
    (with the patients each site holds), and the LegoFuse rounds' validation."""

    how: str
    candidates: tuple[CandidateRow, ...]
    chosen: Any  # the card's choice (a recipe name; None when nothing was measured)
    scored_by: tuple[str, ...]
    declined_by: tuple[str, ...]
    silent: tuple[str, ...]
    site_patients: dict[str, int]
    fuse_rounds: tuple[CurvePoint, ...]

    def to_json(self) -> Json:
        return {
            "how": self.how,
            "candidates": _rows(self.candidates),
            "chosen": self.chosen,
            "scored_by": list(self.scored_by),
            "declined_by": list(self.declined_by),
            "silent": list(self.silent),
            "site_patients": dict(self.site_patients),
            "fuse_rounds": _rows(self.fuse_rounds),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ValidationSummary:
        return cls(
            d["how"],
            tuple(CandidateRow.from_json(c) for c in d["candidates"]),
            d["chosen"],
            tuple(d["scored_by"]),
            tuple(d["declined_by"]),
            tuple(d["silent"]),
            dict(d["site_patients"]),
            tuple(CurvePoint.from_json(c) for c in d["fuse_rounds"]),
        )


@dataclass(frozen=True)
class LocalInfo:
    """How a hospital alone chose its own model: every candidate's evidence on its patients."""

    evidence: dict[str, float]
    chosen: str
    how: str  # "out of fold" or "on its validation split"

    def to_json(self) -> Json:
        return {"evidence": dict(self.evidence), "chosen": self.chosen, "how": self.how}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LocalInfo | None:
        return cls(dict(d["evidence"]), d["chosen"], d["how"]) if d else None


# ---- the references ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundPoint:
    round: int
    val: float

    def to_json(self) -> Json:
        return {"round": self.round, "val": self.val}


@dataclass(frozen=True)
class FedAvgInfo:
    """How a FedAvg-from-scratch baseline chose its round count on the sites' validation splits."""

    sites: tuple[str, ...]
    rounds_chosen: int
    val: float
    curve: tuple[RoundPoint, ...]
    budget: int  # the most rounds it could run

    def to_json(self) -> Json:
        return {
            "sites": list(self.sites),
            "rounds_chosen": self.rounds_chosen,
            "val": self.val,
            "curve": _rows(self.curve),
            "budget": self.budget,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FedAvgInfo:
        return cls(
            tuple(d["sites"]),
            d["rounds_chosen"],
            d["val"],
            tuple(RoundPoint(c["round"], c["val"]) for c in d["curve"]),
            d["budget"],
        )


@dataclass(frozen=True)
class CeilingInfo:
    """A central family's pooled validation (and the epochs it kept, for trained ones)."""

    val: float
    epochs: int | None = None

    def to_json(self) -> Json:
        return {**({"epochs": self.epochs} if self.epochs is not None else {}), "val": self.val}


@dataclass(frozen=True)
class CeilingChoice:
    """The ceiling: the central family with the best pooled validation, and every family's."""

    chosen: str
    val: dict[str, float]

    def to_json(self) -> Json:
        return {"chosen": self.chosen, "val": dict(self.val)}


ReferenceInfo = FedAvgInfo | CeilingInfo | CeilingChoice


def reference_info_from_json(d: Mapping[str, Any]) -> ReferenceInfo | None:
    if "rounds_chosen" in d:
        return FedAvgInfo.from_json(d)
    if "chosen" in d:
        return CeilingChoice(d["chosen"], dict(d["val"]))
    if "val" in d:
        return CeilingInfo(d["val"], d.get("epochs"))
    return None


@dataclass(frozen=True)
class ReferenceRow:
    name: str
    info: ReferenceInfo | None

    def to_json(self) -> Json:
        return {"name": self.name, **(self.info.to_json() if self.info is not None else {})}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ReferenceRow:
        return cls(d["name"], reference_info_from_json(d))


@dataclass(frozen=True)
class BaselineRow:
    """A FedAvg baseline's choice, with the rounds it ran in all and its model's size."""

    info: FedAvgInfo
    rounds_run: int  # choosing the round count, then training again
    model_bytes: int  # its trainable tensors, one way

    def to_json(self) -> Json:
        return {
            **self.info.to_json(),
            "rounds_run": self.rounds_run,
            "model_bytes": self.model_bytes,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BaselineRow:
        return cls(FedAvgInfo.from_json(d), d["rounds_run"], d["model_bytes"])
