"""Modality blocks this site made itself (hierarchical Lego, common.lego.soup), kept in its state
folder so that it pays for a modality's blocks once, not once per job: a later job that asks for
the same blocks with the same shares reads one file instead of verifying and averaging them all.

A modality block is made only of blocks the site verified (hashes, signer, signature); the file is
the site's own, keyed by what it was made of (the blocks' ids, the shares, this format) and checked
against its recorded sha256 when read: a damaged or partial file is made again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from common.artifacts import BlockManifest, sha256_bytes
from common.artifacts.blockfile import build_block
from common.fileio import atomic_write
from common.lego.block import LegoBlock

FORMAT = 1  # what the averaging computes; a new one makes the kept files unused
WEIGHTS, DIGEST = "weights.safetensors", "sha256"


class ModalityBlocks:
    """The site's kept modality blocks under ``folder`` (``state/modality-blocks``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(block_ids: Sequence[str], share: Sequence[float]) -> str:
        body = json.dumps({"format": FORMAT, "blocks": list(block_ids), "share": list(share)})
        return sha256_bytes(body.encode())

    def get(self, key: str, manifest: BlockManifest) -> LegoBlock | None:
        """The kept modality block ``key`` (built with the config of its first block's
        ``manifest``), or None when it is not kept or its file does not check out."""
        where = self.folder / key
        try:
            data = (where / WEIGHTS).read_bytes()
            if sha256_bytes(data) != (where / DIGEST).read_text().strip():
                raise ValueError("damaged")
            return build_block(manifest, st_load(data)).eval()
        except (OSError, ValueError, SafetensorError, RuntimeError):
            shutil.rmtree(where, ignore_errors=True)
            return None

    def put(self, key: str, state: dict[str, torch.Tensor]) -> None:
        where = self.folder / key
        where.mkdir(parents=True, exist_ok=True)
        data = st_save({k: v.contiguous() for k, v in state.items()})
        atomic_write(where / WEIGHTS, data)
        atomic_write(where / DIGEST, sha256_bytes(data).encode())  # last: complete
