"""Evaluation jobs: opened with the weights their candidates carry, delivered to the sites that
ask, answered once per site (scores or a declined reason), closed at their deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from common.evaluation import CandidateScore
from common.evaluation.candidates import SWITCHED_OFF, EvaluationJob
from common.evaluation.stacking import StackStats
from common.records import utc_now
from common.serde import (
    job_from_bytes,
    job_to_bytes,
    score_from_bytes,
    score_to_bytes,
    stack_from_bytes,
    stack_to_bytes,
)

from .audit import record_event
from .blobs import BlobStore
from .db import DB_FILE, Database, read_only
from .records import (
    Answer,
    CarriedWeights,
    EvaluationTraffic,
    JobRecord,
    Refusal,
    SiteScore,
)


class EvaluationJobs:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def open(
        self,
        task_id: str,
        deadline: float,
        make: Callable[[str], EvaluationJob],
        carried: Sequence[CarriedWeights],
        actor: str,
    ) -> EvaluationJob:
        """Store the next job of ``task_id``, ``make(job_id)`` (``<task>-e<n>``, numbered under
        the write lock), open until ``deadline`` (seconds since the epoch), with the weights its
        candidates carry, in one transaction."""
        with self.db.tx() as c:
            n = c.execute(
                "SELECT COUNT(*) FROM evaluations WHERE task_id = ?", (task_id,)
            ).fetchone()[0]
            job = make(f"{task_id}-e{n + 1}")
            c.execute(
                "INSERT INTO evaluations(job_id, task_id, purpose, message, created_at, deadline, "
                "state) VALUES(?,?,?,?,?,?, 'open')",
                (job.job_id, task_id, job.purpose, job_to_bytes(job), job.created_at, deadline),
            )
            for w in carried:
                if not self.blobs.has(w.sha256):  # swept as an orphan by a coordinator beside us
                    self.blobs.put_bytes(w.data)
                c.execute(
                    "INSERT INTO eval_blobs(sha256, job_id, candidate_id) VALUES(?,?,?)",
                    (w.sha256, job.job_id, w.candidate_id),
                )
            record_event(
                c,
                actor,
                "evaluation-opened",
                job_id=job.job_id,
                purpose=job.purpose,
                candidates=len(job.candidates),
            )
        return job

    def job(self, job_id: str) -> JobRecord | None:
        rows = self.db.query(
            "SELECT message, state, deadline FROM evaluations WHERE job_id = ?", (job_id,)
        )
        if not rows:
            return None
        return JobRecord(job_from_bytes(bytes(rows[0][0])), str(rows[0][1]), float(rows[0][2]))

    def unanswered(self, site: str, task_id: str = "") -> list[JobRecord]:
        """Open jobs before their deadline that ``site`` has not answered (of ``task_id``),
        oldest first."""
        sql = (
            "SELECT message, state, deadline FROM evaluations e WHERE state = 'open' "
            "AND deadline > ? AND NOT EXISTS "
            "(SELECT 1 FROM eval_reports r WHERE r.job_id = e.job_id AND r.site = ?)"
        )
        args: list[object] = [time.time(), site]
        if task_id:
            sql += " AND task_id = ?"
            args.append(task_id)
        rows = self.db.query(sql + " ORDER BY seq", tuple(args))
        return [JobRecord(job_from_bytes(bytes(m)), str(s), float(d)) for m, s, d in rows]

    def mark_delivered(self, job_ids: Iterable[str], site: str) -> None:
        """Record that ``site`` received these jobs (once; a later delivery keeps the first)."""
        now = utc_now()
        with self.db.tx() as c:
            for job_id in job_ids:
                c.execute(
                    "INSERT OR IGNORE INTO eval_deliveries(job_id, site, at) VALUES(?,?,?)",
                    (job_id, site, now),
                )

    def delivered(self, job_id: str, site: str) -> bool:
        return bool(
            self.db.query(
                "SELECT 1 FROM eval_deliveries WHERE job_id = ? AND site = ?", (job_id, site)
            )
        )

    def keep_report(
        self,
        job_id: str,
        site: str,
        declined: str,
        scores: Mapping[str, CandidateScore],
        stack: Sequence[StackStats] = (),
    ) -> Refusal | None:
        """Keep a site's answer, checked under the write lock (a job closing meanwhile keeps no
        late report); the refusal, with nothing written, when it may not be kept."""
        now = utc_now()
        with self.db.tx() as c:
            state, deadline = c.execute(
                "SELECT state, deadline FROM evaluations WHERE job_id = ?", (job_id,)
            ).fetchone()
            if state != "open" or float(deadline) <= time.time():
                return "closed"
            if not c.execute(
                "SELECT 1 FROM eval_deliveries WHERE job_id = ? AND site = ?", (job_id, site)
            ).fetchone():
                return "not-delivered"
            if c.execute(
                "SELECT 1 FROM eval_reports WHERE job_id = ? AND site = ?", (job_id, site)
            ).fetchone():
                return "answered"
            c.execute(
                "INSERT INTO eval_reports(job_id, site, at, declined) VALUES(?,?,?,?)",
                (job_id, site, now, declined),
            )
            for cid, score in scores.items():
                c.execute(
                    "INSERT INTO eval_scores(job_id, site, candidate_id, message) VALUES(?,?,?,?)",
                    (job_id, site, cid, score_to_bytes(cid, score)),
                )
            for seq, stats in enumerate(stack):
                c.execute(
                    "INSERT INTO eval_stack(job_id, site, seq, message) VALUES(?,?,?,?)",
                    (job_id, site, seq, stack_to_bytes(stats)),
                )
            record_event(
                c,
                site,
                "evaluation-report",
                job_id=job_id,
                scores=len(scores) + len(stack),
                declined=declined,
            )
        return None

    def deliveries(self, job_id: str) -> tuple[str, ...]:
        """The sites that received the job, by name."""
        return tuple(
            r[0]
            for r in self.db.query(
                "SELECT site FROM eval_deliveries WHERE job_id = ? ORDER BY site", (job_id,)
            )
        )

    def answers(self, job_id: str) -> list[Answer]:
        """The sites' answers to the job, by site name."""
        rows = self.db.query(
            "SELECT site, declined FROM eval_reports WHERE job_id = ? ORDER BY site", (job_id,)
        )
        return [Answer(site, declined) for site, declined in rows]

    def switched_off(self, task_id: str) -> set[str]:
        """The sites whose latest answer to a job of ``task_id`` declined it because evaluation is
        switched off there (:data:`SWITCHED_OFF`)."""
        rows = self.db.query(
            "SELECT r.site, r.declined FROM eval_reports r JOIN evaluations e "
            "ON e.job_id = r.job_id WHERE e.task_id = ? ORDER BY e.seq",
            (task_id,),
        )
        latest = {site: declined for site, declined in rows}  # later jobs overwrite earlier ones
        return {site for site, declined in latest.items() if declined == SWITCHED_OFF}

    def job_ids(self, task_id: str = "", open_only: bool = False, limit: int = 200) -> list[str]:
        """The newest jobs' ids (of ``task_id``; only those open before their deadline)."""
        where, args = [], []
        if task_id:
            where.append("task_id = ?")
            args.append(task_id)
        if open_only:
            where.append("state = 'open' AND deadline > ?")
            args.append(time.time())  # type: ignore[arg-type]
        sql = (
            "SELECT job_id FROM evaluations"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY seq DESC LIMIT {int(limit)}"
        )
        return [r[0] for r in self.db.query(sql, tuple(args))]

    def close(self, job_id: str) -> None:
        with self.db.tx() as c:
            c.execute("UPDATE evaluations SET state = 'closed' WHERE job_id = ?", (job_id,))

    def scores(self, job_id: str) -> list[SiteScore]:
        """The scores of the job's candidates (sites withdrawn since do not count)."""
        sql = (
            "SELECT e.site, e.candidate_id, e.message FROM eval_scores e "
            "JOIN sites s ON s.name = e.site WHERE e.job_id = ? AND s.withdrawn = 0"
        )
        return [
            SiteScore(site, cid, score_from_bytes(bytes(raw)))
            for site, cid, raw in self.db.query(sql, (job_id,))
        ]

    def stack(self, job_id: str) -> dict[str, list[StackStats]]:
        """A stack job's sums, site -> its statistics (sites withdrawn since do not count)."""
        sql = (
            "SELECT e.site, e.message FROM eval_stack e JOIN sites s ON s.name = e.site "
            "WHERE e.job_id = ? AND s.withdrawn = 0 ORDER BY e.site, e.seq"
        )
        out: dict[str, list[StackStats]] = {}
        for site, raw in self.db.query(sql, (job_id,)):
            out.setdefault(site, []).append(stack_from_bytes(bytes(raw)))
        return out


def evaluation_traffic(store_root: Path, site: str) -> EvaluationTraffic:
    """What federated evaluation carried for ``site``, read from the store in ``store_root``
    opened read-only (a finished run's)."""
    with read_only(store_root / DB_FILE) as con:
        score_bytes = sum(
            int(
                con.execute(
                    f"SELECT COALESCE(SUM(LENGTH(message)), 0) FROM {table} WHERE site = ?",
                    (site,),
                ).fetchone()[0]
            )
            for table in ("eval_scores", "eval_stack")
        )
        answered = tuple(
            job_from_bytes(bytes(raw))
            for (raw,) in con.execute(
                "SELECT e.message FROM evaluations e JOIN eval_reports r ON r.job_id = e.job_id "
                "WHERE r.site = ? AND r.declined = ''",
                (site,),
            )
        )
    return EvaluationTraffic(score_bytes, answered)
