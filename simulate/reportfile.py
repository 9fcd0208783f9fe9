"""The report of one simulated run (report.json) as dataclasses: the one place that writes it to
JSON and reads it back, key for key and in order (its rows: :mod:`.measurements` and
:mod:`.evidence`). Sections copied from a model version's card or from the fuse run's record (the
merge's and the fused version's validation, the fuse card, the curve of a run that stored nothing)
stay the JSON they were stored as."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .evidence import BaselineRow, ReferenceRow, ValidationSummary
from .measurements import ComparisonRow, SiteResult, SummaryRow, comparisons_from_json

Json = dict[str, Any]
T = TypeVar("T")


def _rows(items: Sequence[Any]) -> list[Json]:
    return [x.to_json() for x in items]


# ---- who and what --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SiteRow:
    """A hospital of the scenario: what it holds, and how many of its patients are test patients."""

    name: str
    modalities: tuple[str, ...]
    paired: bool
    patients: int
    events: int | None  # survival only
    test_patients: int

    def to_json(self) -> Json:
        return {
            "name": self.name,
            "modalities": list(self.modalities),
            "paired": self.paired,
            "patients": self.patients,
            "events": self.events,
            "test_patients": self.test_patients,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SiteRow:
        return cls(
            d["name"],
            tuple(d["modalities"]),
            d["paired"],
            d["patients"],
            d["events"],
            d["test_patients"],
        )


@dataclass(frozen=True)
class BlockRow:
    """A block of the merge: who trained it, what it published, and its test metric alone."""

    site: str
    modality: str
    block: str  # the block id's first 12 characters
    n_train: int
    val_metric: float | None
    dp_epsilon: float | None
    test: float

    def to_json(self) -> Json:
        return {
            "site": self.site,
            "modality": self.modality,
            "block": self.block,
            "n_train": self.n_train,
            "val_metric": self.val_metric,
            "dp_epsilon": self.dp_epsilon,
            "test": self.test,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BlockRow:
        return cls(
            d["site"],
            d["modality"],
            d["block"],
            d["n_train"],
            d["val_metric"],
            d["dp_epsilon"],
            d["test"],
        )


@dataclass(frozen=True)
class MergeSection:
    model: str
    recipe: str
    validation: Json  # the version card's validation, as stored

    def to_json(self) -> Json:
        return {"model": self.model, "recipe": self.recipe, "validation": self.validation}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MergeSection:
        return cls(d["model"], d["recipe"], d["validation"])


@dataclass(frozen=True)
class FuseStored:
    """The fused version the run stored."""

    model: str
    card: Json  # its card's ``fuse`` section, as stored
    validation: Json  # its card's ``validation``, as stored

    def to_json(self) -> Json:
        return {"model": self.model, "card": self.card, "validation": self.validation}


@dataclass(frozen=True)
class FuseNotStored:
    """A fuse run that stored nothing: why, and its validation curve as the run recorded it."""

    not_stored: str
    curve: tuple[Json | None, ...]

    def to_json(self) -> Json:
        return {"not_stored": self.not_stored, "curve": list(self.curve)}


FuseSection = FuseStored | FuseNotStored


def fuse_from_json(d: Mapping[str, Any]) -> FuseSection:
    if "not_stored" in d:
        return FuseNotStored(d["not_stored"], tuple(d["curve"]))
    return FuseStored(d["model"], d["card"], d["validation"])


@dataclass(frozen=True)
class Recommended:
    model: str
    metric: float | None
    reason: str
    # site -> (version, why) where a site's own evidence favours another version for its patients
    for_sites: dict[str, tuple[str, str]] = field(default_factory=dict)

    def to_json(self) -> Json:
        return {
            "model": self.model,
            "metric": self.metric,
            "reason": self.reason,
            "for_sites": {s: {"model": m, "reason": r} for s, (m, r) in self.for_sites.items()},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Recommended | None:
        if not d:
            return None
        sites = {s: (v["model"], v["reason"]) for s, v in d.get("for_sites", {}).items()}
        return cls(d["model"], d["metric"], d["reason"], sites)


@dataclass(frozen=True)
class Centralized:
    """What the simulator retrained in its own process from the same site data."""

    site: str  # whose blocks were trained again
    blocks_exact: bool  # equal to the blocks that site pushed, bit for bit
    fuse_test: float | None  # LegoFuse's kept rounds run centrally, test metric (None: none kept)

    def to_json(self) -> Json:
        return {"site": self.site, "blocks_exact": self.blocks_exact, "fuse_test": self.fuse_test}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Centralized:
        return cls(d["site"], d["blocks_exact"], d["fuse_test"])


# ---- communication -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Traffic:
    up: int
    down: int
    rounds: int


@dataclass(frozen=True)
class CommunicationRow:
    """Payload bytes of one site: MM-Lego's (of which federated evaluation's) and each FedAvg
    baseline's (stored as ``<kind>_up``, ``<kind>_down``, ``<kind>_rounds``)."""

    mmlego_up: int
    mmlego_down: int
    mmlego_rounds: int
    evaluation_up: int
    evaluation_down: int
    baselines: dict[str, Traffic] = field(default_factory=dict)

    def to_json(self) -> Json:
        out: Json = {
            "mmlego_up": self.mmlego_up,
            "mmlego_down": self.mmlego_down,
            "mmlego_rounds": self.mmlego_rounds,
            "evaluation_up": self.evaluation_up,
            "evaluation_down": self.evaluation_down,
        }
        for kind, t in self.baselines.items():
            out.update({f"{kind}_up": t.up, f"{kind}_down": t.down, f"{kind}_rounds": t.rounds})
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CommunicationRow:
        kinds = [k[: -len("_rounds")] for k in d if k.endswith("_rounds") and k != "mmlego_rounds"]
        return cls(
            d["mmlego_up"],
            d["mmlego_down"],
            d["mmlego_rounds"],
            d["evaluation_up"],
            d["evaluation_down"],
            {k: Traffic(d[f"{k}_up"], d[f"{k}_down"], d[f"{k}_rounds"]) for k in kinds},
        )


