"""The coordinator's store: SQLite metadata + content-addressed blobs, and recovery on start."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.artifacts.modelcard import render_markdown
from common.fileio import atomic_write
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.records import TaskRecord
from common.serde import model_from_bytes, task_from_pb

from .blobs import BlobStore, fsync_dir
from .db import SCHEMA_VERSION, Database

log = logging.getLogger("mmlego.coordinator")

__all__ = ["BlobStore", "Database", "Recovery", "Store", "fsync_dir", "write_card"]


@dataclass(frozen=True)
class Recovery:
    """What start-up found and repaired."""

    temporaries_removed: int
    stale_uploads_removed: int
    orphan_blobs_removed: int
    blobs_verified: int
    corrupt_blocks: tuple[str, ...]
    cards_restored: int = 0


def write_card(folder: Path, card: dict[str, Any]) -> None:
    """A model version's card as card.json and card.md, for operators (the record holds the card)."""
    atomic_write(folder / "card.json", json.dumps(card, indent=2, sort_keys=True).encode())
    atomic_write(folder / "card.md", render_markdown(card).encode())


class Store:
    def __init__(
        self,
        root: Path,
        upload_ttl_s: float = 86400.0,
        verify: bool = True,
        recover: bool = True,
        busy_timeout_s: float = 30.0,
    ) -> None:
        """``recover=False`` for tools that open the store beside a running server (they must not
        touch its unfinished uploads)."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.db = Database(root / "registry.sqlite", busy_timeout_s)
        if self.db.migrated_from is not None:
            log.info(
                "store %s migrated from schema %d to %d",
                root,
                self.db.migrated_from,
                SCHEMA_VERSION,
            )
        self.blobs = BlobStore(root)
        self.models_dir = root / "models"
        self.recovery = self.recover(upload_ttl_s, verify) if recover else None

    def close(self) -> None:
        self.db.close()

    def restore_cards(self) -> int:
        """Write the card files of every model version that lacks them (a crash came between
        the version's commit and its card files); returns how many were written."""
        restored = 0
        for (model_id,) in self.db.query("SELECT model_id FROM models"):
            folder = self.models_dir / model_id
            if not ((folder / "card.json").is_file() and (folder / "card.md").is_file()):
                raw = self.db.model_message(model_id)
                assert raw is not None
                write_card(folder, model_from_bytes(raw).card)
                restored += 1
                log.info("wrote the missing card files of %s", model_id)
        return restored

    def task(self, task_id: str) -> TaskRecord | None:
        raw = self.db.task_message(task_id)
        return task_from_pb(pb.Task.FromString(raw)) if raw is not None else None

    def recover(self, upload_ttl_s: float, verify: bool) -> Recovery:
        """Make the store consistent after any crash: no temporary or orphan file survives, an
        unfinished upload is kept (resumable) only if its record and its partial file both exist
        and it is younger than ``upload_ttl_s``; optionally every blob is re-hashed."""
        temps = self.blobs.remove_temporaries()
        now, stale = time.time(), 0
        live = set()
        for site, upload_id, key, started in self.db.open_uploads():
            part = self.blobs.partial(key)
            if not part.is_file() or now - started > upload_ttl_s:
                part.unlink(missing_ok=True)
                self.db.delete_upload(key)
                stale += 1
                log.info("removed unfinished upload %s of %s", upload_id, site)
            else:
                live.add(part.name)
        for part in self.blobs.partials.iterdir():
            if part.name not in live:
                part.unlink()
                stale += 1
        orphans = 0
        with (
            self.db.tx() as c
        ):  # under the write lock: a writer beside us (a fuse run) re-checks its blob in its own
            referenced = self.db.referenced_blobs(c)
            for sha, path in list(self.blobs.all_blobs()):
                if sha not in referenced:
                    path.unlink()  # renamed in, but the crash came before its record was committed
                    orphans += 1
        cards = self.restore_cards()
        corrupt, checked = [], 0
        if verify:
            for block_id, state in self.db.all_block_ids():
                if state == "corrupt":
                    continue
                checked += 1
                if not self.blobs.verify(block_id):
                    self.db.mark_corrupt(block_id, "blob missing or its hash differs")
                    corrupt.append(block_id)
                    log.error(
                        "block %s failed its hash check on start; it is excluded from listings and merges",
                        block_id,
                    )
        rec = Recovery(temps, stale, orphans, checked, tuple(corrupt), cards)
        log.info("store recovery: %s", rec)
        return rec
