"""Seeded train/validation/test splits and train-only preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .dataset import MultimodalDataset


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def random_split(n: int, seed: int, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
                 stratify: np.ndarray | None = None) -> Split:
    """A seeded random split of ``range(n)``; with ``stratify``, each stratum is split alike
    (use the event indicator or the class, so small sets keep events in every part)."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    strata = np.zeros(n, dtype=int) if stratify is None else np.unique(np.asarray(stratify), return_inverse=True)[1]
    parts: list[list[int]] = [[], [], []]
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        n_tr = round(fractions[0] * idx.size)
        n_va = round(fractions[1] * idx.size)
        parts[0] += idx[:n_tr].tolist()
        parts[1] += idx[n_tr:n_tr + n_va].tolist()
        parts[2] += idx[n_tr + n_va:].tolist()
    train, val, test = (np.sort(np.array(p, dtype=np.int64)) for p in parts)
    if min(train.size, val.size, test.size) == 0:
        raise ValueError(f"{n} samples are too few for a {fractions} split")
    return Split(train, val, test)


@dataclass(frozen=True)
class Standardizer:
    """Per-feature mean/std of each modality, fitted on training rows that have the modality
    (real instances only, for sequences); applied to every split. Constant features get std 1."""

    stats: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def fit(cls, data: MultimodalDataset) -> Standardizer:
        stats = {}
        for name, mod in data.modalities.items():
            rows = mod.x[mod.present]
            if mod.kind == "sequence":
                assert mod.mask is not None
                rows = mod.x[mod.present][mod.mask[mod.present]]  # (instances, F)
            if rows.shape[0] == 0:
                raise ValueError(f"modality {name!r} has no training rows to fit a scaler on")
            mean = rows.mean(dim=0)
            std = rows.std(dim=0, unbiased=False)
            stats[name] = (mean, torch.where(std > 1e-8, std, torch.ones_like(std)))
        return cls(stats)

    def apply(self, data: MultimodalDataset) -> MultimodalDataset:
        mods = {}
        for name, mod in data.modalities.items():
            mean, std = self.stats[name]
            x = (mod.x - mean) / std
            keep = mod.present.view(-1, *([1] * (x.dim() - 1)))
            if mod.mask is not None:
                keep = keep & mod.mask.unsqueeze(-1)
            mods[name] = replace(mod, x=torch.where(keep, x, torch.zeros_like(x)))
        return replace(data, modalities=mods)
