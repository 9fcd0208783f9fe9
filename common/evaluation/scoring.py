"""Scoring models on a site's validation patients: each model scores the patients that have at
least one of its modalities; a model that scores fewer than the site's minimum cell size of
patients (or events, or censored patients, or of the smallest class) is left out of the report,
so no count below it leaves the site."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.dataset import MultimodalDataset
from ..tasks.spec import TaskSpec
from ..train.loop import predict_scores
from .pairs import events_of, score_candidates
from .scores import CandidateScore

Scorable = tuple[torch.nn.Module, Sequence[str]]  # a model and the modalities it reads


def covered(data: MultimodalDataset, modalities: Sequence[str]) -> np.ndarray:
    """(n,) bool: patients that have at least one of ``modalities``."""
    mask = np.zeros(len(data), dtype=bool)
    for m in modalities:
        if m in data.modalities:
            mask |= data.modalities[m].present.numpy()
    return mask


def enough(data: MultimodalDataset, spec: TaskSpec, rows: np.ndarray, min_cell: int) -> bool:
    """At least ``min_cell`` patients among ``rows``, and as many events and censored patients
    (survival) or patients of the smallest class (classification): the report carries the
    patients and the events, so it reveals both cells."""
    n = int(rows.sum())
    events = events_of(spec.kind, data.targets(), spec.n_classes, rows)
    censored = n - events if spec.kind == "survival" else min_cell
    return n >= min_cell and events >= min_cell and censored >= min_cell


def score_models(models: Sequence[Scorable | None], data: MultimodalDataset, spec: TaskSpec,
                 min_cell: int) -> list[CandidateScore | None]:
    """The report's score of every model on ``data`` (None: left out); the first is the reference."""
    scores: list[np.ndarray | None] = []
    masks: list[np.ndarray] = []
    for item in models:
        mask = covered(data, item[1]) if item is not None else np.zeros(len(data), dtype=bool)
        if item is None or not enough(data, spec, mask, min_cell):
            scores.append(None)
            masks.append(np.zeros(len(data), dtype=bool))
            continue
        model, modalities = item
        rows = np.flatnonzero(mask)
        part = data.subset(rows)
        part = part.select_modalities([m for m in modalities if m in part.modalities])
        with torch.no_grad():
            s = predict_scores(model, part, spec, amp=False)
        full = np.zeros((len(data), *s.shape[1:]), dtype=np.float64)
        full[rows] = s
        scores.append(full)
        masks.append(mask)
    return score_candidates(spec.kind, spec.n_classes, data.targets(), scores, masks, min_cell)
