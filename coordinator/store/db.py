"""The registry's SQLite file (WAL, synchronous=FULL): its connection, transactions and schema.
One connection, serialised by a lock; other processes (``mmlego coordinator merge``) may open
the same file. Every query of the coordinator lives beside this module, in coordinator/store."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "DB_FILE",
    "SCHEMA_VERSION",
    "Database",
    "OperationalError",
    "is_locked",
    "read_only",
    "referenced_blobs",
]

# The database could not do what was asked (locked past the busy timeout, busy, I/O): callers
# that go on without the write (recording a calling site) catch it by this name.
OperationalError = sqlite3.OperationalError

DB_FILE = "registry.sqlite"  # in the store's folder
SCHEMA_VERSION = 2
# The text of every statement is what sqlite_master keeps (a trailing "\" continues a line
# without changing it): the same as the stores already written hold.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks(task_id TEXT PRIMARY KEY, message BLOB NOT NULL, created_at \
TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sites(name TEXT PRIMARY KEY, modalities TEXT NOT NULL, paired INTEGER \
NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0, withdrawn_reason TEXT NOT NULL DEFAULT '', first_seen \
TEXT NOT NULL,
    last_seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks(seq INTEGER PRIMARY KEY AUTOINCREMENT, block_id TEXT UNIQUE \
NOT NULL,
    task_id TEXT NOT NULL, site TEXT NOT NULL, modality TEXT NOT NULL, size INTEGER NOT NULL, \
accepted_at TEXT NOT NULL,
    state TEXT NOT NULL, manifest BLOB NOT NULL, signature BLOB NOT NULL, signer_certificate \
BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_task ON blocks(task_id, site, modality);
CREATE TABLE IF NOT EXISTS uploads(site TEXT NOT NULL, upload_id TEXT NOT NULL, key TEXT UNIQUE \
NOT NULL,
    manifest BLOB NOT NULL, signature BLOB NOT NULL, block_id TEXT NOT NULL, total INTEGER NOT \
NULL,
    started_at REAL NOT NULL, PRIMARY KEY(site, upload_id));
CREATE TABLE IF NOT EXISTS models(seq INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT UNIQUE \
NOT NULL,
    task_id TEXT NOT NULL, message BLOB NOT NULL, weights_sha256 TEXT NOT NULL, created_at TEXT \
NOT NULL);
CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor \
TEXT NOT NULL,
    action TEXT NOT NULL, detail TEXT NOT NULL);
"""
# Schema 2 (federated evaluation): jobs, who received and answered them, the scores, the scores
# kept with model versions, the weights a candidate carries (a fuse round's), a stack job's sums
# (a table added later within schema 2: tables only, created when a store is opened), and fuse
# runs.
SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS evaluations(seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT UNIQUE \
NOT NULL,
    task_id TEXT NOT NULL, purpose TEXT NOT NULL, message BLOB NOT NULL, created_at TEXT NOT \
NULL, deadline REAL NOT NULL,
    state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS eval_deliveries(job_id TEXT NOT NULL, site TEXT NOT NULL, at TEXT NOT \
NULL, PRIMARY KEY(job_id, site));
CREATE TABLE IF NOT EXISTS eval_reports(job_id TEXT NOT NULL, site TEXT NOT NULL, at TEXT NOT \
NULL, declined TEXT NOT NULL,
    PRIMARY KEY(job_id, site));
CREATE TABLE IF NOT EXISTS eval_scores(job_id TEXT NOT NULL, site TEXT NOT NULL, candidate_id \
TEXT NOT NULL,
    message BLOB NOT NULL, PRIMARY KEY(job_id, site, candidate_id));
CREATE TABLE IF NOT EXISTS eval_blobs(sha256 TEXT NOT NULL, job_id TEXT NOT NULL, candidate_id \
TEXT NOT NULL,
    PRIMARY KEY(job_id, candidate_id));
CREATE TABLE IF NOT EXISTS model_scores(model_id TEXT NOT NULL, site TEXT NOT NULL, job_id TEXT \
NOT NULL, candidate_id TEXT NOT NULL,
    message BLOB NOT NULL, PRIMARY KEY(model_id, site));
CREATE TABLE IF NOT EXISTS eval_stack(job_id TEXT NOT NULL, site TEXT NOT NULL, seq INTEGER \
NOT NULL,
    message BLOB NOT NULL, PRIMARY KEY(job_id, site, seq));
CREATE TABLE IF NOT EXISTS fuse_runs(run_key TEXT PRIMARY KEY, task_id TEXT NOT NULL, parent_id \
TEXT NOT NULL,
    started_at TEXT NOT NULL, finished_at TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, \
model_id TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}');
"""
REFERENCED_BLOBS = (
    "SELECT block_id FROM blocks UNION SELECT weights_sha256 FROM models "
    "UNION SELECT sha256 FROM eval_blobs"
)


def referenced_blobs(c: sqlite3.Connection) -> set[str]:
    """Every blob a block, model or evaluation record names (inside a transaction, or on a
    copy of the database)."""
    return {r[0] for r in c.execute(REFERENCED_BLOBS).fetchall()}


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` says another process holds the database (nothing was stored)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A store's database opened read-only (a finished run's, or one a server holds open)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield con
    finally:
        con.close()


class Database:
    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self.migrated_from: int | None = None  # the schema the store had when opened, if older
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
                    f"{path}: store schema {found} is not one this mmlego reads "
                    f"(1 to {SCHEMA_VERSION}); use the mmlego release that wrote it"
                )
            for statement in filter(str.strip, SCHEMA_2.split(";")):  # 1 -> 2 adds tables only
                c.execute(statement)
            c.execute(
                "INSERT INTO meta VALUES('schema', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
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

    def ping(self) -> str | None:
        """None when the database answers; otherwise why not."""
        try:
            self.query("SELECT 1")
        except sqlite3.Error as exc:
            return str(exc)
        return None
