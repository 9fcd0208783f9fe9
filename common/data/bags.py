"""A bag modality read lazily from per-slide feature files: each patient's bag is the instances of
its slides, read only when a batch needs them, so memory is bounded by the batch, not the cohort.

Training reads a fresh random subset of ``max_instances`` instances of a bag every epoch (seeded
by the run's seed, the epoch and the patient, so any worker draws the same rows); evaluation and
prediction read every instance, or a fixed seeded subset of ``eval_max_instances`` for larger
bags. A batch is packed end to end with offsets (:class:`~common.lego.inputs.ModalityInput`), with
no padding."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch.utils.data import get_worker_info

from ..lego.inputs import ModalityInput
from .slidefiles import SlideFile, read_rows

EVAL_STREAM = 2**31 - 1  # the epoch number of the fixed evaluation subset (never a training epoch)


@dataclass(frozen=True)
class Sampling:
    """How a batch reads its bags: ``train`` draws a fresh subset per ``epoch``; else the fixed
    one."""

    train: bool = False
    seed: int = 0
    epoch: int = 0


EVAL = Sampling()


def patient_key(patient: str) -> int:
    """A stable number per patient id: it seeds the patient's instance sampling."""
    return zlib.crc32(patient.encode())


@dataclass
class BagData:
    """One bag modality for n patients. ``bags[i]``: patient i's slides (empty: the patient lacks
    the modality). ``keys``: per patient, what seeds its sampling. ``scale``: an optional (mean,
    std) applied to every instance read (a benchmark's train-only standardisation)."""

    bags: list[tuple[SlideFile, ...]]
    keys: np.ndarray
    features: list[str]
    max_instances: int = 2048  # per bag while training; 0 = every instance
    eval_max_instances: int = 0  # per bag in evaluation and prediction; 0 = every instance
    dataset: str = "features"  # the array's name inside an HDF5 / safetensors file
    scale: tuple[np.ndarray, np.ndarray] | None = None
    kind: Literal["bag"] = "bag"
    _sizes: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.bags):
            raise ValueError(f"{len(self.keys)} keys for {len(self.bags)} bags")
        for bag in self.bags:
            for s in bag:
                if s.features != len(self.features):
                    raise ValueError(
                        f"slide {s.slide_id!r} has {s.features} features, "
                        f"the modality {len(self.features)}"
                    )
        self._sizes = np.array([sum(s.instances for s in bag) for bag in self.bags], dtype=np.int64)

    @property
    def present(self) -> torch.Tensor:
        """(n,) bool: who has a non-empty bag."""
        return torch.from_numpy(self._sizes > 0)

    @property
    def n_features(self) -> int:
        return len(self.features)

    def sizes(self) -> np.ndarray:
        """(n,) instances in each patient's bag (all its slides)."""
        return self._sizes.copy()

    def subset(self, idx: torch.Tensor | np.ndarray | Sequence[int]) -> BagData:
        ix = np.asarray(idx, dtype=np.int64).reshape(-1)
        return replace(self, bags=[self.bags[i] for i in ix], keys=self.keys[ix])

    def cap(self, sampling: Sampling) -> int:
        return self.max_instances if sampling.train else self.eval_max_instances

    def rows(self, i: int, sampling: Sampling = EVAL) -> np.ndarray | None:
        """Which of patient i's instances a read takes (sorted, over its slides end to end), or
        None for every one: a seeded subset of at most the cap."""
        total = int(self._sizes[i])
        cap = self.cap(sampling)
        if not cap or total <= cap:
            return None
        epoch = sampling.epoch if sampling.train else EVAL_STREAM
        rng = np.random.default_rng([sampling.seed, epoch, int(self.keys[i])])
        return np.sort(rng.choice(total, size=cap, replace=False))

    def count(self, i: int, sampling: Sampling = EVAL) -> int:
        """How many instances a read of patient i's bag returns."""
        cap = self.cap(sampling)
        return int(min(self._sizes[i], cap)) if cap else int(self._sizes[i])

    def read(self, i: int, sampling: Sampling = EVAL, out: np.ndarray | None = None) -> np.ndarray:
        """Patient i's instances (k, F): every one, or a seeded subset of at most the cap; float32
        (``out``: written into it, in its dtype, e.g. a batch's float16 buffer)."""
        chosen = self.rows(i, sampling)
        k = self.count(i, sampling)
        if out is None:
            out = np.empty((k, self.n_features), dtype=np.float32)
        if out.shape != (k, self.n_features):
            raise ValueError(
                f"buffer of shape {out.shape} for {k} instances of {self.n_features} features"
            )
        start, at = 0, 0
        for s in self.bags[i]:
            part: np.ndarray | None
            if chosen is None:
                part = read_rows(s, None, self.dataset, stored=True)
            else:
                lo, hi = np.searchsorted(chosen, [start, start + s.instances])
                part = (
                    read_rows(s, chosen[lo:hi] - start, self.dataset, stored=True)
                    if hi > lo
                    else None
                )
            if part is not None:
                out[at : at + len(part)] = (
                    part if self.scale is None else (part - self.scale[0]) / self.scale[1]
                )
                at += len(part)
            start += s.instances
        return out

    def to_input(
        self, idx: torch.Tensor | np.ndarray | None = None, sampling: Sampling = EVAL
    ) -> ModalityInput:
        """The bags of patients ``idx`` (default all) packed end to end: x (N, F), offsets (b + 1,).
        x is float16 when every slide file holds float16 (half the bytes to move; widened where it
        is computed on), else float32; it is written in place into one buffer (no copies)."""
        rows = (
            np.arange(len(self.bags))
            if idx is None
            else np.asarray(idx, dtype=np.int64).reshape(-1)
        )
        lengths = np.array([self.count(int(i), sampling) for i in rows], dtype=np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        half = self.scale is None and all(
            s.dtype == "float16" for i in rows for s in self.bags[int(i)]
        )
        x = torch.empty(
            (int(offsets[-1]), self.n_features), dtype=torch.float16 if half else torch.float32
        )
        if get_worker_info() is not None:
            x.share_memory_()  # a reader process's batch travels to the trainer without a copy
        buffer = x.numpy()
        for j, i in enumerate(rows):
            if lengths[j]:
                self.read(int(i), sampling, buffer[offsets[j] : offsets[j + 1]])
        return ModalityInput(x, None, torch.from_numpy(lengths > 0), torch.from_numpy(offsets))

    def with_scale(self, mean: np.ndarray, std: np.ndarray) -> BagData:
        return replace(
            self, scale=(np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32))
        )

    def absent(self, n: int, keys: np.ndarray) -> BagData:
        """The same modality for ``n`` other patients who all lack it."""
        return replace(self, bags=[() for _ in range(n)], keys=np.asarray(keys))

    @staticmethod
    def concat(parts: Sequence[BagData]) -> BagData:
        first = parts[0]
        for p in parts[1:]:
            if p.n_features != first.n_features:
                raise ValueError(
                    f"bags with {p.n_features} and {first.n_features} features cannot be pooled"
                )
        return replace(
            first,
            bags=[b for p in parts for b in p.bags],
            keys=np.concatenate([p.keys for p in parts]),
        )


def bag_moments(
    mod: BagData, seed: int = 0, bags: int = 256, per_bag: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bag mean and mean of squares (P, F) each, float64, of a seeded sample: up to ``bags``
    present bags, up to ``per_bag`` instances each (0: every bag / every instance, a full pass).

    Each bag counts once, whatever its size, so that the block's input scaling is an aggregate over
    patients (the unit of the minimum cell size), not over one large slide's instances."""
    present = np.flatnonzero(mod.sizes() > 0)
    rng = np.random.default_rng([seed, EVAL_STREAM - 1])
    if bags and present.size > bags:
        present = np.sort(rng.choice(present, size=bags, replace=False))
    sampler = replace(mod, eval_max_instances=per_bag, scale=None)
    means = np.empty((present.size, mod.n_features))
    squares = np.empty((present.size, mod.n_features))
    for j, i in enumerate(present):
        x = sampler.read(int(i), Sampling(train=False, seed=seed)).astype(np.float64)
        means[j] = x.mean(axis=0)
        squares[j] = (x * x).mean(axis=0)
    return means, squares
