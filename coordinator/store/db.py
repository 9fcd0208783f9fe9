"""The registry's metadata in SQLite (WAL, synchronous=FULL): tasks, sites, blocks, unfinished
uploads, model versions and an audit log. One connection, serialised by a lock; other processes
(``mmlego coordinator merge``) may open the same file."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.records import BlockRecord, SiteRecord, utc_now

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks(task_id TEXT PRIMARY KEY, message BLOB NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sites(name TEXT PRIMARY KEY, modalities TEXT NOT NULL, paired INTEGER NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0, withdrawn_reason TEXT NOT NULL DEFAULT '', first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks(seq INTEGER PRIMARY KEY AUTOINCREMENT, block_id TEXT UNIQUE NOT NULL,
    task_id TEXT NOT NULL, site TEXT NOT NULL, modality TEXT NOT NULL, size INTEGER NOT NULL, accepted_at TEXT NOT NULL,
    state TEXT NOT NULL, manifest BLOB NOT NULL, signature BLOB NOT NULL, signer_certificate BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_task ON blocks(task_id, site, modality);
CREATE TABLE IF NOT EXISTS uploads(site TEXT NOT NULL, upload_id TEXT NOT NULL, key TEXT UNIQUE NOT NULL,
    manifest BLOB NOT NULL, signature BLOB NOT NULL, block_id TEXT NOT NULL, total INTEGER NOT NULL,
    started_at REAL NOT NULL, PRIMARY KEY(site, upload_id));
CREATE TABLE IF NOT EXISTS models(seq INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT UNIQUE NOT NULL,
    task_id TEXT NOT NULL, message BLOB NOT NULL, weights_sha256 TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, detail TEXT NOT NULL);
"""
# Schema 2 (federated evaluation): jobs, who received and answered them, the scores, the scores
# kept with model versions, the weights a candidate carries (a fuse round's), and fuse runs.
SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS evaluations(seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT UNIQUE NOT NULL,
    task_id TEXT NOT NULL, purpose TEXT NOT NULL, message BLOB NOT NULL, created_at TEXT NOT NULL, deadline REAL NOT NULL,
    state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS eval_deliveries(job_id TEXT NOT NULL, site TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY(job_id, site));
CREATE TABLE IF NOT EXISTS eval_reports(job_id TEXT NOT NULL, site TEXT NOT NULL, at TEXT NOT NULL, declined TEXT NOT NULL,
    PRIMARY KEY(job_id, site));
CREATE TABLE IF NOT EXISTS eval_scores(job_id TEXT NOT NULL, site TEXT NOT NULL, candidate_id TEXT NOT NULL,
    message BLOB NOT NULL, PRIMARY KEY(job_id, site, candidate_id));
CREATE TABLE IF NOT EXISTS eval_blobs(sha256 TEXT NOT NULL, job_id TEXT NOT NULL, candidate_id TEXT NOT NULL,
    PRIMARY KEY(job_id, candidate_id));
CREATE TABLE IF NOT EXISTS model_scores(model_id TEXT NOT NULL, site TEXT NOT NULL, job_id TEXT NOT NULL, candidate_id TEXT NOT NULL,
    message BLOB NOT NULL, PRIMARY KEY(model_id, site));
CREATE TABLE IF NOT EXISTS fuse_runs(run_key TEXT PRIMARY KEY, task_id TEXT NOT NULL, parent_id TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, model_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}');
"""
BLOCK_COLS = "block_id, task_id, site, modality, size, accepted_at, state, manifest, signature, signer_certificate"


class Database:
    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self.migrated_from: int | None = (
            None  # the schema the store had when opened, if it was older
        )
        self._lock = threading.RLock()
        self.conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        with self.tx() as c:
            for statement in filter(str.strip, SCHEMA.split(";")):
                c.execute(statement)
            row = c.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            found = SCHEMA_VERSION if row is None else int(row[0])
            if not 1 <= found <= SCHEMA_VERSION:
                raise RuntimeError(
                    f"{path}: store schema {found} is not one this mmlego reads (1 to {SCHEMA_VERSION}); "
                    "use the mmlego release that wrote it"
                )
            for statement in filter(
                str.strip, SCHEMA_2.split(";")
            ):  # schema 1 -> 2 adds tables only
                c.execute(statement)
            c.execute(
                "INSERT INTO meta VALUES('schema', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
            self.migrated_from = found if found != SCHEMA_VERSION else None

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any error)."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql, args).fetchall()

    # ---- audit ----------------------------------------------------------------------------
    @staticmethod
    def event(c: sqlite3.Connection, actor: str, action: str, **detail: Any) -> None:
        c.execute(
            "INSERT INTO events(at, actor, action, detail) VALUES(?,?,?,?)",
            (utc_now(), actor, action, json.dumps(detail, sort_keys=True)),
        )

    # ---- sites ----------------------------------------------------------------------------
    def touch_site(self, name: str, modalities: tuple[str, ...], paired: bool) -> None:
        """Record a site the first time it calls; refresh what its certificate says later."""
        now = utc_now()
        with self.tx() as c:
            c.execute(
                "INSERT INTO sites(name, modalities, paired, first_seen, last_seen) VALUES(?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET modalities=excluded.modalities, paired=excluded.paired, "
                "last_seen=excluded.last_seen",
                (name, json.dumps(list(modalities)), int(paired), now, now),
            )

    def site(self, name: str) -> SiteRecord | None:
        rows = self.sites(name)
        return rows[0] if rows else None

    def sites(self, name: str | None = None) -> list[SiteRecord]:
        sql = (
            "SELECT s.name, s.modalities, s.paired, s.withdrawn, s.withdrawn_reason, COALESCE(c.n, 0), s.first_seen, "
            "s.last_seen FROM sites s LEFT JOIN (SELECT site, COUNT(*) AS n FROM blocks WHERE state != 'corrupt' "
            "GROUP BY site) c ON c.site = s.name"
        )
        rows = self.query(
            sql + (" WHERE s.name = ?" if name else "") + " ORDER BY s.name",
            (name,) if name else (),
        )
        return [
            SiteRecord(
                r[0], tuple(json.loads(r[1])), bool(r[2]), bool(r[3]), int(r[5]), r[4], r[6], r[7]
            )
            for r in rows
        ]

    # ---- blocks ---------------------------------------------------------------------------
    @staticmethod
    def _block(r: tuple[Any, ...]) -> BlockRecord:
        return BlockRecord(
            r[0], r[1], r[2], r[3], int(r[4]), r[5], r[6], bytes(r[7]), bytes(r[8]), bytes(r[9])
        )

    def block(self, block_id: str) -> BlockRecord | None:
        rows = self.query(f"SELECT {BLOCK_COLS} FROM blocks WHERE block_id = ?", (block_id,))
        return self._block(rows[0]) if rows else None

    def blocks(
        self, task_id: str = "", site: str = "", modality: str = "", include_withdrawn: bool = False
    ) -> list[BlockRecord]:
        return [b for _, b in self.block_page(task_id, site, modality, include_withdrawn)]

    def block_page(
        self,
        task_id: str = "",
        site: str = "",
        modality: str = "",
        include_withdrawn: bool = False,
        before_seq: int | None = None,
        limit: int | None = None,
    ) -> list[tuple[int, BlockRecord]]:
        """(seq, block) newest first, only those older than ``before_seq``, at most ``limit``."""
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
        rows = self.query(sql + (f" LIMIT {int(limit)}" if limit is not None else ""), tuple(args))
        return [(int(r[0]), self._block(r[1:])) for r in rows]

    def latest_blocks(self, task_id: str) -> list[BlockRecord]:
        """The newest accepted block of every (site, modality) of a task, sites not withdrawn."""
        rows = self.query(
            f"SELECT {BLOCK_COLS} FROM blocks b WHERE task_id = ? AND state = 'accepted' AND seq = "
            "(SELECT MAX(seq) FROM blocks x WHERE x.task_id = b.task_id AND x.site = b.site AND x.modality = b.modality "
            "AND x.state = 'accepted') ORDER BY modality, site",
            (task_id,),
        )
        return [self._block(r) for r in rows]

    def accepted_block_ids(self, task_id: str) -> set[str]:
        return {
            r[0]
            for r in self.query(
                "SELECT block_id FROM blocks WHERE task_id = ? AND state = 'accepted'", (task_id,)
            )
        }

    def all_block_ids(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.query("SELECT block_id, state FROM blocks")]

    def mark_corrupt(self, block_id: str, reason: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE blocks SET state = 'corrupt' WHERE block_id = ?", (block_id,))
            self.event(c, "coordinator", "block-corrupt", block_id=block_id, reason=reason)

    # ---- tasks ----------------------------------------------------------------------------
    def task_message(self, task_id: str) -> bytes | None:
        rows = self.query("SELECT message FROM tasks WHERE task_id = ?", (task_id,))
        return bytes(rows[0][0]) if rows else None

    def task_messages(self) -> list[bytes]:
        return [
            bytes(r[0])
            for r in self.query("SELECT message FROM tasks ORDER BY created_at, task_id")
        ]

    # ---- unfinished uploads ---------------------------------------------------------------
    def upload(self, site: str, upload_id: str) -> tuple[str, bytes, bytes, str, int, float] | None:
        rows = self.query(
            "SELECT key, manifest, signature, block_id, total, started_at FROM uploads "
            "WHERE site = ? AND upload_id = ?",
            (site, upload_id),
        )
        if not rows:
            return None
        r = rows[0]
        return r[0], bytes(r[1]), bytes(r[2]), r[3], int(r[4]), float(r[5])

    def open_uploads(self, site: str | None = None) -> list[tuple[str, str, str, float]]:
        """(site, upload_id, key, started_at) of unfinished uploads."""
        sql = "SELECT site, upload_id, key, started_at FROM uploads" + (
            " WHERE site = ?" if site else ""
        )
        return [(r[0], r[1], r[2], float(r[3])) for r in self.query(sql, (site,) if site else ())]

    def delete_upload(self, key: str) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM uploads WHERE key = ?", (key,))

    # ---- fuse runs ------------------------------------------------------------------------
    FUSE_RUN_COLS = (
        "run_key",
        "task_id",
        "parent_id",
        "started_at",
        "finished_at",
        "state",
        "model_id",
        "detail",
    )

    def begin_fuse_run(self, key: str, task_id: str, parent_id: str) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO fuse_runs(run_key, task_id, parent_id, started_at, state) VALUES(?,?,?,?, 'running')",
                (key, task_id, parent_id, utc_now()),
            )

    def update_fuse_run(
        self,
        key: str,
        detail: str,
        state: str = "running",
        model_id: str = "",
        finished_at: str = "",
    ) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE fuse_runs SET state = ?, model_id = ?, finished_at = ?, detail = ? WHERE run_key = ?",
                (state, model_id, finished_at, detail, key),
            )

    def fuse_run(self, key: str) -> dict[str, Any] | None:
        rows = self.fuse_runs(key=key)
        return rows[0] if rows else None

    def fuse_runs(self, task_id: str = "", limit: int = 50, key: str = "") -> list[dict[str, Any]]:
        """Fuse runs as column -> value, newest first."""
        where, args = (
            ("run_key = ?", (key,))
            if key
            else ("task_id = ?", (task_id,))
            if task_id
            else ("1", ())
        )
        rows = self.query(
            f"SELECT {', '.join(self.FUSE_RUN_COLS)} FROM fuse_runs WHERE {where} "
            "ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (*args, limit),
        )
        return [dict(zip(self.FUSE_RUN_COLS, r, strict=True)) for r in rows]

    # ---- model versions -------------------------------------------------------------------
    def model_message(self, model_id: str) -> bytes | None:
        rows = self.query("SELECT message FROM models WHERE model_id = ?", (model_id,))
        return bytes(rows[0][0]) if rows else None

    def model_messages(self, task_id: str = "") -> list[bytes]:
        return [m for _, m in self.model_page(task_id)]

    def model_page(
        self, task_id: str = "", before_seq: int | None = None, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        """(seq, serialized version) newest first, only those older than ``before_seq``, at most ``limit``."""
        where: list[str] = []
        args: list[object] = []
        if task_id:
            where.append("task_id = ?")
            args.append(task_id)
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = (
            "SELECT seq, message FROM models"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY seq DESC"
            + (" LIMIT ?" if limit is not None else "")
        )
        rows = self.query(sql, (*args, *([limit] if limit is not None else [])))
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def referenced_blobs(self, conn: sqlite3.Connection | None = None) -> set[str]:
        """Every blob a block or model record names (through ``conn`` when given: inside a
        transaction, or on a copy of the database)."""
        sql = "SELECT block_id FROM blocks UNION SELECT weights_sha256 FROM models UNION SELECT sha256 FROM eval_blobs"
        return {
            r[0] for r in (conn.execute(sql).fetchall() if conn is not None else self.query(sql))
        }
