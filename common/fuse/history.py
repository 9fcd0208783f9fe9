"""The rounds of a LegoFuse run as the coordinator records them: one frozen record per round, and
the one place that converts them to and from the JSON stored in the run's record and on the fused
version's card (``history``, ``rounds``, ``curve``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..records import FuseRound

Json = dict[str, Any]


@dataclass(frozen=True)
class RoundValidation:
    """The sites' verdict on a round's global model beside the parent's, on the sites that scored
    both (values rounded to 6 digits; None where there is no value)."""

    job_id: str = ""
    value: float | None = None
    parent: float | None = None
    diff: float | None = None
    se_diff: float | None = None
    sites: tuple[str, ...] = ()
    per_site: Mapping[str, float] = field(default_factory=dict)  # site -> the round's metric

    def to_json(self) -> Json:
        return {
            "job_id": self.job_id,
            "value": self.value,
            "parent": self.parent,
            "diff": self.diff,
            "se_diff": self.se_diff,
            "sites": list(self.sites),
            "per_site": dict(self.per_site),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundValidation:
        def num(key: str) -> float | None:
            x = data.get(key)
            return None if x is None else float(x)

        return cls(
            str(data.get("job_id", "")),
            num("value"),
            num("parent"),
            num("diff"),
            num("se_diff"),
            tuple(data.get("sites", ())),
            {str(k): float(v) for k, v in (data.get("per_site") or {}).items()},
        )


@dataclass(frozen=True)
class RoundRecord:
    """One round: the sites that answered (sorted), their patients (in all and per site: what
    FedAvg weighted them by) and mean training loss, the sites that failed (and why) or did not
    answer, its wall time, and the verdict when judged."""

    round: int
    sites: tuple[str, ...] = ()
    num_examples: int = 0
    train_loss: float = math.nan  # mean over the answering sites' patients
    failed: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)  # site -> why it failed
    no_answer: tuple[str, ...] = ()
    seconds: float = 0.0
    validation: RoundValidation | None = None  # None: the round was not judged
    site_examples: Mapping[str, int] = field(default_factory=dict)  # site -> patients it trained

    def to_json(self) -> Json:
        out: Json = {
            "round": self.round,
            "sites": list(self.sites),
            "num-examples": self.num_examples,
            "site-examples": dict(sorted(self.site_examples.items())),
            "train_loss": self.train_loss,
            "failed": list(self.failed),
            "errors": dict(self.errors),
            "no_answer": list(self.no_answer),
            "seconds": self.seconds,
        }
        if self.validation is not None:
            out["validation"] = self.validation.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundRecord:
        """A stored round; keys an older or hand-written record lacks take their defaults."""
        loss, validation = data.get("train_loss"), data.get("validation")
        return cls(
            int(data["round"]),
            tuple(data.get("sites", ())),
            int(data.get("num-examples", 0)),
            math.nan if loss is None else float(loss),
            tuple(data.get("failed", ())),
            {str(k): str(v) for k, v in (data.get("errors") or {}).items()},
            tuple(data.get("no_answer", ())),
            float(data.get("seconds", 0.0)),
            RoundValidation.from_json(validation) if validation else None,
            {str(k): int(v) for k, v in (data.get("site-examples") or {}).items()},
        )

    @property
    def asked(self) -> tuple[str, ...]:
        """Every site asked this round: those that answered, failed or stayed silent."""
        return self.sites + self.failed + self.no_answer

    def fuse_round(self) -> FuseRound:
        """As the registry reports a round (NaN where the verdict has no value)."""
        v = self.validation or RoundValidation()

        def num(x: float | None) -> float:
            return math.nan if x is None else x

        return FuseRound(
            self.round,
            len(self.asked),
            self.sites,
            self.failed,
            self.no_answer,
            self.num_examples,
            self.train_loss,
            self.seconds,
            num(v.value),
            num(v.parent),
            num(v.diff),
            num(v.se_diff),
        )


def history_to_json(history: Iterable[RoundRecord]) -> list[Json]:
    return [r.to_json() for r in history]


def history_from_json(data: Iterable[Mapping[str, Any]]) -> list[RoundRecord]:
    return [RoundRecord.from_json(r) for r in data]


def curve_to_json(history: Sequence[RoundRecord]) -> list[Json | None]:
    """Every round's verdict as stored in a run's ``curve`` (None: the round was not judged)."""
    return [None if r.validation is None else r.validation.to_json() for r in history]
