"""Scoring models on a site's patients (all of them, out of fold, or its validation split): each
model scores the patients that have at least one of its modalities; a model that scores fewer
than the site's minimum cell size of patients (or events, or censored patients, or of the
smallest class) is left out of the report, so no count below it leaves the site."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..artifacts.foldcopies import FoldCopies
from ..data.dataset import MultimodalDataset
from ..lego.block import LegoBlock
from ..tasks.spec import TaskSpec
from ..train.loop import predict_scores
from .pairs import events_of, score_candidates
from .scores import CandidateScore

Scorable = tuple[torch.nn.Module, Sequence[str]]  # a model and the modalities it reads
Part = tuple[np.ndarray, Scorable]  # rows of the patients a model scores, and the model


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


def whole(data: MultimodalDataset, model: Scorable) -> list[Part]:
    """One model for every patient of ``data``."""
    return [(np.arange(len(data)), model)]


def predict_parts(
    parts: Sequence[Part], data: MultimodalDataset, spec: TaskSpec
) -> tuple[np.ndarray | None, np.ndarray]:
    """Every patient's score by the part that scores it, and (n,) which patients were scored
    (those of a part's rows with one of its model's modalities). None: nobody."""
    mask = np.zeros(len(data), dtype=bool)
    full: np.ndarray | None = None
    for rows, (model, modalities) in parts:
        mine = rows[covered(data, modalities)[rows]]
        if mine.size == 0:
            continue
        part = data.subset(mine)
        part = part.select_modalities([m for m in modalities if m in part.modalities])
        with torch.no_grad():
            s = predict_scores(model, part, spec, amp=False)
        if full is None:
            full = np.zeros((len(data), *s.shape[1:]), dtype=np.float64)
        full[mine] = s
        mask[mine] = True
    return full, mask


def score_models(
    models: Sequence[Sequence[Part] | None], data: MultimodalDataset, spec: TaskSpec, min_cell: int
) -> list[CandidateScore | None]:
    """The report's score of every candidate on ``data`` (None: left out); the first is the
    reference. A candidate is given as parts: each part's model scores its rows of ``data``
    (cross-fitting: a patient of fold k through the candidate rebuilt from the site's fold-k
    copies; otherwise one part for every row)."""
    scores: list[np.ndarray | None] = []
    masks: list[np.ndarray] = []
    for parts in models:
        mask = np.zeros(len(data), dtype=bool)
        for rows, (_, modalities) in parts or []:
            mask[rows[covered(data, modalities)[rows]]] = True
        if parts is None or not enough(data, spec, mask, min_cell):
            scores.append(None)
            masks.append(np.zeros(len(data), dtype=bool))
            continue
        full, mask = predict_parts(parts, data, spec)
        scores.append(full)
        masks.append(mask)
    return score_candidates(spec.kind, spec.n_classes, data.targets(), scores, masks, min_cell)


def fold_parts(
    make: Callable[[list[LegoBlock]], Any],
    blocks: Sequence[LegoBlock],
    copies: Mapping[int, FoldCopies],
    fold_of: np.ndarray | None,
    n: int,
) -> list[Part]:
    """A candidate made from ``blocks`` as a site scores it on its ``n`` patients: one model for
    all of them, or (cross-fitting, ``fold_of`` given) for the patients of fold k the candidate
    made with the site's own blocks (``copies``: position in ``blocks`` -> their fold copies)
    replaced by their fold-k copies, so that no block that saw a patient scores it."""
    if fold_of is None or not copies:
        model = make(list(blocks))
        return [(np.arange(n), (model, list(model.modalities)))]
    folds = next(iter(copies.values())).folds
    out: list[Part] = []
    for k in range(folds):
        model = make([copies[i].blocks[k] if i in copies else b for i, b in enumerate(blocks)])
        out.append((np.flatnonzero(fold_of == k), (model, list(model.modalities))))
    return out
