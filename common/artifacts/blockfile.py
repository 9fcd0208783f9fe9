"""Block files: ``DIR/weights.safetensors`` + ``DIR/manifest.json`` (no pickle anywhere)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..fileio import atomic_write
from ..lego.block import LegoBlock
from .hashing import sha256_bytes
from .manifest import BlockManifest

WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"


class IntegrityError(ValueError):
    """A block's weights do not match its manifest (hash, names, shapes or values)."""


def weights_bytes(block: LegoBlock) -> bytes:
    """The block's state dict as safetensors bytes (contiguous CPU copies, deterministic)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in block.state_dict().items()}
    return st_save(state)


def save_block(block: LegoBlock, directory: str | os.PathLike[str], site: str = "",
               train_stats: dict[str, float] | None = None) -> BlockManifest:
    """Write weights and manifest into ``directory`` (created if needed); returns the manifest."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    data = weights_bytes(block)
    manifest = BlockManifest(
        config=block.config,
        weights_sha256=sha256_bytes(data),
        tensors={k: list(v.shape) for k, v in block.state_dict().items()},
        site=site,
        train_stats=dict(train_stats or {}),
    )
    atomic_write(out / WEIGHTS, data)
    atomic_write(out / MANIFEST, manifest.to_json().encode())
    return manifest


def parse_weights(data: bytes, manifest: BlockManifest) -> dict[str, torch.Tensor]:
    """Check ``data`` against ``manifest`` (hash, parse, names, shapes, finiteness) and return
    the tensors; raise :class:`IntegrityError` naming the first mismatch."""
    digest = sha256_bytes(data)
    if digest != manifest.weights_sha256:
        raise IntegrityError(f"weights sha256 {digest[:16]}... does not match the manifest's {manifest.weights_sha256[:16]}...")
    try:
        state = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise IntegrityError(f"weights are not a valid safetensors file: {exc}") from exc
    if sorted(state) != sorted(manifest.tensors):
        extra, missing = sorted(set(state) - set(manifest.tensors)), sorted(set(manifest.tensors) - set(state))
        raise IntegrityError(f"tensor names differ from the manifest: extra {extra}, missing {missing}")
    for name, tensor in state.items():
        if list(tensor.shape) != list(manifest.tensors[name]):
            raise IntegrityError(f"tensor {name!r} has shape {list(tensor.shape)}, manifest says {manifest.tensors[name]}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise IntegrityError(f"tensor {name!r} contains NaN or infinity")
    return state


def build_block(manifest: BlockManifest, state: dict[str, torch.Tensor]) -> LegoBlock:
    """A block rebuilt from its manifest's config with ``state`` loaded (names/shapes checked)."""
    block = LegoBlock(manifest.config)
    expected = {k: list(v.shape) for k, v in block.state_dict().items()}
    if expected != {k: list(v.shape) for k, v in state.items()}:
        diff = sorted(k for k in set(expected) | set(state) if expected.get(k) != (list(state[k].shape) if k in state else None))
        raise IntegrityError(f"weights do not fit the block the manifest describes; differing tensors: {diff[:5]}")
    block.load_state_dict(state, strict=True)
    return block


def load_block(directory: str | os.PathLike[str]) -> tuple[LegoBlock, BlockManifest]:
    """Read, verify and rebuild a block written by :func:`save_block`."""
    src = Path(directory)
    for name in (MANIFEST, WEIGHTS):
        if not (src / name).is_file():
            raise FileNotFoundError(f"block folder {src} has no {name}")
    manifest = BlockManifest.from_json((src / MANIFEST).read_text())
    state = parse_weights((src / WEIGHTS).read_bytes(), manifest)
    return build_block(manifest, state), manifest
