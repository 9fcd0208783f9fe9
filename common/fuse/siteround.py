"""A site's part of one LegoFuse round: the instruction's global tensors into its own copy of the
model, local training of every run, the new tensors and aggregates back as a typed reply."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..data.dataset import MultimodalDataset
from .federated import FuseConfig, local_round
from .messages import TrainInstruction, TrainReply
from .wire import layout, pack_runs, trainable_names, unpack_runs


def site_round(
    model: Any,
    instruction: TrainInstruction,
    data: MultimodalDataset,
    cfg: FuseConfig,
    device: str = "cpu",
    fold_data: Sequence[MultimodalDataset] = (),
) -> TrainReply:
    """A site's part of round ``instruction.round``: the global trainable tensors into its own
    copy of the model, ``cfg.epochs`` epochs on ``data``, the new trainable tensors and aggregates
    back. With fold runs (``cfg.folds``), run k also trains, from its own global tensors, on
    ``fold_data[k]`` (the site's patients outside its fold k); only the full run's patient count
    is sent."""
    if len(fold_data) != cfg.fold_runs:
        raise ValueError(
            f"the run has {cfg.fold_runs} fold runs; the site prepared data for {len(fold_data)}"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    names = trainable_names(model)
    if layout(state, names) != instruction.layout:
        raise ValueError(
            "the round's tensor layout differs from this site's model of the same version; "
            "the coordinator and the site run different mmlego code"
        )
    starts = unpack_runs(instruction.arrays, state, names, 1 + cfg.fold_runs)
    new_states: list[dict[str, torch.Tensor]] = []
    loss = 0.0
    for i, (start, part) in enumerate(zip(starts, [data, *fold_data], strict=True)):
        if i > 0 and part is data and all(torch.equal(start[n], starts[0][n]) for n in names):
            # the same data from the same weights: the full run's result (a site without folds)
            new_states.append(new_states[0])
            continue
        new_state, metrics = local_round(
            model, start, part, model.task, cfg, instruction.round, device
        )
        new_states.append(new_state)
        if i == 0:
            loss = float(metrics["train_loss"])
    return TrainReply(pack_runs(new_states, names), len(data), loss)
