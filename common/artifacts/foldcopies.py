"""A cross-fitted block's fold copies on the site's disk: ``fold-<k>/`` block folders (unsigned,
hash-checked when read) and ``assignment.json`` (the fold of every patient the site held when it
trained). They live in the site's state folder, keyed by the released block's id, and are never
pushed: only the released block travels."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..lego.block import LegoBlock
from .blockfile import load_block, save_block

ASSIGNMENT = "assignment.json"


@dataclass
class FoldCopies:
    """Copy k was trained on the site's patients outside fold k."""

    fold_of: dict[str, int]  # patient id -> fold, for every patient the site held when it trained
    blocks: list[LegoBlock]

    @property
    def folds(self) -> int:
        return len(self.blocks)


def fold_folder(state: Path, block_id: str) -> Path:
    """Where the fold copies of the released block ``block_id`` are kept in a site's state
    folder."""
    return state / "folds" / block_id


def save_fold_copies(folder: Path, copies: FoldCopies) -> None:
    """Write ``copies`` into ``folder`` (replaced whole: readers see the old copies or the new
    ones)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for k, block in enumerate(copies.blocks):
            save_block(block, tmp / f"fold-{k}")
        (tmp / ASSIGNMENT).write_text(
            json.dumps({"folds": copies.folds, "fold_of": copies.fold_of}, sort_keys=True)
        )
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_fold_copies(folder: Path) -> FoldCopies:
    """Read and check (hashes, shapes, finiteness) the fold copies in ``folder``; FileNotFoundError
    when there are none, ValueError when they are damaged."""
    raw = json.loads((folder / ASSIGNMENT).read_text())
    k = int(raw["folds"])
    fold_of = {str(p): int(f) for p, f in raw["fold_of"].items()}
    if k < 2 or any(not 0 <= f < k for f in fold_of.values()):
        raise ValueError(
            f"{folder / ASSIGNMENT}: folds {k} and the patients' folds do not fit together"
        )
    return FoldCopies(fold_of, [load_block(folder / f"fold-{i}")[0].eval() for i in range(k)])
