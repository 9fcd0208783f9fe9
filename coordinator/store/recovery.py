"""Start-up recovery: after any crash, no temporary or orphan file survives, stale uploads go,
missing card files are written again, and (optionally) every block's blob is re-hashed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.serde import model_from_bytes

from .cards import write_card
from .db import referenced_blobs

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("mmlego.coordinator")


@dataclass(frozen=True)
class Recovery:
    """What start-up found and repaired."""

    temporaries_removed: int
    stale_uploads_removed: int
    orphan_blobs_removed: int
    blobs_verified: int
    corrupt_blocks: tuple[str, ...]
    cards_restored: int = 0


def restore_cards(store: Store) -> int:
    """Write the card files of every model version that lacks them (a crash came between
    the version's commit and its card files); returns how many were written."""
    restored = 0
    for model_id in store.models.ids():
        folder = store.models_dir / model_id
        if not ((folder / "card.json").is_file() and (folder / "card.md").is_file()):
            raw = store.models.message(model_id)
            assert raw is not None
            write_card(folder, model_from_bytes(raw).card)
            restored += 1
            log.info("wrote the missing card files of %s", model_id)
    return restored


def recover(store: Store, upload_ttl_s: float, verify: bool) -> Recovery:
    """Make the store consistent after any crash: no temporary or orphan file survives, an
    unfinished upload is kept (resumable) only if its record and its partial file both exist
    and it is younger than ``upload_ttl_s``; optionally every blob is re-hashed."""
    blobs, blocks, uploads = store.blobs, store.blocks, store.uploads
    temps = blobs.remove_temporaries()
    now, stale = time.time(), 0
    live = set()
    for up in uploads.listing():
        part = blobs.partial(up.key)
        if not part.is_file() or now - up.started_at > upload_ttl_s:
            part.unlink(missing_ok=True)
            uploads.delete(up.key)
            stale += 1
            log.info("removed unfinished upload %s of %s", up.upload_id, up.site)
        else:
            live.add(part.name)
    for part in blobs.partials.iterdir():
        if part.name not in live:
            part.unlink()
            stale += 1
    orphans = 0
    # under the write lock: a writer beside us (a fuse run) re-checks its blob in its own
    with store.db.tx() as c:
        referenced = referenced_blobs(c)
        for sha, path in list(blobs.all_blobs()):
            if sha not in referenced:
                path.unlink()  # renamed in, but the crash came before its record was committed
                orphans += 1
    cards = restore_cards(store)
    corrupt, checked = [], 0
    if verify:
        for b in blocks.states():
            if b.state == "corrupt":
                continue
            checked += 1
            if not blobs.verify(b.block_id):
                blocks.mark_corrupt(b.block_id, "blob missing or its hash differs")
                corrupt.append(b.block_id)
                log.error(
                    "block %s failed its hash check on start; it is excluded from listings and "
                    "merges",
                    b.block_id,
                )
    rec = Recovery(temps, stale, orphans, checked, tuple(corrupt), cards)
    log.info("store recovery: %s", rec)
    return rec
