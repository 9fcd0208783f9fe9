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


def pack(state: dict[str, torch.Tensor], names: Sequence[str]) -> ArrayRecord:
    for n in names:
        if state[n].dtype != torch.float32:
            raise ValueError(f"tensor {n} is {state[n].dtype}; rounds carry float32 tensors only")
    flat = np.concatenate([state[n].detach().cpu().numpy().ravel() for n in names]) if names else np.zeros(0, np.float32)
    return ArrayRecord({FLAT: Array(flat)})


def unpack(record: ArrayRecord, state: dict[str, torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """``state`` with the tensors ``names`` taken from the packed ``record``; ValueError if it does not fit."""
    if FLAT not in record:
        raise ValueError(f"the round message has no {FLAT!r} array")
    flat = record[FLAT].numpy()
    want = sum(state[n].numel() for n in names)
    if flat.dtype != np.float32 or flat.ndim != 1 or flat.size != want:
        raise ValueError(f"the {FLAT!r} array is {flat.dtype}{list(flat.shape)}; expected float32[{want}]")
    out = dict(state)
    at = 0
    for n in names:
        size = state[n].numel()
        out[n] = torch.from_numpy(np.array(flat[at:at + size], copy=True)).reshape(state[n].shape)
        at += size
    return out


def site_round(model: Any, content: RecordDict, data: MultimodalDataset, cfg: FuseConfig, round_: int,
               device: str = "cpu") -> RecordDict:
    """A site's part of round ``round_``: the global trainable tensors into its own copy of the
    model, ``cfg.epochs`` epochs on ``data``, the new trainable tensors and aggregates back."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    names = trainable_names(model)
    expected = str(content["config"]["layout"])  # type: ignore[index]
    if layout(state, names) != expected:
        raise ValueError("the round's tensor layout differs from this site's model of the same version; "
                         "the coordinator and the site run different mmlego code")
    start = unpack(content["arrays"], state, names)  # type: ignore[arg-type]
    new_state, metrics = local_round(model, start, data, model.task, cfg, round_, device)
    return RecordDict({"arrays": pack(new_state, names),
                       "metrics": MetricRecord({"num-examples": len(data), "train_loss": float(metrics["train_loss"])})})
