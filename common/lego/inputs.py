"""The input of a multimodal model: per modality, a batch tensor, a padding mask and presence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModalityInput:
    """One modality of a batch.

    ``x``: (b, F) tabular, (b, n, F) padded bag/sequence, or (N, F) packed bags. ``mask``: (b, n)
    True = real instance (padded bags only). ``offsets``: (b + 1,) int64, packed bags only: sample
    i's instances are ``x[offsets[i]:offsets[i + 1]]`` (no padding; an empty bag has none).
    ``present``: (b,) True where the sample has this modality (default: all); rows of absent
    samples may hold anything finite (zeros by convention).
    """

    x: torch.Tensor
    mask: torch.Tensor | None = None
    present: torch.Tensor | None = None
    offsets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.offsets is not None and (
            self.mask is not None
            or self.x.dim() != 2
            or self.offsets.dim() != 1
            or self.offsets.numel() < 1
        ):
            raise ValueError("packed bags need x (N, F), offsets (b + 1,) and no mask")

    @property
    def batch(self) -> int:
        return self.x.shape[0] if self.offsets is None else self.offsets.numel() - 1

    def presence(self) -> torch.Tensor:
        if self.present is None:
            return torch.ones(self.batch, dtype=torch.bool, device=self.x.device)
        return self.present

    def rows(
        self, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(x, mask, offsets) of samples ``idx``: the arguments of a block or an encoder."""
        if self.offsets is None:
            return self.x[idx], None if self.mask is None else self.mask[idx], None
        starts, lengths = self.offsets[:-1][idx], (self.offsets[1:] - self.offsets[:-1])[idx]
        offsets = torch.zeros(idx.numel() + 1, dtype=self.offsets.dtype, device=self.offsets.device)
        offsets[1:] = torch.cumsum(lengths, 0)
        pick = torch.repeat_interleave(starts - offsets[:-1], lengths) + torch.arange(
            int(offsets[-1]), device=self.x.device
        )
        return self.x[pick], None, offsets

    def args(self) -> tuple[torch.Tensor | None, ...]:
        """What a unimodal model is called with: (x, mask), or (x, None, offsets) for packed
        bags."""
        return (self.x, self.mask) if self.offsets is None else (self.x, None, self.offsets)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ModalityInput:
        """On ``device`` (non-blocking from pinned memory); ``dtype``: ``x``'s (e.g. float16 as
        stored on disk, widened where it is computed on)."""

        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return ModalityInput(
            self.x.to(device, dtype=dtype, non_blocking=True),
            mv(self.mask),
            mv(self.present),
            mv(self.offsets),
        )

    def pin_memory(self) -> ModalityInput:
        """Page-locked copies (a DataLoader's ``pin_memory`` calls this), for non-blocking copies
        to a GPU."""

        def pin(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.pin_memory()

        return ModalityInput(
            self.x.pin_memory(), pin(self.mask), pin(self.present), pin(self.offsets)
        )


Inputs = Mapping[str, ModalityInput]


def batch_size(inputs: Inputs) -> int:
    sizes = {m: v.batch for m, v in inputs.items()}
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"all modalities of a batch need the same number of rows, got {sizes}")
    return next(iter(sizes.values()))


def presence(
    inputs: Inputs, modalities: list[str], batch: int, device: torch.device
) -> torch.Tensor:
    """(b, M) bool: which of ``modalities`` each sample has (a modality not in ``inputs``: none)."""
    cols = [
        inputs[m].presence() if m in inputs else torch.zeros(batch, dtype=torch.bool, device=device)
        for m in modalities
    ]
    return torch.stack(cols, dim=1)


class SingleModality(nn.Module):
    """Adapter: a unimodal model ``f(x, mask)`` as a model of :data:`Inputs`."""

    def __init__(self, model: nn.Module, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = modality

    @property
    def modalities(self) -> list[str]:
        return [self.modality]

    def forward(self, inputs: Inputs) -> torch.Tensor:
        if self.modality not in inputs:
            raise KeyError(f"batch has no modality {self.modality!r}; it has {sorted(inputs)}")
        item = inputs[self.modality]
        return self.model(*item.args())
