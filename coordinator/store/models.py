"""Model versions: immutable, numbered per task (``<task>-v<n>``), stored as their protobuf
message beside the sites' scores of them (what the recommendation compares)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from common.evaluation import CandidateScore
from common.records import ModelRecord
from common.serde import model_from_bytes, model_to_bytes, score_from_bytes, score_to_bytes

from .audit import record_event
from .blobs import BlobStore
from .db import Database
from .records import Paged, VersionScores


class Models:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def message(self, model_id: str) -> bytes | None:
        """The serialized version (a card is decoded only by who needs it)."""
        rows = self.db.query("SELECT message FROM models WHERE model_id = ?", (model_id,))
        return bytes(rows[0][0]) if rows else None

    def get(self, model_id: str) -> ModelRecord | None:
        raw = self.message(model_id)
        return model_from_bytes(raw) if raw is not None else None

    def messages(self, task_id: str = "") -> list[bytes]:
        """Serialized versions (of ``task_id``), newest first."""
        return [p.item for p in self.page(task_id)]

    def listing(self, task_id: str = "") -> list[ModelRecord]:
        """Versions (of ``task_id``), newest first."""
        return [model_from_bytes(m) for m in self.messages(task_id)]

    def page(
        self, task_id: str = "", before_seq: int | None = None, limit: int | None = None
    ) -> list[Paged[bytes]]:
        """Serialized versions newest first, only those older than ``before_seq``, at most
        ``limit``."""
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
        rows = self.db.query(sql, (*args, *([limit] if limit is not None else [])))
        return [Paged(int(r[0]), bytes(r[1])) for r in rows]

    def ids(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT model_id FROM models")]

    def count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM models")[0][0])

    def add(
        self,
        task_id: str,
        weights: bytes,
        make: Callable[[str], ModelRecord],
        actor: str,
        scores: Mapping[str, CandidateScore] | None = None,
        job_id: str = "",
        candidate_id: str = "",
    ) -> ModelRecord:
        """Store the next version of ``task_id``, ``make(model_id)``, with the sites' scores of
        it, in one transaction: its number is taken under the write lock. Its weights are
        already a blob; they are stored again if a coordinator starting beside this process
        swept them as an orphan meanwhile."""
        with self.db.tx() as c:
            n = c.execute("SELECT COUNT(*) FROM models WHERE task_id = ?", (task_id,)).fetchone()[0]
            record = make(f"{task_id}-v{n + 1}")
            if not self.blobs.has(record.weights_sha256):
                self.blobs.put_bytes(weights)
            c.execute(
                "INSERT INTO models(model_id, task_id, message, weights_sha256, created_at) "
                "VALUES(?,?,?,?,?)",
                (
                    record.model_id,
                    task_id,
                    model_to_bytes(record),
                    record.weights_sha256,
                    record.created_at,
                ),
            )
            for site, score in (scores or {}).items():
                c.execute(
                    "INSERT INTO model_scores(model_id, site, job_id, candidate_id, message) "
                    "VALUES(?,?,?,?,?)",
                    (
                        record.model_id,
                        site,
                        job_id,
                        candidate_id,
                        score_to_bytes(candidate_id, score),
                    ),
                )
            record_event(
                c,
                actor,
                record.recipe.kind,  # the event is named after the version's recipe kind
                model_id=record.model_id,
                blocks=len(record.block_ids),
                parent_id=record.parent_id,
            )
        return record

    def scores(self, model_id: str) -> dict[str, CandidateScore]:
        """The sites' scores of a version (sites withdrawn since do not count)."""
        rows = self.db.query(
            "SELECT m.site, m.message FROM model_scores m JOIN sites s ON s.name = m.site "
            "WHERE m.model_id = ? AND s.withdrawn = 0",
            (model_id,),
        )
        return {site: score_from_bytes(bytes(raw)) for site, raw in rows}

    def scored_in(self, model_id: str) -> dict[str, str]:
        """Site -> the job its score of the version comes from (sites withdrawn since do not
        count): two versions scored in one job are compared with the job's paired variances."""
        rows = self.db.query(
            "SELECT m.site, m.job_id FROM model_scores m JOIN sites s ON s.name = m.site "
            "WHERE m.model_id = ? AND s.withdrawn = 0",
            (model_id,),
        )
        return {site: job for site, job in rows}

    def keep_scores(self, job_id: str, versions: Sequence[VersionScores]) -> None:
        """Keep the sites' scores of versions from one job, in one transaction (a site's newer
        score of a version replaces its older one)."""
        with self.db.tx() as c:
            for v in versions:
                for site, score in v.scores.items():
                    c.execute(
                        "INSERT INTO model_scores(model_id, site, job_id, candidate_id, message) "
                        "VALUES(?,?,?,?,?) ON CONFLICT(model_id, site) DO UPDATE SET "
                        "job_id = excluded.job_id, candidate_id = excluded.candidate_id, "
                        "message = excluded.message",
                        (
                            v.model_id,
                            site,
                            job_id,
                            v.candidate_id,
                            score_to_bytes(v.candidate_id, score),
                        ),
                    )
