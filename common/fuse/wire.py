"""What a LegoFuse round puts on the wire: the trainable tensors only, packed into one float32
array in a fixed order (the frozen ones, such as the sites' input scaling, both ends already have
from the model version). One array instead of hundreds matters: Flower moves every array as its
own objects, and a round with a 10-block model took ~100 s of transfers with one array per tensor.
A digest of the names, shapes and dtypes travels with it so both ends know they mean the same layout."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from ..data.dataset import MultimodalDataset
from .federated import FuseConfig, local_round

FLAT = "trainable"  # the one array of a round message


def trainable_names(model: torch.nn.Module) -> list[str]:
    """The model's parameters in state-dict order (what a round trains and sends)."""
    params = {name for name, _ in model.named_parameters()}
    return [k for k in model.state_dict() if k in params]


def layout(state: dict[str, torch.Tensor], names: Sequence[str]) -> str:
    text = ";".join(f"{n}:{tuple(state[n].shape)}:{state[n].dtype}" for n in names)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def run_key(i: int) -> str:
    """The array of run ``i`` in a round message: 0 is the full run, 1..F the fold runs."""
    return FLAT if i == 0 else f"{FLAT}-fold-{i - 1}"


def pack(state: dict[str, torch.Tensor], names: Sequence[str]) -> ArrayRecord:
    return pack_runs([state], names)


def pack_runs(states: Sequence[dict[str, torch.Tensor]], names: Sequence[str]) -> ArrayRecord:
    """The trainable tensors of every run (the full run, then the fold runs), one flat array each."""
    out = {}
    for i, state in enumerate(states):
        for n in names:
            if state[n].dtype != torch.float32:
                raise ValueError(
                    f"tensor {n} is {state[n].dtype}; rounds carry float32 tensors only"
                )
        flat = (
            np.concatenate([state[n].detach().cpu().numpy().ravel() for n in names])
            if names
            else np.zeros(0, np.float32)
        )
        out[run_key(i)] = Array(flat)
    return ArrayRecord(out)


def unpack(
    record: ArrayRecord, state: dict[str, torch.Tensor], names: Sequence[str], key: str = FLAT
) -> dict[str, torch.Tensor]:
    """``state`` with the tensors ``names`` taken from the packed array ``key`` of ``record``;
    ValueError if it does not fit."""
    if key not in record:
        raise ValueError(f"the round message has no {key!r} array")
    flat = record[key].numpy()
    want = sum(state[n].numel() for n in names)
    if flat.dtype != np.float32 or flat.ndim != 1 or flat.size != want:
        raise ValueError(
            f"the {key!r} array is {flat.dtype}{list(flat.shape)}; expected float32[{want}]"
        )
    out = dict(state)
    at = 0
    for n in names:
        size = state[n].numel()
        out[n] = torch.from_numpy(np.array(flat[at : at + size], copy=True)).reshape(state[n].shape)
        at += size
    return out


def unpack_runs(
    record: ArrayRecord, state: dict[str, torch.Tensor], names: Sequence[str], runs: int
) -> list[dict[str, torch.Tensor]]:
    """Every run's state from a round message that must hold exactly ``runs`` arrays."""
    want = {run_key(i) for i in range(runs)}
    if set(record) != want:
        raise ValueError(
            f"the round message holds arrays {sorted(record)[:4]}; expected {sorted(want)[:4]}"
        )
    return [unpack(record, state, names, run_key(i)) for i in range(runs)]


def split_runs(data: bytes, runs: int) -> list[np.ndarray]:
    """A fuse-round candidate's weights (the runs' flat arrays end to end) as one float32 array per run."""
    flat = np.frombuffer(data, dtype=np.float32)
    if runs < 1 or flat.size % runs:
        raise ValueError(f"{flat.size} floats do not split into {runs} runs")
    return [part.copy() for part in np.split(flat, runs)]


def site_round(
    model: Any,
    content: RecordDict,
    data: MultimodalDataset,
    cfg: FuseConfig,
    round_: int,
    device: str = "cpu",
    fold_data: Sequence[MultimodalDataset] = (),
) -> RecordDict:
    """A site's part of round ``round_``: the global trainable tensors into its own copy of the
    model, ``cfg.epochs`` epochs on ``data``, the new trainable tensors and aggregates back. With
    fold runs (``cfg.folds``), run k also trains, from its own global tensors, on ``fold_data[k]``
    (the site's patients outside its fold k); only the full run's patient count is sent."""
    if len(fold_data) != cfg.fold_runs:
        raise ValueError(
            f"the run has {cfg.fold_runs} fold runs; the site prepared data for {len(fold_data)}"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    names = trainable_names(model)
    expected = str(content["config"]["layout"])  # type: ignore[index]
    if layout(state, names) != expected:
        raise ValueError(
            "the round's tensor layout differs from this site's model of the same version; "
            "the coordinator and the site run different mmlego code"
        )
    starts = unpack_runs(content["arrays"], state, names, 1 + cfg.fold_runs)  # type: ignore[arg-type]
    new_states: list[dict[str, torch.Tensor]] = []
    loss = 0.0
    for i, (start, part) in enumerate(zip(starts, [data, *fold_data], strict=True)):
        if i > 0 and part is data and all(torch.equal(start[n], starts[0][n]) for n in names):
            new_states.append(
                new_states[0]
            )  # the same data from the same weights: the full run's result (a site without folds)
            continue
        new_state, metrics = local_round(model, start, part, model.task, cfg, round_, device)
        new_states.append(new_state)
        if i == 0:
            loss = float(metrics["train_loss"])
    return RecordDict(
        {
            "arrays": pack_runs(new_states, names),
            "metrics": MetricRecord({"num-examples": len(data), "train_loss": loss}),
        }
    )
