"""Model versions as files. A merge version's weights are its merged head (``head.*``); the
blocks travel as block folders. A pulled model folder:

    DIR/model.pb            the ModelVersion record (protobuf)      DIR/card.json, DIR/card.md
    DIR/weights.safetensors the version's own weights               DIR/blocks/<block_id>/  block folders
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..fileio import atomic_write
from ..lego.block import LegoBlock
from ..lego.ensemble import LegoEnsemble
from ..lego.legofuse import LegoFuse
from ..lego.legomerge import LegoMerge
from ..lego.merge import HEAD_MERGES
from ..records import ModelRecord
from .blockfile import WEIGHTS, IntegrityError, load_block
from .hashing import sha256_bytes
from .modelcard import render_markdown

MODEL_RECORD = "model.pb"


def recipe_weights(parameters: dict[str, str], n_blocks: int) -> tuple[float, ...] | None:
    """The per-block weights a version's parameters name (``weights``: a JSON list), or None (equal)."""
    text = parameters.get("weights", "")
    if not text:
        return None
    try:
        weights = tuple(float(w) for w in json.loads(text))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"recipe weights {text[:80]!r} are not a JSON list of numbers") from exc
    if len(weights) != n_blocks:
        raise ValueError(f"recipe has {len(weights)} weights for {n_blocks} blocks")
    return weights


def weights_parameter(weights: Sequence[float]) -> dict[str, str]:
    """The ``weights`` parameter of a recipe (empty for equal weights)."""
    return {"weights": json.dumps([float(w) for w in weights])} if weights else {}


def merge_model(blocks: Sequence[LegoBlock], parameters: dict[str, str]) -> LegoMerge:
    """The LegoMerge a merge version describes (operators and weights from its parameters)."""
    return LegoMerge(
        list(blocks),
        latent_merge=parameters.get("latent_merge", "harmonic"),
        head_merge=parameters.get("head_merge", "spherical"),
        weights=recipe_weights(parameters, len(blocks)),
    ).eval()


def recipe_model(
    kind: str, blocks: Sequence[LegoBlock], parameters: dict[str, str]
) -> LegoMerge | LegoEnsemble:
    """A merge or an ensemble of ``blocks`` as its recipe describes; ValueError for another kind."""
    if kind == "merge":
        return merge_model(blocks, parameters)
    if kind == "ensemble":
        return LegoEnsemble(list(blocks), recipe_weights(parameters, len(blocks))).eval()
    raise ValueError(f"unknown recipe {kind!r}; known: merge, ensemble")


def version_weights(model: LegoMerge) -> bytes:
    """The version's own weights: the merged head, as safetensors."""
    return _head_bytes(model.head.state_dict())


def merged_head_weights(
    heads: Sequence[dict[str, torch.Tensor]], parameters: dict[str, str]
) -> bytes:
    """The same bytes as :func:`version_weights` of the merge, from the blocks' head tensors only
    (``head.*`` of each block's weights, prefix removed): a merge service need not rebuild blocks."""
    weights = recipe_weights(parameters, len(heads))
    merge = HEAD_MERGES.get(parameters.get("head_merge", "spherical"))
    return _head_bytes(merge(list(heads)) if weights is None else merge(list(heads), list(weights)))


def ensemble_weights(parameters: dict[str, str], n_blocks: int) -> bytes:
    """An ensemble version's own weights: its per-block weights (equal: ones), as safetensors."""
    weights = recipe_weights(parameters, n_blocks) or (1.0,) * n_blocks
    return st_save({"ensemble.weights": torch.tensor(weights, dtype=torch.float64)})


def _head_bytes(state: dict[str, torch.Tensor]) -> bytes:
    return st_save(
        {f"head.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    )


def check_version_weights(model: LegoMerge, data: bytes, sha256: str) -> None:
    """The downloaded head must hash as recorded and equal, bit for bit, the head merged here."""
    if sha256_bytes(data) != sha256:
        raise IntegrityError("model weights do not match the version's sha256")
    state = st_load(data)
    mine = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    if sorted(state) != sorted(mine) or any(not torch.equal(state[k], mine[k]) for k in mine):
        raise IntegrityError("the version's merged head differs from the merge of its blocks")


def write_model_folder(out: Path, record_bytes: bytes, record: ModelRecord, weights: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / WEIGHTS, weights)
    atomic_write(out / "card.json", json.dumps(record.card, indent=2, sort_keys=True).encode())
    atomic_write(out / "card.md", render_markdown(record.card).encode())
    atomic_write(out / MODEL_RECORD, record_bytes)  # last: its presence marks a complete folder


def load_model_folder(
    folder: str | os.PathLike[str],
) -> tuple[LegoMerge | LegoFuse | LegoEnsemble, ModelRecord]:
    """Rebuild a pulled model version from its block folders: a merge (its head checked bit for
    bit against the merge of the blocks), an ensemble (its weights checked against its recipe) or
    a fuse (the fine-tuned weights loaded into the LegoFuse of the blocks)."""
    from ..serde import model_from_bytes

    src = Path(folder)
    if not (src / MODEL_RECORD).is_file():
        raise FileNotFoundError(
            f"{src} is not a model folder (no {MODEL_RECORD}); get one with: mmlego site pull MODEL --out {src}"
        )
    record = model_from_bytes((src / MODEL_RECORD).read_bytes())
    if record.recipe not in ("merge", "fuse", "ensemble"):
        raise ValueError(f"model {record.model_id!r} has unknown recipe {record.recipe!r}")
    blocks = []
    for block_id in record.block_ids:
        block, manifest = load_block(src / "blocks" / block_id)
        if manifest.weights_sha256 != block_id:
            raise IntegrityError(f"block folder {block_id[:12]} holds other weights")
        blocks.append(block.eval())
    data = (src / WEIGHTS).read_bytes()
    if record.recipe == "fuse":
        if sha256_bytes(data) != record.weights_sha256:
            raise IntegrityError("model weights do not match the version's sha256")
        fused = LegoFuse(
            blocks,
            mode=record.parameters.get("mode", "stack"),  # type: ignore[arg-type]
            head_merge=record.parameters.get("head_merge", "spherical"),
            head_weights=recipe_weights(record.parameters, len(blocks)),
        )
        trained = {
            name for name, _ in fused.named_parameters()
        }  # once: a set per key was quadratic in the blocks
        frozen = {k: v.clone() for k, v in fused.state_dict().items() if k not in trained}
        try:
            fused.load_state_dict(st_load(data), strict=True)
        except RuntimeError as exc:
            raise IntegrityError(
                f"fused weights do not fit the LegoFuse of the version's blocks: {exc}"
            ) from None
        state = fused.state_dict()
        changed = [k for k, v in frozen.items() if not torch.equal(v, state[k])]
        if changed:  # rounds train the parameters only; the blocks' input scaling must be theirs
            raise IntegrityError(
                f"the fused version changed frozen tensors of its blocks ({changed[0]}, ...)"
            )
        return fused.eval(), record
    if record.recipe == "ensemble":
        if sha256_bytes(data) != record.weights_sha256 or data != ensemble_weights(
            record.parameters, len(blocks)
        ):
            raise IntegrityError("the ensemble's weights file does not match its recipe")
        return recipe_model("ensemble", blocks, record.parameters), record
    model = merge_model(blocks, record.parameters)
    check_version_weights(model, data, record.weights_sha256)
    return model, record
