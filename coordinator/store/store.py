"""The coordinator's store: one folder holding the SQLite metadata and the content-addressed
blobs, its queries grouped by what they are about, and recovery on start."""

from __future__ import annotations

import logging
from pathlib import Path

from common.records import TaskRecord

from .blobs import BlobStore
from .blocks import Blocks
from .counts import counts
from .db import DB_FILE, SCHEMA_VERSION, Database
from .evaluations import EvaluationJobs
from .fuse_runs import FuseRuns
from .models import Models
from .records import StoreCounts
from .recovery import Recovery
from .recovery import recover as recover_store
from .sites import Sites
from .tasks import Tasks
from .uploads import OpenUploads

log = logging.getLogger("mmlego.coordinator")


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
        self.db = Database(root / DB_FILE, busy_timeout_s)
        if self.db.migrated_from is not None:
            log.info(
                "store %s migrated from schema %d to %d",
                root,
                self.db.migrated_from,
                SCHEMA_VERSION,
            )
        self.blobs = BlobStore(root)
        self.models_dir = root / "models"
        self.tasks = Tasks(self.db)
        self.sites = Sites(self.db)
        self.blocks = Blocks(self.db)
        self.uploads = OpenUploads(self.db)
        self.models = Models(self.db, self.blobs)
        self.evaluations = EvaluationJobs(self.db, self.blobs)
        self.fuse_runs = FuseRuns(self.db)
        self.recovery = self.recover(upload_ttl_s, verify) if recover else None

    def close(self) -> None:
        self.db.close()

    def task(self, task_id: str) -> TaskRecord | None:
        return self.tasks.get(task_id)

    def counts(self) -> StoreCounts:
        return counts(self.db)

    def ping(self) -> str | None:
        """None when the database answers; otherwise why not."""
        return self.db.ping()

    def recover(self, upload_ttl_s: float, verify: bool) -> Recovery:
        """Make the store consistent after any crash (see :func:`recovery.recover`)."""
        return recover_store(self, upload_ttl_s, verify)
