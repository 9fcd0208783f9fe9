"""Model versions as files: a version's own weights from its recipe, and a pulled model folder
rebuilt and checked against it (common.artifacts.recipefile writes the recipe into the record and
reads it back). A merge version's weights are its merged head (``head.*``); the blocks travel as
block folders. A pulled model folder:

    DIR/model.pb             the ModelVersion record (protobuf): kind, block ids, parameters
    DIR/weights.safetensors  the version's own weights
    DIR/card.json, card.md   its model card
    DIR/blocks/<block_id>/   block folders
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
from ..lego.legofuse import FUSE_MODES
from ..lego.recipe import Recipe, RecipeModel
from ..lego.soup import check_soupable, soup_state
from ..records import ModelRecord
from .blockfile import WEIGHTS, IntegrityError, build_block, load_block_state
from .hashing import sha256_bytes
from .manifest import BlockManifest
from .modelcard import render_markdown

MODEL_RECORD = "model.pb"


def version_weights(recipe: Recipe, heads: Sequence[dict[str, torch.Tensor]]) -> bytes:
    """A merge's or an ensemble's own weights file (safetensors), from its blocks' head tensors
    only (``head.*`` of each block's weights, prefix removed), in the recipe's order."""
    return st_save(recipe.own_state(heads))


def modality_block(
    blocks: Sequence[tuple[dict[str, torch.Tensor], BlockManifest]], share: Sequence[float]
) -> LegoBlock:
    """The modality block (common.lego.soup) of verified blocks given as weights and manifest,
    built once, without building the blocks; one block: that block."""
    first = blocks[0][1]
    if len(blocks) == 1:
        return build_block(first, blocks[0][0]).eval()
    check_soupable([m.config for _, m in blocks])
    return build_block(first, soup_state(first.config, [s for s, _ in blocks], share)).eval()


def write_model_folder(out: Path, record_bytes: bytes, record: ModelRecord, weights: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / WEIGHTS, weights)
    atomic_write(out / "card.json", json.dumps(record.card, indent=2, sort_keys=True).encode())
    atomic_write(out / "card.md", render_markdown(record.card).encode())
    atomic_write(out / MODEL_RECORD, record_bytes)  # last: its presence marks a complete folder


def load_model_folder(folder: str | os.PathLike[str]) -> tuple[RecipeModel, ModelRecord]:
    """Rebuild a pulled model version from its block folders and check its own weights against
    its recipe: a merge's head bit for bit against the merge of the blocks, an ensemble's
    weights against its recipe, a fuse's fine-tuned weights loaded into the LegoFuse of the
    blocks (their frozen tensors unchanged)."""
    from ..serde import model_from_bytes

    src = Path(folder)
    if not (src / MODEL_RECORD).is_file():
        raise FileNotFoundError(
            f"{src} is not a model folder (no {MODEL_RECORD}); "
            f"get one with: mmlego site pull MODEL --out {src}"
        )
    record = model_from_bytes((src / MODEL_RECORD).read_bytes())
    kind = record.recipe.method  # an unknown kind raises naming the known ones
    states = []
    for block_id in record.block_ids:
        state, manifest = load_block_state(src / "blocks" / block_id)
        if manifest.weights_sha256 != block_id:
            raise IntegrityError(f"block folder {block_id[:12]} holds other weights")
        states.append((state, manifest))
    data = (src / WEIGHTS).read_bytes()
    if sha256_bytes(data) != record.weights_sha256:
        raise IntegrityError("model weights do not match the version's sha256")
    mode = record.settings.get("mode", FUSE_MODES[0])
    if record.recipe.groups:  # its modality blocks only are built (a site pays for M, not N)
        try:
            model = record.recipe.make_of(
                lambda idx, share: modality_block([states[i] for i in idx], share), mode
            )
        except ValueError as exc:
            raise IntegrityError(str(exc)) from None
    else:
        model = record.recipe.make([build_block(m, s).eval() for s, m in states], mode)
    try:
        return kind.restore(model, st_load(data)), record
    except ValueError as exc:
        raise IntegrityError(str(exc)) from None
