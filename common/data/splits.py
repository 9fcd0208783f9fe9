"""Seeded train/validation/test splits and train-only preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .bags import BagData, bag_moments
from .dataset import Modality, ModalityData, MultimodalDataset


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def random_split(
    n: int,
    seed: int,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    stratify: np.ndarray | None = None,
) -> Split:
    """A seeded random split of ``range(n)``; with ``stratify``, each stratum is split alike
    (use the event indicator or the class, so small sets keep events in every part)."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    strata = (
        np.zeros(n, dtype=int)
        if stratify is None
        else np.unique(np.asarray(stratify), return_inverse=True)[1]
    )
    parts: list[list[int]] = [[], [], []]
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        n_tr = round(fractions[0] * idx.size)
        n_va = round(fractions[1] * idx.size)
        parts[0] += idx[:n_tr].tolist()
        parts[1] += idx[n_tr : n_tr + n_va].tolist()
        parts[2] += idx[n_tr + n_va :].tolist()
    train, val, test = (np.sort(np.array(p, dtype=np.int64)) for p in parts)
    if min(train.size, val.size, test.size) == 0:
        raise ValueError(f"{n} samples are too few for a {fractions} split")
    return Split(train, val, test)


def site_split(
    data: MultimodalDataset, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A site's own split of its patients: (training rows, validation rows). Validation patients
    are never trained on: every block of the site stops early on them, and the site scores model
    versions on them (federated evaluation). A ``split`` column in the site's data (``holdout``)
    names them; otherwise a seeded, stratified share ``val_fraction`` is drawn. Patient-level, so
    one patient is on the same side for every modality (a block's training patients are never
    another block's validation patients)."""
    if data.holdout is not None:
        val = np.flatnonzero(data.holdout)
        train = np.flatnonzero(~data.holdout)
        if val.size == 0 or train.size == 0:
            raise ValueError(
                f"the data's split column marks {val.size} validation and "
                f"{train.size} training patients; both are needed"
            )
        return train, val
    strata = data.event if data.task == "survival" else data.label
    half = val_fraction / 2
    split = random_split(len(data), seed, fractions=(1 - 2 * half, half, half), stratify=strata)
    return split.train, np.sort(np.concatenate([split.val, split.test]))


class FoldError(ValueError):
    """A fold count the site's patients cannot support (named after the setting that asked for
    it)."""


def strata_of(data: MultimodalDataset) -> np.ndarray:
    """What splits are stratified by: the event indicator (survival) or the class."""
    return np.asarray(data.event if data.task == "survival" else data.label).astype(np.int64)


def site_folds(
    data: MultimodalDataset, folds: int, seed: int, setting: str = "[evaluation] folds"
) -> np.ndarray:
    """(n,) the fold 0..folds-1 of each of the site's patients: a seeded K-fold partition of
    *all* of them, stratified by event / class (each stratum dealt round-robin after a seeded
    shuffle, so every fold holds an event and a censored patient, or every class, whenever the
    smallest of them has at least ``folds`` patients). Patient-level, like :func:`site_split`:
    a patient is in the same fold for every modality. Raises :class:`FoldError` naming
    ``setting`` when ``folds`` is below 2 or above the smallest class."""
    if folds < 2:
        raise FoldError(
            f"{setting} = {folds}: cross-fitting needs at least 2 folds (0 switches it off)"
        )
    strata = strata_of(data)
    values, counts = np.unique(strata, return_counts=True)
    if data.task == "survival" and values.size < 2:
        counts = np.append(
            counts, 0
        )  # no event, or no censored patient: the smallest class is empty
    if int(counts.min()) < folds:
        what = "events or censored patients" if data.task == "survival" else "patients of a class"
        raise FoldError(
            f"{setting} = {folds} is more folds than this site's smallest class "
            f"({int(counts.min())} {what} among {len(data)} patients); "
            "set fewer folds (or 0 for a validation split)"
        )
    rng = np.random.default_rng(seed)
    out = np.empty(len(data), dtype=np.int64)
    start = 0
    for value in values:  # round-robin per stratum, each stratum starting where the last left off
        idx = rng.permutation(np.flatnonzero(strata == value))
        out[idx] = (start + np.arange(idx.size)) % folds
        start = (start + idx.size) % folds
    return out


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean/std of each modality, fitted on training rows that have the modality
    (real instances only, for sequences); applied to every split. Constant features get std 1.

    The statistics travel with a site's block, so with ``min_cell`` > 1 they are made from rows in
    which rare values are folded into the feature's most common value: a value held by fewer than
    ``min_cell`` rows, when fewer than ``min_cell`` rows hold such rare values in all. Otherwise a
    one-hot feature's mean would give away a category of two patients (mean x n), and a feature
    that is zero for all but one patient would give away that patient's value. Where
    ``min_cell`` or more rows hold rare values (a continuous feature), their share of the mean is
    itself an aggregate over that many rows and is left as it is."""

    stats: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def fit(cls, data: MultimodalDataset, min_cell: int = 1, seed: int = 0) -> Standardizer:
        """Fit on ``data``'s rows (bags: a seeded sample of instances, :func:`bag_scaling`)."""
        stats = {}
        for name, mod in data.modalities.items():
            if isinstance(mod, BagData):
                stats[name] = bag_scaling(mod, min_cell, seed)
                continue
            rows = mod.x[mod.present]
            if mod.kind == "sequence":
                assert mod.mask is not None
                rows = mod.x[mod.present][mod.mask[mod.present]]  # (instances, F)
            if rows.shape[0] == 0:
                raise ValueError(f"modality {name!r} has no training rows to fit a scaler on")
            if min_cell > 1:
                rows = fold_rare_values(rows, min_cell)
            mean = rows.mean(dim=0)
            std = rows.std(dim=0, unbiased=False)
            stats[name] = (mean, torch.where(std > 1e-8, std, torch.ones_like(std)))
        return cls(stats)

    def apply(self, data: MultimodalDataset) -> MultimodalDataset:
        mods: dict[str, Modality] = {}
        for name, mod in data.modalities.items():
            mean, std = self.stats[name]
            if isinstance(mod, BagData):  # standardised as each instance is read
                mods[name] = mod.with_scale(mean.numpy(), std.numpy())
                continue
            mods[name] = _standardised(mod, mean, std)
        return replace(data, modalities=mods)


def _standardised(mod: ModalityData, mean: torch.Tensor, std: torch.Tensor) -> ModalityData:
    x = (mod.x - mean) / std
    keep = mod.present.view(-1, *([1] * (x.dim() - 1)))
    if mod.mask is not None:
        keep = keep & mod.mask.unsqueeze(-1)
    return replace(mod, x=torch.where(keep, x, torch.zeros_like(x)))


def bag_scaling(
    mod: BagData, min_cell: int = 1, seed: int = 0, bags: int = 256, per_bag: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std of a bag modality's instances, from a seeded sample (up to ``bags``
    bags, ``per_bag`` instances each; 0 = all, a full pass) in which every bag counts once: the
    mean of the bags' means, and the std from the mean of their mean squares. A sample and not a
    full pass, so that training starts in seconds on a cohort of thousands of slides (at most
    32,768 instances of 256 patients; docs/RESULTS.md section 8 compares it with a full pass).
    The minimum cell size applies to patients: the bags' means and mean squares are folded as a
    table's rows are (:func:`fold_rare_values`), so a feature seen in fewer than ``min_cell``
    patients' bags does not reach the block's statistics."""
    means, squares = bag_moments(mod, seed, bags, per_bag)
    if means.shape[0] == 0:
        raise ValueError("a bag modality has no training bags to fit a scaler on")
    if min_cell > 1:
        means = fold_rare_values(torch.from_numpy(means), min_cell).numpy()
        squares = fold_rare_values(torch.from_numpy(squares), min_cell).numpy()
    mean = means.mean(axis=0)
    std = np.sqrt(np.maximum(squares.mean(axis=0) - mean**2, 0.0))
    std = np.where(std > 1e-6, std, 1.0)
    return torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32))


def fold_rare_values(rows: torch.Tensor, min_cell: int) -> torch.Tensor:
    """``rows`` (N, F) with, in every feature where fewer than ``min_cell`` rows hold values that
    fewer than ``min_cell`` rows share, those values replaced by the feature's most common value."""
    x = rows.detach().cpu().numpy().copy()
    for j in range(x.shape[1]):
        values, inverse, counts = np.unique(x[:, j], return_inverse=True, return_counts=True)
        rare = counts < min_cell
        held = int(counts[rare].sum())
        if 0 < held < min_cell:
            x[rare[inverse], j] = values[int(np.argmax(counts))]
    return torch.from_numpy(x).to(rows.dtype)
