"""The coordinator's store: SQLite metadata + content-addressed blobs, and recovery on start.
Every query of the coordinator lives in this package and returns records."""

from __future__ import annotations

from .backup import referenced_in, snapshot
from .blobs import BlobStore, fsync_dir
from .cards import write_card
from .db import SCHEMA_VERSION, Database, OperationalError, is_locked
from .evaluations import evaluation_traffic
from .records import (
    Answer,
    BlockState,
    CarriedWeights,
    EvaluationTraffic,
    FuseRunRecord,
    JobRecord,
    OpenUpload,
    Paged,
    Refusal,
    SiteScore,
    StoreCounts,
    VersionScores,
)
from .recovery import Recovery
from .store import Store

__all__ = [
    "SCHEMA_VERSION",
    "Answer",
    "BlobStore",
    "BlockState",
    "CarriedWeights",
    "Database",
    "EvaluationTraffic",
    "FuseRunRecord",
    "JobRecord",
    "OpenUpload",
    "OperationalError",
    "Paged",
    "Recovery",
    "Refusal",
    "SiteScore",
    "Store",
    "StoreCounts",
    "VersionScores",
    "evaluation_traffic",
    "fsync_dir",
    "is_locked",
    "referenced_in",
    "snapshot",
    "write_card",
]
