"""The task a block solves: survival (discrete-time hazards) or classification."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any, Literal

from ..fields import reject_unknown

TaskKind = Literal["survival", "classification"]
TASK_KINDS: tuple[str, ...] = ("survival", "classification")


@dataclass(frozen=True)
class TaskSpec:
    """What every block of a task agrees on; heads can only be merged when this is equal."""

    kind: TaskKind
    n_bins: int = 4  # survival: number of discrete time bins (k)
    bin_edges: tuple[float, ...] = ()  # survival: the k-1 inner cut points, from training data
    n_classes: int = 2  # classification: number of classes
    alpha: float = 0.0  # survival: extra weight on the uncensored term of the NLL
    class_weights: tuple[float, ...] = ()  # classification: optional CE weights, one per class

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; known: {', '.join(TASK_KINDS)}")
        if self.kind == "survival":
            if self.n_bins < 2:
                raise ValueError(f"survival needs n_bins >= 2, got {self.n_bins}")
            if self.bin_edges and len(self.bin_edges) != self.n_bins - 1:
                raise ValueError(
                    f"survival needs {self.n_bins - 1} inner bin edges, got {len(self.bin_edges)}"
                )
            if any(b <= a for a, b in pairwise(self.bin_edges)):
                raise ValueError(f"bin edges must increase strictly, got {self.bin_edges}")
            if not 0.0 <= self.alpha <= 1.0:
                raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        else:
            if self.n_classes < 2:
                raise ValueError(f"classification needs n_classes >= 2, got {self.n_classes}")
            if self.class_weights and len(self.class_weights) != self.n_classes:
                raise ValueError(
                    f"class_weights needs {self.n_classes} values, got {len(self.class_weights)}"
                )

    @property
    def n_outputs(self) -> int:
        """Width of the head: hazard logits per bin, or class logits."""
        return self.n_bins if self.kind == "survival" else self.n_classes

    def merge_key(self) -> tuple[object, ...]:
        """What blocks must share to be merged: the outputs' meaning. Loss settings (``alpha``,
        ``class_weights``) are local to a site's training and may differ."""
        return (
            (self.kind, self.n_bins, self.bin_edges)
            if self.kind == "survival"
            else (self.kind, self.n_classes)
        )

    @property
    def metric_name(self) -> str:
        return "c-index" if self.kind == "survival" else "auc"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bin_edges"] = list(self.bin_edges)
        d["class_weights"] = list(self.class_weights)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        reject_unknown(cls, data, "task spec")
        data = dict(data)
        data["bin_edges"] = tuple(float(x) for x in data.get("bin_edges", ()))
        data["class_weights"] = tuple(float(x) for x in data.get("class_weights", ()))
        return cls(**data)
