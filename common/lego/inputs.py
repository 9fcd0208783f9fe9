"""The input of a multimodal model: per modality, a batch tensor, a padding mask and presence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModalityInput:
    """One modality of a batch.

    ``x``: (b, F) tabular or (b, n, F) bag/sequence. ``mask``: (b, n) True = real instance
    (bags only). ``present``: (b,) True where the sample has this modality (default: all);
    rows of absent samples may hold anything finite (zeros by convention).
    """

    x: torch.Tensor
    mask: torch.Tensor | None = None
    present: torch.Tensor | None = None

    def presence(self) -> torch.Tensor:
        if self.present is None:
            return torch.ones(self.x.shape[0], dtype=torch.bool, device=self.x.device)
        return self.present

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.x[idx], None if self.mask is None else self.mask[idx]

    def to(self, device: torch.device | str) -> ModalityInput:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return ModalityInput(self.x.to(device, non_blocking=True), mv(self.mask), mv(self.present))


Inputs = Mapping[str, ModalityInput]


def batch_size(inputs: Inputs) -> int:
    sizes = {m: v.x.shape[0] for m, v in inputs.items()}
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"all modalities of a batch need the same number of rows, got {sizes}")
    return next(iter(sizes.values()))


def presence(inputs: Inputs, modalities: list[str], batch: int, device: torch.device) -> torch.Tensor:
    """(b, M) bool: which of ``modalities`` each sample has (a modality not in ``inputs``: none)."""
    cols = [inputs[m].presence() if m in inputs else torch.zeros(batch, dtype=torch.bool, device=device)
            for m in modalities]
    return torch.stack(cols, dim=1)


class SingleModality(nn.Module):
    """Adapter: a unimodal model ``f(x, mask)`` as a model of :data:`Inputs`."""

    def __init__(self, model: nn.Module, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = modality

    def forward(self, inputs: Inputs) -> torch.Tensor:
        if self.modality not in inputs:
            raise KeyError(f"batch has no modality {self.modality!r}; it has {sorted(inputs)}")
        item = inputs[self.modality]
        return self.model(item.x, item.mask)
