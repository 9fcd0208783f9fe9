"""Hierarchical Lego: the blocks of one modality made into one *modality block* before LegoMerge
or LegoFuse, so that the model, a round's messages and what a site rebuilds per candidate depend
on the number of modalities M, not on the number of blocks N.

A modality block is the weighted parameter average of its blocks (a model soup, Wortsman et al.
2022): blocks of one task and modality start from the same weights (the task's shared
initialisation and block seed, common.train.siteblock), so their average stays in one basin.
Each block standardises its input with its own site's statistics; before averaging, that
standardisation is folded into the encoder's first linear layer (W / std, b - W mean / std), which
gives each block's function on raw input exactly, and the modality block reads raw input
(identity scaling). An encoder whose first layer is not known here keeps its scaling, averaged
as pooled moments (an approximation, said so on the card by the recipe's groups).

A recipe's ``groups`` (common.lego.recipe) name each block's modality block; the same functions
here make the modality blocks at every site and their heads at the coordinator (its own weights
are computed from heads alone), bit for bit alike.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from .block import LegoBlock
from .config import BlockConfig

# the first linear layer of each built-in encoder, where the input scaling is folded in
FIRST_LINEAR = {"tabular": "encoder.body.0", "bag": "encoder.embed.0"}
SCALING = ("scaling.mean", "scaling.std")

_SOUPS: contextvars.ContextVar[dict[tuple[Any, ...], tuple[Any, LegoBlock]] | None] = (
    contextvars.ContextVar("soup_memo", default=None)
)


@contextlib.contextmanager
def soup_memo() -> Iterator[None]:
    """Within it, the modality block of the same blocks and weights is made once (the candidates
    a site scores in one job share them, and so their latents)."""
    token = _SOUPS.set({})
    try:
        yield
    finally:
        _SOUPS.reset(token)


def modality_groups(modalities: Sequence[str]) -> tuple[int, ...]:
    """One group per modality, numbered in the order the modalities first appear."""
    index: dict[str, int] = {}
    return tuple(index.setdefault(m, len(index)) for m in modalities)


def check_groups(groups: Sequence[int], n_blocks: int) -> str | None:
    """Why ``groups`` cannot group ``n_blocks`` blocks (one index per block, numbered 0.. in the
    order they first appear), or None."""
    if len(groups) != n_blocks:
        return f"{len(groups)} group indices for {n_blocks} blocks"
    seen = -1
    for g in groups:
        if g < 0 or g > seen + 1:
            return "group indices must be numbered 0, 1, ... in the order they first appear"
        seen = max(seen, g)
    return None


def members(groups: Sequence[int]) -> list[list[int]]:
    """The block positions of each group, in group order."""
    out: list[list[int]] = [[] for _ in range(max(groups) + 1)] if groups else []
    for i, g in enumerate(groups):
        out[g].append(i)
    return out


def group_weights(
    groups: Sequence[int], weights: Sequence[float] | None
) -> tuple[list[list[float]], tuple[float, ...] | None]:
    """Each group's blocks' weights within it (sum 1), and each group's weight in the merge (the
    mean of its blocks' weights; None where every block weighs the same)."""
    parts = members(groups)
    w = [1.0] * len(groups) if weights is None else [float(x) for x in weights]
    inner = [[w[i] / sum(w[j] for j in idx) for i in idx] for idx in parts]
    outer = tuple(sum(w[i] for i in idx) / len(idx) for idx in parts)
    return inner, (None if weights is None else outer)


def average(
    states: Sequence[Mapping[str, torch.Tensor]], share: Sequence[float]
) -> dict[str, torch.Tensor]:
    """The weighted average of state dicts with the same keys (``share`` sums to 1), summed in
    float64 in the given order and cast back: the same numbers wherever it runs."""
    out = {}
    for key, ref in states[0].items():
        total = torch.zeros(ref.shape, dtype=torch.float64)
        for s, a in zip(states, share, strict=True):
            total += float(a) * s[key].detach().to("cpu", torch.float64)
        out[key] = total.to(ref.dtype)
    return out


def raw_state(block: LegoBlock) -> dict[str, torch.Tensor]:
    """The block's weights with its input scaling folded into the encoder's first linear layer
    (identity scaling after), when its encoder is a built-in one; else its weights as they are."""
    return fold_scaling(block.config, block.state_dict())


