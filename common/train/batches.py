"""Batches of a dataset, for training and evaluation. In-memory data is indexed in this process;
a dataset with lazily read bags is read by DataLoader workers (a forkserver: safe beside the gRPC
threads of a site daemon), one packed batch a worker at a time (each worker one batch ahead), in
the files' float16 where they hold it (widened by the block's input scaling), so memory follows
the batch, not the cohort. Batches go to a GPU from pinned memory with non-blocking copies."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.bags import EVAL, BagData, Sampling
from ..data.dataset import MultimodalDataset
from ..lego.inputs import ModalityInput

Batch = tuple[np.ndarray, dict[str, ModalityInput]]
EVAL_ELEMENTS = 1 << 26  # instances x features of bags in one evaluation batch (256 MB as float32)


def shuffled(n: int, size: int, gen: torch.Generator | None) -> list[np.ndarray]:
    """Rows 0..n-1 in mini-batches of ``size``, shuffled by ``gen`` (None: in order)."""
    order = torch.randperm(n, generator=gen).numpy() if gen is not None else np.arange(n)
    return [order[i : i + size] for i in range(0, n, size)]


def evaluation_batches(
    data: MultimodalDataset, size: int, elements: int = EVAL_ELEMENTS
) -> list[np.ndarray]:
    """Rows in order, at most ``size`` patients a batch, and for bags at most ``elements``
    instance features a batch (a batch holds one patient at least)."""
    bags = [m for m in data.modalities.values() if isinstance(m, BagData)]
    if not bags:
        return shuffled(len(data), size, None)
    cost = np.zeros(len(data), dtype=np.int64)
    for m in bags:
        sizes = m.sizes()
        cap = m.eval_max_instances
        cost += (np.minimum(sizes, cap) if cap else sizes) * m.n_features
    out, start, used = [], 0, 0
    for i in range(len(data)):
        if i > start and (i - start >= size or used + cost[i] > elements):
            out.append(np.arange(start, i))
            start, used = i, 0
        used += int(cost[i])
    if start < len(data):
        out.append(np.arange(start, len(data)))
    return out


class _Source(Dataset[Batch]):
    """What a worker reads: item = (rows, sampling) -> the packed batch of those rows."""

    def __init__(self, data: MultimodalDataset) -> None:
        self.data = data

    def __getitem__(self, item: tuple[np.ndarray, Sampling]) -> Batch:  # type: ignore[override]
        rows, sampling = item
        return rows, self.data.inputs(torch.as_tensor(rows), sampling)


class _Plan(Sampler[tuple[np.ndarray, Sampling]]):
    """The batches of the current pass; set before each pass, read by the main process."""

    def __init__(self) -> None:
        self.items: list[tuple[np.ndarray, Sampling]] = []

    def __iter__(self) -> Iterator[tuple[np.ndarray, Sampling]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def _unchanged(batch: Any) -> Any:
    return batch


def _context() -> str:
    """A forkserver: workers do not inherit this process's threads (a site daemon's gRPC threads)
    or locks. Its workers re-import ``__main__`` from its file; where that file does not exist (a
    script read from standard input), fork instead."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return "fork" if path is not None and not os.path.exists(path) else "forkserver"


@dataclass
class BatchReader:
    """Reads batches of ``data``: in this process, or (lazy bags and ``workers`` > 0) by worker
    processes that stay up across passes. Close it (or use it in a ``with``) to stop them."""

    data: MultimodalDataset
    device: torch.device
    workers: int = 2

    def __post_init__(self) -> None:
        self._plan = _Plan()
        self._loader: DataLoader[Batch] | None = None
        if self.data.lazy and self.workers > 0:
            self._loader = DataLoader(
                _Source(self.data),
                batch_size=None,
                sampler=self._plan,
                num_workers=self.workers,
                collate_fn=_unchanged,
                pin_memory=self.device.type == "cuda",
                multiprocessing_context=_context(),
                persistent_workers=True,
                prefetch_factor=1,
                generator=torch.Generator(),
            )  # its own: the workers' seeds never draw from torch's global one

    def __call__(self, batches: Sequence[np.ndarray], sampling: Sampling = EVAL) -> Iterator[Batch]:
        """Each batch's rows and inputs on the device, in the order given."""
        if self._loader is None:
            for rows in batches:
                inputs = self.data.inputs(torch.as_tensor(rows), sampling)
                if (
                    self.device.type == "cuda" and self.data.lazy
                ):  # a non-blocking copy needs page-locked memory
                    inputs = {k: v.pin_memory() for k, v in inputs.items()}
                yield rows, {k: v.to(self.device) for k, v in inputs.items()}
            return
        self._plan.items = [(rows, sampling) for rows in batches]
        for rows, inputs in self._loader:
            yield rows, {k: v.to(self.device) for k, v in inputs.items()}

    def close(self) -> None:
        if self._loader is not None:
            iterator = getattr(self._loader, "_iterator", None)
            if iterator is not None:
                iterator._shutdown_workers()
            self._loader = None

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
