"""LegoFuse: blocks fused into one trainable model, by stacking or weaving (paper, Sec. 3.3)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ..recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE
from .block import LegoBlock
from .encoders import run_encoder
from .fourier import to_frequency, to_spatial
from .inputs import Inputs, batch_size, presence
from .legomerge import check_compatible, merged_head
from .merge import LATENT_MERGES

FuseMode = Literal["stack", "weave"]
FUSE_MODES: tuple[str, ...] = ("stack", "weave")


class LegoFuse(nn.Module):
    """A fine-tunable multimodal model initialised from trained blocks and their merged head.

    ``stack``: the blocks run one after the other (in ``order``); the latent left by block k
    is the initial latent of block k+1; the first block starts from its own L0.
    ``weave``: update step s of every block runs before step s+1 of any block; the start is the
    LegoMerge of the blocks' L0s.
    Encoders run once per forward. The blocks are deep-copied: fine-tuning never touches the
    trained blocks, whose learned latents stay intact and reusable. A sample that lacks a
    block's modality skips that block's steps.
    """

    def __init__(
        self,
        blocks: Sequence[LegoBlock],
        mode: FuseMode = "stack",
        order: Sequence[int] | None = None,
        head_merge: str = DEFAULT_HEAD_MERGE,
        head_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if mode not in FUSE_MODES:
            raise ValueError(f"unknown fuse mode {mode!r}; known: {', '.join(FUSE_MODES)}")
        check_compatible(blocks)
        order = list(range(len(blocks))) if order is None else list(order)
        if sorted(order) != list(range(len(blocks))):
            raise ValueError(f"order must be a permutation of 0..{len(blocks) - 1}, got {order}")
        self.mode = mode
        self.order = order
        self.members: list[LegoBlock] = list(blocks)  # with a recipe's groups: the site blocks
        self.modalities = [b.modality for b in blocks]
        self.task = blocks[0].config.task
        self.fourier = blocks[0].config.fourier
        self.scalings = nn.ModuleList(copy.deepcopy(b.scaling) for b in blocks)
        self.encoders = nn.ModuleList(copy.deepcopy(b.encoder) for b in blocks)
        self.steps = nn.ModuleList(copy.deepcopy(b.steps) for b in blocks)
        self.depths = [b.config.depth for b in blocks]
        with torch.no_grad():
            if mode == "stack":
                start = blocks[order[0]].latent.detach().clone()
            else:
                freqs = [to_frequency(b.latent.detach()[None], self.fourier) for b in blocks]
                start = to_spatial(
                    LATENT_MERGES.get(DEFAULT_LATENT_MERGE)(freqs, None), self.fourier
                ).real[0]
        self.latent = nn.Parameter(start)  # (c, d), a copy: never a block's own parameter
        self.head = merged_head(
            blocks, head_merge, head_weights
        )  # the merge version's (weighted) head

    def schedule(self) -> list[tuple[int, int]]:
        """(block, step) pairs in execution order."""
        depth = list(self.depths)
        if self.mode == "stack":
            return [(k, s) for k in self.order for s in range(depth[k])]
        return [(k, s) for s in range(max(depth)) for k in self.order if s < depth[k]]

    def forward(self, inputs: Inputs) -> torch.Tensor:
        b = batch_size(inputs)
        device = self.latent.device
        present = presence(inputs, self.modalities, b, device)  # (b, M)
        encoded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for k, enc in enumerate(self.encoders):
            if present[:, k].any():
                item = inputs[self.modalities[k]]
                tokens, mask = run_encoder(
                    enc, self.scalings[k](item.x, item.mask), item.mask, item.offsets
                )
                encoded[k] = (tokens, mask & present[:, k : k + 1])
        spatial = self.latent.unsqueeze(0).expand(b, -1, -1)  # (b, c, d)
        freq = to_frequency(spatial, self.fourier)
        for k, s in self.schedule():
            if k not in encoded:
                continue
            step: nn.Module = self.steps[k][s]  # type: ignore[index]
            new_freq = step(spatial, *encoded[k])
            keep = present[:, k].view(b, 1, 1)
            freq = torch.where(keep, new_freq, freq)
            spatial = torch.where(keep, to_spatial(new_freq, self.fourier).real, spatial)
        return self.head(freq)
