"""LegoMerge: a multimodal model built from trained blocks with no training (paper, Sec. 3.2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE
from ..tasks.spec import TaskSpec
from .block import LegoBlock
from .head import LegoHead
from .inputs import Inputs, batch_size, presence
from .merge import HEAD_MERGES, LATENT_MERGES
from .merge.latent import block_weights


def check_compatible(blocks: Sequence[LegoBlock]) -> None:
    """Raise naming the mismatch unless all blocks share latent shape, Fourier mode and task."""
    if len(blocks) == 0:
        raise ValueError("need at least one block")
    ref = blocks[0].config
    for i, b in enumerate(blocks[1:], start=1):
        c = b.config
        for name, mine, theirs in (
            ("latent shape", c.latent_shape, ref.latent_shape),
            ("fourier mode", c.fourier, ref.fourier),
            ("task", c.task.merge_key(), ref.task.merge_key()),
        ):
            if mine != theirs:
                raise ValueError(
                    f"block {i} ({c.modality}) has {name} {mine}, block 0 ({ref.modality}) has "
                    f"{theirs}"
                )


def merged_head(
    blocks: Sequence[LegoBlock],
    method: str = DEFAULT_HEAD_MERGE,
    weights: Sequence[float] | None = None,
) -> LegoHead:
    """A new head whose weights are the (weighted) merge of the blocks' heads."""
    cfg = blocks[0].config
    head = LegoHead(cfg.latent_dim, cfg.task.n_outputs)
    states = [b.head.state_dict() for b in blocks]
    state = (
        HEAD_MERGES.get(method)(states)
        if weights is None
        else HEAD_MERGES.get(method)(states, list(weights))
    )
    head.load_state_dict(state)
    return head.to(blocks[0].latent.device)


class BlockSet(nn.Module):
    """Trained, compatible blocks and optional per-block weights (> 0): what LegoMerge and the
    ensemble of blocks are built from."""

    def __init__(self, blocks: Sequence[LegoBlock], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        check_compatible(blocks)
        self.blocks = nn.ModuleList(blocks)
        self._block_list: list[LegoBlock] = list(blocks)  # typed view of the same modules
        # the blocks it was made of: these, or with a recipe's groups the blocks of its modality
        # blocks (common.lego.soup)
        self.members: list[LegoBlock] = list(blocks)
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        block_weights(self.weights, len(blocks))  # checked before any work

    @property
    def task(self) -> TaskSpec:
        return self._block_list[0].config.task

    @property
    def block_list(self) -> list[LegoBlock]:
        return self._block_list

    @property
    def modalities(self) -> list[str]:
        return [b.modality for b in self._block_list]


class LegoMerge(BlockSet):
    """Each present block encodes and updates its own latent; the latents are merged
    (:func:`merge_latents`), and the head merged from the present blocks' heads predicts.

    Per sample, only the blocks whose modality it has take part, so a patient with one
    modality gets exactly that block's prediction. Blocks may share a modality (two sites
    with the same data type); each block reads ``inputs[block.modality]``. ``weights`` (one > 0
    per block; default equal) weight the latent merge and the head merge alike.
    """

    def __init__(
        self,
        blocks: Sequence[LegoBlock],
        latent_merge: str = DEFAULT_LATENT_MERGE,
        head_merge: str = DEFAULT_HEAD_MERGE,
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__(blocks, weights)
        self.latent_merge = latent_merge
        self.head_merge = head_merge
        self._merge = LATENT_MERGES.get(latent_merge)
        HEAD_MERGES.get(head_merge)  # fail early on an unknown name
        self.head = merged_head(blocks, head_merge, self.weights)  # all blocks present
        self._subset_heads: dict[tuple[int, ...], LegoHead] = {}

    def head_for(self, subset: tuple[int, ...]) -> nn.Module:
        """The head for samples that have exactly the blocks in ``subset``."""
        if len(subset) == 1:
            return self._block_list[subset[0]].head
        if len(subset) == len(self.blocks):
            return self.head
        if subset not in self._subset_heads:
            w = None if self.weights is None else [self.weights[i] for i in subset]
            self._subset_heads[subset] = merged_head(
                [self._block_list[i] for i in subset], self.head_merge, w
            )
        return self._subset_heads[subset]

    def block_latents(self, inputs: Inputs) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Frequency latents of every block (zeros where absent) and the presence (b, M)."""
        b = batch_size(inputs)
        device = self._block_list[0].latent.device
        present = presence(inputs, self.modalities, b, device)
        latents = []
        for m, block in enumerate(self._block_list):
            c, d = block.config.latent_shape
            z = torch.zeros(b, c, d, dtype=torch.complex64, device=device)
            rows = present[:, m].nonzero().flatten()
            if rows.numel():
                z[rows] = block.frequency_latent(*inputs[block.modality].rows(rows)).to(z.dtype)
            latents.append(z)
        return latents, present

    def merged_latent(self, inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
        latents, present = self.block_latents(inputs)
        merged = (
            self._merge(latents, present)
            if self.weights is None
            else self._merge(latents, present, self.weights)
        )
        return merged, present

    def forward(self, inputs: Inputs) -> torch.Tensor:
        merged, present = self.merged_latent(inputs)
        n_out = self._block_list[0].config.task.n_outputs
        out = torch.empty(merged.shape[0], n_out, device=merged.device)
        for pattern in torch.unique(present, dim=0):
            rows = (present == pattern).all(dim=1).nonzero().flatten()
            subset = tuple(pattern.nonzero().flatten().tolist())
            out[rows] = self.head_for(subset)(merged[rows]).to(out.dtype)
        return out