# ---- the report ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Report:
    """Every figure of one run. ``summary``, ``comparisons``, ``per_site``, ``references`` and
    ``centralized`` exist only when the scenario compares with the references (``summary`` and
    ``comparisons`` only when some test patients could be scored by every kind); JSON leaves out
    what does not exist."""

    scenario: str
    description: str
    synthetic: bool
    metric: str
    metric_scope: str
    task: str
    seed: int
    engine: str
    folds: int
    test_fold: str
    test_folds: int
    placement: dict[str, str]  # ray engine: site -> the Ray node that trained its block(s)
    sites: tuple[SiteRow, ...]
    test_patients: int
    blocks: tuple[BlockRow, ...]
    merge: MergeSection
    fuse: FuseSection
    recommended: Recommended | None
    validation: ValidationSummary
    rounds: int
    epochs: int
    summary: tuple[SummaryRow, ...] | None = None
    comparisons: tuple[ComparisonRow, ...] | None = None
    per_site: tuple[SiteResult, ...] | None = None
    references: dict[str, ReferenceRow] | None = None
    centralized: Centralized | None = None
    baselines: dict[str, BaselineRow] = field(default_factory=dict)
    communication: dict[str, CommunicationRow] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    # what one LegoFuse round message carries (the round model's trainable tensors, one way)
    round_bytes: int = 0

    def to_json(self) -> Json:
        out: Json = {
            "scenario": self.scenario,
            "description": self.description,
            "synthetic": self.synthetic,
            "metric": self.metric,
            "metric_scope": self.metric_scope,
            "task": self.task,
            "seed": self.seed,
            "engine": self.engine,
            "folds": self.folds,
            "test_fold": self.test_fold,
            "test_folds": self.test_folds,
            "placement": dict(self.placement),
            "sites": _rows(self.sites),
            "test_patients": self.test_patients,
            "blocks": _rows(self.blocks),
            "merge": self.merge.to_json(),
            "fuse": self.fuse.to_json(),
            "recommended": self.recommended.to_json() if self.recommended is not None else {},
            "validation": self.validation.to_json(),
            "rounds": self.rounds,
            "epochs": self.epochs,
        }
        if self.summary is not None:
            out["summary"] = _rows(self.summary)
        if self.comparisons is not None:
            out["comparisons"] = _rows(self.comparisons)
        if self.per_site is not None:
            out["per_site"] = _rows(self.per_site)
        if self.references is not None:
            out["references"] = {k: r.to_json() for k, r in self.references.items()}
        if self.centralized is not None:
            out["centralized"] = self.centralized.to_json()
        out["baselines"] = {k: b.to_json() for k, b in self.baselines.items()}
        out["communication"] = {k: c.to_json() for k, c in self.communication.items()}
        out["phases_s"] = dict(self.phases_s)
        out["peak_rss_mb"] = dict(self.peak_rss_mb)
        out["checks"] = dict(self.checks)
        out["round_bytes"] = self.round_bytes
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Report:
        return cls(
            scenario=d["scenario"],
            description=d["description"],
            synthetic=d["synthetic"],
            metric=d["metric"],
            metric_scope=d["metric_scope"],
            task=d["task"],
            seed=d["seed"],
            engine=d["engine"],
            folds=d["folds"],
            test_fold=d["test_fold"],
            test_folds=d["test_folds"],
            placement=dict(d["placement"]),
            sites=tuple(SiteRow.from_json(s) for s in d["sites"]),
            test_patients=d["test_patients"],
            blocks=tuple(BlockRow.from_json(b) for b in d["blocks"]),
            merge=MergeSection.from_json(d["merge"]),
            fuse=fuse_from_json(d["fuse"]),
            recommended=Recommended.from_json(d["recommended"]),
            validation=ValidationSummary.from_json(d["validation"]),
            rounds=d["rounds"],
            epochs=d["epochs"],
            summary=_maybe(d, "summary", lambda x: tuple(SummaryRow.from_json(r) for r in x)),
            comparisons=_maybe(d, "comparisons", comparisons_from_json),
            per_site=_maybe(d, "per_site", lambda x: tuple(SiteResult.from_json(s) for s in x)),
            references=_maybe(
                d, "references", lambda x: {k: ReferenceRow.from_json(r) for k, r in x.items()}
            ),
            centralized=_maybe(d, "centralized", Centralized.from_json),
            baselines={k: BaselineRow.from_json(b) for k, b in d["baselines"].items()},
            communication={k: CommunicationRow.from_json(c) for k, c in d["communication"].items()},
            phases_s=dict(d["phases_s"]),
            peak_rss_mb=dict(d["peak_rss_mb"]),
            checks=dict(d["checks"]),
            round_bytes=int(d.get("round_bytes", 0)),  # reports before issue 27 lack it
        )


def _maybe(d: Mapping[str, Any], key: str, convert: Callable[[Any], T]) -> T | None:
    """``d[key]`` converted, or None where the report has no such section."""
    return None if key not in d else convert(d[key])
