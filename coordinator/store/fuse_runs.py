"""Fuse runs: begun by the ServerApp, updated after every round, finished with their outcome."""

from __future__ import annotations

from common.records import utc_now

from .db import Database
from .records import FuseRunRecord

FUSE_RUN_COLS = "run_key, task_id, parent_id, started_at, finished_at, state, model_id, detail"


class FuseRuns:
    def __init__(self, db: Database) -> None:
        self.db = db

    def begin(self, key: str, task_id: str, parent_id: str) -> None:
        with self.db.tx() as c:
            c.execute(
                "INSERT INTO fuse_runs(run_key, task_id, parent_id, started_at, state) "
                "VALUES(?,?,?,?, 'running')",
                (key, task_id, parent_id, utc_now()),
            )

    def update(
        self,
        key: str,
        detail: str,
        state: str = "running",
        model_id: str = "",
        finished_at: str = "",
    ) -> None:
        """Replace the run's state and its ``detail`` (JSON)."""
        with self.db.tx() as c:
            c.execute(
                "UPDATE fuse_runs SET state = ?, model_id = ?, finished_at = ?, detail = ? "
                "WHERE run_key = ?",
                (state, model_id, finished_at, detail, key),
            )

    def get(self, key: str) -> FuseRunRecord | None:
        rows = self.listing(key=key)
        return rows[0] if rows else None

    def listing(self, task_id: str = "", limit: int = 50, key: str = "") -> list[FuseRunRecord]:
        """Fuse runs (the one of ``key``, or of ``task_id``), newest first."""
        where, args = (
            ("run_key = ?", (key,))
            if key
            else ("task_id = ?", (task_id,))
            if task_id
            else ("1", ())
        )
        rows = self.db.query(
            f"SELECT {FUSE_RUN_COLS} FROM fuse_runs WHERE {where} "
            "ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (*args, limit),
        )
        return [FuseRunRecord(*r) for r in rows]
