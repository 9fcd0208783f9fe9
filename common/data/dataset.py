"""The multimodal dataset: per modality, in-memory tensors with presence and padding masks
(tabular, sequence) or bags read lazily from per-slide files (:mod:`.bags`); targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from ..lego.inputs import ModalityInput
from .bags import EVAL, BagData, Sampling, patient_key

ModalityKind = Literal["tabular", "sequence"]


@dataclass
class ModalityData:
    """One modality for n patients. Tabular ``x`` (n, F); sequence ``x`` (n, T, F) with
    ``mask`` (n, T) True = real step/instance. ``present`` (n,) says who has it."""

    kind: ModalityKind
    x: torch.Tensor
    present: torch.Tensor
    features: list[str]
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        want = 2 if self.kind == "tabular" else 3
        if self.x.dim() != want:
            raise ValueError(f"{self.kind} data must have {want} dims, got {tuple(self.x.shape)}")
        if self.x.shape[-1] != len(self.features):
            raise ValueError(f"{len(self.features)} feature names for {self.x.shape[-1]} features")
        if self.present.shape != (n,) or self.present.dtype != torch.bool:
            raise ValueError(f"present must be bool of shape ({n},)")
        if self.kind == "sequence" and (self.mask is None or self.mask.shape != self.x.shape[:2]):
            raise ValueError("sequence data needs a bool mask of shape (n, T)")

    @property
    def n_features(self) -> int:
        return self.x.shape[-1]

    def subset(self, idx: torch.Tensor) -> ModalityData:
        return replace(
            self,
            x=self.x[idx],
            present=self.present[idx],
            mask=None if self.mask is None else self.mask[idx],
        )

    def to_input(self, idx: torch.Tensor | None = None, sampling: Sampling = EVAL) -> ModalityInput:
        sel = self if idx is None else self.subset(idx)
        return ModalityInput(sel.x, sel.mask, sel.present)


Modality = ModalityData | BagData


@dataclass
class MultimodalDataset:
    """Patients (``ids``) x modalities, with survival (time, event) or class (label) targets."""

    name: str
    task: Literal["survival", "classification"]
    ids: list[str]
    modalities: Mapping[str, Modality]
    time: np.ndarray | None = None
    event: np.ndarray | None = None
    label: np.ndarray | None = None
    n_classes: int = 0
    groups: np.ndarray | None = None  # optional site/study label per patient
    meta: dict[str, str] = field(default_factory=dict)
    # optional bool per patient: a designated validation patient (never trained on)
    holdout: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name, mod in self.modalities.items():
            if mod.present.shape[0] != n:
                raise ValueError(
                    f"modality {name!r} has {mod.present.shape[0]} rows for {n} patients"
                )
        if self.task == "survival":
            if (
                self.time is None
                or self.event is None
                or len(self.time) != n
                or len(self.event) != n
            ):
                raise ValueError("survival data needs time and event for every patient")
        elif self.label is None or len(self.label) != n:
            raise ValueError("classification data needs a label for every patient")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: Sequence[int] | np.ndarray | torch.Tensor) -> MultimodalDataset:
        ix = np.asarray(idx, dtype=np.int64)
        t = torch.as_tensor(ix)

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[ix]

        return replace(
            self,
            ids=[self.ids[i] for i in ix],
            modalities={k: v.subset(t) for k, v in self.modalities.items()},
            time=pick(self.time),
            event=pick(self.event),
            label=pick(self.label),
            groups=pick(self.groups),
            holdout=pick(self.holdout),
        )

    def select_modalities(self, names: Sequence[str]) -> MultimodalDataset:
        missing = [m for m in names if m not in self.modalities]
        if missing:
            raise KeyError(
                f"dataset {self.name!r} has no modality {missing}; it has {sorted(self.modalities)}"
            )
        return replace(self, modalities={m: self.modalities[m] for m in names})

    def targets(self) -> dict[str, np.ndarray]:
        if self.task == "survival":
            assert self.time is not None and self.event is not None
            return {"time": self.time, "event": self.event}
        assert self.label is not None
        return {"label": self.label}

    @property
    def lazy(self) -> bool:
        """True when a modality is read from files batch by batch (bags of per-slide files)."""
        return any(isinstance(m, BagData) for m in self.modalities.values())

    def inputs(
        self, idx: torch.Tensor | None = None, sampling: Sampling = EVAL
    ) -> dict[str, ModalityInput]:
        """The batch of patients ``idx`` (default all); ``sampling`` says how bags are read."""
        return {k: v.to_input(idx, sampling) for k, v in self.modalities.items()}


def concat_datasets(
    datasets: Sequence[MultimodalDataset], union: bool = False
) -> MultimodalDataset:
    """Patients of several datasets with the same task and modalities, one after the other
    (sequences padded to the longest); the first dataset's name. ``union``: the datasets may hold
    different modalities; a patient of a dataset without one lacks it."""
    if not datasets:
        raise ValueError("nothing to concatenate")
    if len(datasets) == 1:
        return datasets[0]
    first = datasets[0]
    names = list(first.modalities)
    if union:
        names = list(dict.fromkeys(m for d in datasets for m in d.modalities))
        datasets = [
            _with_modalities(
                d, {m: next(x.modalities[m] for x in datasets if m in x.modalities) for m in names}
            )
            for d in datasets
        ]
    for d in datasets[1:]:
        if d.task != first.task or list(d.modalities) != names:
            raise ValueError(
                f"cannot pool {d.name!r} ({d.task}, {list(d.modalities)}) "
                f"with {first.name!r} ({first.task}, {names})"
            )
    mods: dict[str, Modality] = {}
    for m in names:
        parts = [d.modalities[m] for d in datasets]
        if len({p.kind for p in parts}) != 1 or len({p.n_features for p in parts}) != 1:
            raise ValueError(
                f"modality {m} has different kinds or features in different datasets; "
                "they cannot be pooled"
            )
        if isinstance(parts[0], BagData):
            mods[m] = BagData.concat([p for p in parts if isinstance(p, BagData)])
            continue
        dense = [p for p in parts if isinstance(p, ModalityData)]
        if dense[0].kind == "tabular":
            x, mask = torch.cat([p.x for p in dense]), None
        else:
            steps = max(p.x.shape[1] for p in dense)
            x = torch.cat(
                [torch.nn.functional.pad(p.x, (0, 0, 0, steps - p.x.shape[1])) for p in dense]
            )
            mask = torch.cat(
                [torch.nn.functional.pad(p.mask, (0, steps - p.x.shape[1])) for p in dense]  # type: ignore[arg-type]
            )
        mods[m] = ModalityData(
            dense[0].kind, x, torch.cat([p.present for p in dense]), dense[0].features, mask
        )

    def cat(name: str) -> np.ndarray | None:
        values = [getattr(d, name) for d in datasets]
        if all(v is None for v in values):
            return None
        if name == "holdout":
            values = [
                np.zeros(len(d), dtype=bool) if v is None else v
                for d, v in zip(datasets, values, strict=True)
            ]
        if any(v is None for v in values):
            return None
        return np.concatenate(values)

    return MultimodalDataset(
        first.name,
        first.task,
        [i for d in datasets for i in d.ids],
        mods,
        time=cat("time"),
        event=cat("event"),
        label=cat("label"),
        n_classes=max(d.n_classes for d in datasets),
        groups=cat("groups"),
        meta=dict(first.meta),
        holdout=cat("holdout"),
    )


def _with_modalities(d: MultimodalDataset, like: dict[str, Modality]) -> MultimodalDataset:
    """``d`` with every modality of ``like`` in that order; one it lacks is absent for all its
    patients."""
    mods: dict[str, Modality] = {}
    for m, ref in like.items():
        if m in d.modalities:
            mods[m] = d.modalities[m]
            continue
        n = len(d)
        if isinstance(ref, BagData):
            mods[m] = ref.absent(n, np.array([patient_key(p) for p in d.ids], dtype=np.int64))
            continue
        x = torch.zeros((n, *ref.x.shape[1:]), dtype=ref.x.dtype)
        mask = None if ref.mask is None else torch.zeros((n, ref.mask.shape[1]), dtype=torch.bool)
        mods[m] = ModalityData(ref.kind, x, torch.zeros(n, dtype=torch.bool), ref.features, mask)
    return replace(d, modalities=mods)
