"""Blocks: accepted (atomically with the end of their upload), listed, withdrawn with their
site, marked corrupt when their blob fails its hash check."""

from __future__ import annotations

from typing import Any

from common.records import BlockRecord

from .audit import record_event
from .db import Database
from .records import BlockState, Paged

BLOCK_COLS = (
    "block_id, task_id, site, modality, size, accepted_at, state, manifest, signature, "
    "signer_certificate"
)


def _block(r: tuple[Any, ...]) -> BlockRecord:
    return BlockRecord(
        r[0], r[1], r[2], r[3], int(r[4]), r[5], r[6], bytes(r[7]), bytes(r[8]), bytes(r[9])
    )


class Blocks:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, block_id: str) -> BlockRecord | None:
        """The block, whatever its state (corrupt included)."""
        rows = self.db.query(f"SELECT {BLOCK_COLS} FROM blocks WHERE block_id = ?", (block_id,))
        return _block(rows[0]) if rows else None

    def listing(
        self, task_id: str = "", site: str = "", modality: str = "", include_withdrawn: bool = False
    ) -> list[BlockRecord]:
        return [p.item for p in self.page(task_id, site, modality, include_withdrawn)]

    def page(
        self,
        task_id: str = "",
        site: str = "",
        modality: str = "",
        include_withdrawn: bool = False,
        before_seq: int | None = None,
        limit: int | None = None,
    ) -> list[Paged[BlockRecord]]:
        """Blocks newest first, only those older than ``before_seq``, at most ``limit``."""
        where, args = ["state != 'corrupt'"], []
        for col, val in (("task_id", task_id), ("site", site), ("modality", modality)):
            if val:
                where.append(f"{col} = ?")
                args.append(val)
        if not include_withdrawn:
            where.append("state = 'accepted'")
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)  # type: ignore[arg-type]
        sql = f"SELECT seq, {BLOCK_COLS} FROM blocks WHERE {' AND '.join(where)} ORDER BY seq DESC"
        rows = self.db.query(
            sql + (f" LIMIT {int(limit)}" if limit is not None else ""), tuple(args)
        )
        return [Paged(int(r[0]), _block(r[1:])) for r in rows]

    def latest(self, task_id: str) -> list[BlockRecord]:
        """The newest accepted block of every (site, modality) of a task, sites not withdrawn."""
        rows = self.db.query(
            f"SELECT {BLOCK_COLS} FROM blocks b WHERE task_id = ? AND state = 'accepted' AND "
            "seq = (SELECT MAX(seq) FROM blocks x WHERE x.task_id = b.task_id AND "
            "x.site = b.site AND x.modality = b.modality AND x.state = 'accepted') "
            "ORDER BY modality, site",
            (task_id,),
        )
        return [_block(r) for r in rows]

    def accepted_ids(self, task_id: str) -> set[str]:
        return {
            r[0]
            for r in self.db.query(
                "SELECT block_id FROM blocks WHERE task_id = ? AND state = 'accepted'", (task_id,)
            )
        }

    def states(self) -> list[BlockState]:
        """Every block's id and state."""
        return [BlockState(r[0], r[1]) for r in self.db.query("SELECT block_id, state FROM blocks")]

    def corrupt_ids(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT block_id FROM blocks WHERE state = 'corrupt'")]

    def mark_corrupt(self, block_id: str, reason: str) -> None:
        with self.db.tx() as c:
            c.execute("UPDATE blocks SET state = 'corrupt' WHERE block_id = ?", (block_id,))
            record_event(c, "coordinator", "block-corrupt", block_id=block_id, reason=reason)

    def accept(self, record: BlockRecord, upload_key: str) -> None:
        """Make a block visible and end its upload, in one transaction (its blob is already
        durable); a withdrawn or corrupt block of the same id is accepted again."""
        with self.db.tx() as c:
            c.execute(
                "INSERT INTO blocks(block_id, task_id, site, modality, size, accepted_at, state, "
                "manifest, signature, signer_certificate) VALUES(?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(block_id) DO UPDATE SET state='accepted'",
                (
                    record.block_id,
                    record.task_id,
                    record.site,
                    record.modality,
                    record.size,
                    record.accepted_at,
                    record.state,
                    record.manifest,
                    record.signature,
                    record.signer_certificate,
                ),
            )
            c.execute("DELETE FROM uploads WHERE key = ?", (upload_key,))
            record_event(
                c,
                record.site,
                "block-accepted",
                block_id=record.block_id,
                task_id=record.task_id,
                modality=record.modality,
                size=record.size,
            )