def fold_scaling(config: BlockConfig, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`raw_state` of a block's ``config`` and weights (a verified block not yet built)."""
    out = {k: v.detach() for k, v in state.items()}
    first = FIRST_LINEAR.get(config.encoder.kind)
    if first is None:
        return out
    mean, std = out[SCALING[0]].double(), out[SCALING[1]].double()
    w, b = out[f"{first}.weight"].double(), out[f"{first}.bias"].double()
    folded = w / std  # (out, in): column j divided by std_j
    out[f"{first}.weight"] = folded.to(out[f"{first}.weight"].dtype)
    out[f"{first}.bias"] = (b - folded @ mean).to(out[f"{first}.bias"].dtype)
    out[SCALING[0]] = torch.zeros_like(out[SCALING[0]])
    out[SCALING[1]] = torch.ones_like(out[SCALING[1]])
    return out


def soup_state(
    config: BlockConfig, states: Sequence[Mapping[str, torch.Tensor]], share: Sequence[float]
) -> dict[str, torch.Tensor]:
    """The modality block's weights from its blocks' weights (as stored: not folded) and
    ``share`` (sums to 1): folded and averaged, or averaged with pooled scaling moments."""
    raw = [fold_scaling(config, s) for s in states]
    merged = average(raw, share)
    if FIRST_LINEAR.get(config.encoder.kind) is None:  # pooled moments of the scalings
        means = [s[SCALING[0]].double() for s in raw]
        stds = [s[SCALING[1]].double() for s in raw]
        mean = sum(a * m for m, a in zip(means, share, strict=True))
        second = sum(a * (d**2 + m**2) for m, d, a in zip(means, stds, share, strict=True))
        merged[SCALING[0]] = torch.as_tensor(mean).to(raw[0][SCALING[0]].dtype)
        merged[SCALING[1]] = (
            torch.as_tensor(second - mean**2).clamp_min(1e-12).sqrt().to(raw[0][SCALING[1]].dtype)
        )
    return merged


def shifted(base: LegoBlock, share: float, old: LegoBlock, new: LegoBlock) -> LegoBlock:
    """``base`` (a modality block that holds ``old`` with ``share``) with ``new`` in its place:
    the average is linear in each block's folded weights (to float precision; a site's fold copy
    replaces its released block this way, without the other blocks; a user encoder's pooled
    scaling is kept)."""
    state = base.state_dict()
    a, b = raw_state(old), raw_state(new)
    moved = {
        k: (v.double() + share * (b[k].double() - a[k].double())).to(v.dtype)
        if v.is_floating_point() and not k.startswith("scaling.")
        else v
        for k, v in state.items()
    }
    out = copy.deepcopy(base)
    out.load_state_dict(moved, strict=True)
    return out.eval()


def check_soupable(configs: Sequence[BlockConfig]) -> None:
    """ValueError naming the first block (by its config) that cannot share a modality block with
    the first one (another modality, encoder, shape or shared initialisation)."""
    ref = configs[0]
    for i, c in enumerate(configs[1:], start=1):
        if c.modality != ref.modality:
            raise ValueError(
                f"a modality block joins blocks of one modality; block {i} is {c.modality}, "
                f"block 0 {ref.modality}"
            )
        if c.task.merge_key() != ref.task.merge_key():
            raise ValueError(f"{c.modality} block {i} was trained for another task than block 0")
        if replace(c, task=ref.task, extra={}) != replace(ref, extra={}):
            raise ValueError(
                f"{c.modality} block {i} has another encoder, size or initialisation than block 0"
            )


def soup(blocks: Sequence[LegoBlock], share: Sequence[float] | None = None) -> LegoBlock:
    """The modality block of ``blocks`` (one modality), averaged with ``share`` (sums to 1;
    default equal), in evaluation mode. One block: itself."""
    if len(blocks) == 1:
        return blocks[0]
    check_soupable([b.config for b in blocks])
    share = [1.0 / len(blocks)] * len(blocks) if share is None else list(share)
    memo = _SOUPS.get()
    key = (tuple(id(b) for b in blocks), tuple(share))
    if memo is not None and key in memo:
        return memo[key][1]
    merged = soup_state(blocks[0].config, [b.state_dict() for b in blocks], share)
    out = copy.deepcopy(blocks[0])
    out.load_state_dict(merged, strict=True)
    out.eval()
    if memo is not None:  # the blocks are kept with it: their ids are not reused meanwhile
        memo[key] = (tuple(blocks), out)
    return out


def grouped_heads(
    heads: Sequence[Mapping[str, torch.Tensor]],
    groups: Sequence[int],
    weights: Sequence[float] | None,
) -> tuple[list[dict[str, torch.Tensor]], tuple[float, ...] | None]:
    """The heads of the modality blocks a grouped recipe makes (the input scaling does not reach
    the head), and their weights in the merge."""
    problem = check_groups(groups, len(heads))
    if problem:
        raise ValueError(problem)
    inner, outer = group_weights(groups, weights)
    out = []
    for idx, share in zip(members(groups), inner, strict=True):
        mine = [heads[i] for i in idx]
        out.append(dict(mine[0]) if len(mine) == 1 else average(mine, share))
    return out, outer
