"""What a LegoFuse round puts on the wire: the trainable tensors only, packed into one float32
array in a fixed order (the frozen ones, such as the sites' input scaling, both ends already have
from the model version). One array instead of hundreds matters: Flower moves every array as its
own objects, and a round with a 10-block model took ~100 s of transfers with one array per tensor.
A digest of the names, shapes and dtypes travels with it so both ends know they mean the same
layout. The messages that carry them are :mod:`.messages`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

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
    """The trainable tensors of every run (the full run, then the fold runs), one flat array
    each."""
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


def float32_runs(record: ArrayRecord, runs: int) -> ArrayRecord:
    """The ``runs`` packed arrays of ``record`` (an aggregate: a strategy may return another
    float type) as float32, in run order."""
    return ArrayRecord(
        {
            run_key(i): Array(np.asarray(record[run_key(i)].numpy(), dtype=np.float32))
            for i in range(runs)
        }
    )


def split_runs(data: bytes, runs: int) -> list[np.ndarray]:
    """A fuse-round candidate's weights (the runs' flat arrays end to end) as one float32 array
    per run."""
    flat = np.frombuffer(data, dtype=np.float32)
    if runs < 1 or flat.size % runs:
        raise ValueError(f"{flat.size} floats do not split into {runs} runs")
    return [part.copy() for part in np.split(flat, runs)]
