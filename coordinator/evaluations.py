"""Federated evaluation on the coordinator: open a job of candidates, deliver it to the sites
that ask (PendingEvaluations), check and keep their reports (ReportEvaluation), wait for them up to
a deadline, and combine the scores. Every check runs before anything is stored; a refused report
leaves no trace but the log and the audit event."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence

from common.evaluation import CandidateScore, Consortium, consortium, n_strata
from common.evaluation.candidates import (
    MAX_FOLDS,
    PURPOSES,
    Candidate,
    EvaluationJob,
    JobStatus,
    SiteReport,
)
from common.evaluation.selection import BlockInfo, panel
from common.evaluation.stacking import StackStats
from common.pki import Identity
from common.records import BlockRecord, TaskRecord, utc_now
from common.serde import manifest_from_bytes

from .config import EvaluationSection
from .errors import Kind, RegistryError, invalid, not_found, precondition
from .store import CarriedWeights, JobRecord, Store

log = logging.getLogger("mmlego.coordinator")
DECLINE = re.compile(
    r"^[a-z][a-z0-9-]{0,63}$"
)  # a reason's kind, never free text (it could quote data)


POLL_S = 0.5  # how often a waiting job looks for new reports


def block_infos(records: Sequence[BlockRecord]) -> list[BlockInfo]:
    """What the coordinator knows of accepted blocks before anyone scores them."""
    out = []
    for r in records:
        n = manifest_from_bytes(r.manifest).train_stats.get("n_train")
        out.append(BlockInfo(r.block_id, r.site, r.modality, int(n) if n is not None else None))
    return out


def _deadline_iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="microseconds")


class Evaluations:
    def __init__(self, store: Store, settings: EvaluationSection | None = None) -> None:
        self.store = store
        self.settings = settings or EvaluationSection()

    # ---- opening ----------------------------------------------------------------------------
    def deadline(self, asked_s: float = 0.0) -> float:
        """Seconds to wait: what was asked, at most the configured deadline (0: the configured
        one)."""
        if asked_s != asked_s or asked_s < 0:  # NaN or negative
            raise invalid(f"deadline_s must be >= 0, got {asked_s}")
        return min(asked_s, self.settings.deadline_s) if asked_s > 0 else self.settings.deadline_s

    def check_candidates(self, task: TaskRecord, candidates: Sequence[Candidate]) -> None:
        """Raise naming the first candidate that is not a recipe over this task's accepted blocks
        or a version of this task."""
        if not candidates:
            raise invalid("an evaluation needs at least one candidate")
        ids = [c.candidate_id for c in candidates]
        if len(set(ids)) != len(ids):
            raise invalid("candidate ids of a job must be distinct")
        for c in candidates:
            problem = c.problem()
            if problem:
                raise invalid(problem)
            for block_id in c.block_ids:
                b = self.store.blocks.get(block_id)
                if b is None or b.state != "accepted" or b.task_id != task.task_id:
                    raise precondition(
                        f"candidate {c.candidate_id!r}: block {block_id[:12]} is not an accepted "
                        f"block of task {task.task_id!r}"
                    )
            if c.model_id:
                raw = self.store.models.message(c.model_id)
                if raw is None or not c.model_id.startswith(task.task_id + "-v"):
                    raise not_found(
                        f"candidate {c.candidate_id!r}: no model version {c.model_id[:80]!r} "
                        f"of task {task.task_id!r}"
                    )

    def open(
        self,
        task: TaskRecord,
        purpose: str,
        candidates: Sequence[Candidate],
        deadline_s: float,
        blobs: Mapping[str, bytes] | None = None,
        actor: str = "operator",
        points: Sequence[Sequence[float]] = (),
        sites: Sequence[str] | None = None,
    ) -> EvaluationJob:
        """Store a new open job (and the weights its fuse-round candidates carry: candidate id ->
        bytes; a stack job's ``points``); the sites it asks (``sites``; None: the task's
        :meth:`panel`) receive it when they next ask."""
        asked = self.panel(task) if sites is None else tuple(sorted(sites))
        if purpose not in PURPOSES:
            raise invalid(f"unknown evaluation purpose {purpose!r}")
        self.check_candidates(task, candidates)
        problem = EvaluationJob(
            "",
            task.task_id,
            purpose,
            tuple(candidates),
            "",
            "",
            tuple(tuple(float(w) for w in p) for p in points),
        ).problem()
        if problem:
            raise invalid(problem)
        blobs = dict(blobs or {})
        shas = {
            cid: self.store.blobs.put_bytes(data) for cid, data in blobs.items()
        }  # durable before visible
        for c in candidates:
            if c.kind == "fuse-round" and shas.get(c.candidate_id) != c.weights_sha256:
                raise invalid(
                    f"candidate {c.candidate_id!r}: its weights are not the bytes it names"
                )
        created = utc_now()
        deadline = time.time() + deadline_s
        job = self.store.evaluations.open(
            task.task_id,
            deadline,
            lambda job_id: EvaluationJob(
                job_id,
                task.task_id,
                purpose,
                tuple(candidates),
                created,
                _deadline_iso(deadline),
                tuple(tuple(float(w) for w in p) for p in points),
                asked,
            ),
            [CarriedWeights(cid, sha, blobs[cid]) for cid, sha in shas.items()],
            actor,
        )
        log.info(
            "evaluation %s opened: %d candidates (%s), deadline in %.0f s, %s",
            job.job_id,
            len(candidates),
            purpose,
            deadline_s,
            f"asking {len(asked)} sites" if asked else "asking every site",
            extra={"event": "evaluation-opened", "job_id": job.job_id, "task": task.task_id},
        )
        return job

    # ---- sites ------------------------------------------------------------------------------
    def job(self, job_id: str) -> JobRecord:
        record = self.store.evaluations.job(job_id)
        if record is None:
            raise not_found(f"no evaluation job {job_id[:80]!r}")
        return record

    def may_answer(self, site: Identity, task: TaskRecord) -> bool:
        """A site counts for a task while it is not withdrawn and holds one of its modalities."""
        record = self.store.sites.get(site.name)
        return (record is None or not record.withdrawn) and bool(
            set(site.modalities) & set(task.modalities)
        )

    def pending(self, site: Identity, task_id: str = "") -> list[EvaluationJob]:
        """The open jobs ``site`` has not answered (of ``task_id``, or all tasks it may answer
        for), oldest first; each is recorded as delivered to it."""
        tasks: dict[str, bool] = {}
        jobs = []
        for record in self.store.evaluations.unanswered(site.name, task_id):
            tid = record.job.task_id
            if tid not in tasks:
                task = self.store.task(tid)
                tasks[tid] = task is not None and self.may_answer(site, task)
            if tasks[tid] and record.job.asks(site.name):
                jobs.append(record.job)
        if jobs:
            self.store.evaluations.mark_delivered([j.job_id for j in jobs], site.name)
        return jobs

    def delivered(self, job_id: str, site: str) -> bool:
        return self.store.evaluations.delivered(job_id, site)

    def candidate_blob(self, site: Identity, job_id: str, candidate_id: str) -> str:
        """The sha256 of the weights a candidate carries, for a site the job was delivered to."""
        cand = self.job(job_id).job.candidate(candidate_id)
        if cand is None or cand.kind != "fuse-round":
            raise not_found(
                f"job {job_id} has no candidate {candidate_id[:80]!r} with weights of its own"
            )
        if not self.delivered(job_id, site.name):
            raise RegistryError(
                Kind.FORBIDDEN,
                f"job {job_id} was not delivered to {site.name}; list it with PendingEvaluations",
            )
        return cand.weights_sha256

    def report(self, site: Identity, report: SiteReport, task: TaskRecord) -> int:
        """Check and keep a site's report; returns the number of scores kept. Refused (nothing
        kept): an unknown job or candidate, a closed job, a job never delivered to the site, a
        second report, counts that cannot be, a reason that is not a short kind."""
        job = self.job(report.job_id).job
        if not self.may_answer(site, task):
            raise precondition(
                f"{site.name} is withdrawn or enrolled for none of task {task.task_id}'s "
                "modalities; its scores do not count"
            )
        if report.declined and not DECLINE.match(report.declined):
            raise invalid(
                "declined must be a reason's kind (lower-case letters, digits, '-'; at most 64), "
                "not free text"
            )
        strata = n_strata(task.spec.kind, task.spec.n_classes)
        if report.stack and job.purpose != "stack":
            raise invalid(f"evaluation {job.job_id} is not a stack job; it takes scores")
        if report.scores and job.purpose == "stack":
            raise invalid(f"evaluation {job.job_id} is a stack job; it takes sums, not scores")
        for stats in report.stack:
            problem = stats.problem(len(job.candidates), len(job.points), MAX_FOLDS)
            if problem:
                raise invalid(f"the stack sums cannot be: {problem}")
        for cid, score in report.scores.items():
            if job.candidate(cid) is None:
                raise invalid(f"{cid[:80]!r} is not a candidate of evaluation {job.job_id}")
            problem = score.problem(strata)
            if problem:
                raise invalid(f"the score of candidate {cid[:80]!r} cannot be: {problem}")
        refusal = self.store.evaluations.keep_report(
            job.job_id, site.name, report.declined, report.scores, report.stack
        )
        if refusal == "closed":
            raise precondition(
                f"evaluation {job.job_id} is closed (its deadline passed); the report was not kept"
            )
        if refusal == "not-delivered":
            raise precondition(
                f"evaluation {job.job_id} was never delivered to {site.name}; a site reports only "
                "on jobs it received through PendingEvaluations"
            )
        if refusal == "answered":
            raise precondition(
                f"{site.name} already answered evaluation {job.job_id}; one report per site and job"
            )
        log.info(
            "evaluation %s: %s %s",
            job.job_id,
            site.name,
            f"declined ({report.declined})"
            if report.declined
            else f"sent {len(report.stack)} stack sums"
            if report.stack
            else f"scored {len(report.scores)} candidates",
            extra={"event": "evaluation-report", "job_id": job.job_id, "site": site.name},
        )
        return len(report.scores) + len(report.stack)

    # ---- waiting and results ----------------------------------------------------------------
    def expected(self, task: TaskRecord, asked: Sequence[str] = ()) -> set[str]:
        """Sites that should answer: known to the registry, not withdrawn, enrolled for a
        modality of the task, and not switched off (a site whose latest answer to a job of the task
        declined it because its evaluation is off is not waited for until it answers again; it
        still receives the jobs when it asks); of ``asked`` only, when given (a job's panel)."""
        off = self.switched_off(task)
        return {
            s.name
            for s in self.store.sites.listing()
            if not s.withdrawn
            and set(s.modalities) & set(task.modalities)
            and s.name not in off
            and (not asked or s.name in asked)
        }

    def panel(self, task: TaskRecord) -> tuple[str, ...]:
        """The sites a job of ``task`` asks: at most ``[evaluation] sites_per_job`` of those
        expected, stratified by the task's modalities each holds and by its patients (its latest
        blocks' training patients; common.evaluation.selection.panel); empty: every site."""
        n = self.settings.sites_per_job
        if not n:
            return ()
        expected = self.expected(task)
        size: dict[str, int] = {}
        for b in block_infos(self.store.blocks.latest(task.task_id)):
            size[b.site] = size.get(b.site, 0) + (b.n_train or 0)
        held = {
            s.name: frozenset(set(s.modalities) & set(task.modalities))
            for s in self.store.sites.listing()
            if s.name in expected
        }
        return panel({s: (m, size.get(s, 0)) for s, m in held.items()}, n)

    def switched_off(self, task: TaskRecord) -> set[str]:
        """Sites whose latest answer to a job of ``task`` said their evaluation is switched off."""
        return self.store.evaluations.switched_off(task.task_id)

    def status(self, job_id: str) -> JobStatus:
        record = self.job(job_id)
        state = record.state
        if state == "open" and record.deadline <= time.time():
            state = "closed"
        delivered = self.store.evaluations.deliveries(job_id)
        answers = self.store.evaluations.answers(job_id)
        return JobStatus(
            record.job,
            state,
            delivered,
            tuple(a.site for a in answers if not a.declined),
            tuple(a.site for a in answers if a.declined),
        )

    def statuses(self, task_id: str = "", open_only: bool = False) -> list[JobStatus]:
        """The newest 200 jobs (of ``task_id``; only those still open)."""
        return [
            self.status(job_id)
            for job_id in self.store.evaluations.job_ids(task_id, open_only, limit=200)
        ]

    def wait(
        self,
        job_id: str,
        expected: set[str],
        deadline_s: float,
        stop: Callable[[], bool] = lambda: False,
    ) -> JobStatus:
        """Wait until every ``expected`` site the job asks answered, the deadline passed or
        ``stop()``; then close the job."""
        asked = self.job(job_id).job.sites
        expected = {s for s in expected if not asked or s in asked}
        end = time.monotonic() + deadline_s
        while True:
            st = self.status(job_id)
            if expected <= set(st.reported) | set(st.declined) or time.monotonic() >= end or stop():
                break
            time.sleep(POLL_S)
        self.store.evaluations.close(job_id)
        st = self.status(job_id)
        silent = sorted(expected - set(st.reported) - set(st.declined))
        log.info(
            "evaluation %s closed: scored by %s; declined by %s; silent: %s",
            job_id,
            list(st.reported) or "none",
            list(st.declined) or "none",
            silent or "none",
            extra={"event": "evaluation-closed", "job_id": job_id, "silent": silent},
        )
        return st

    def scores(self, job_id: str) -> dict[str, dict[str, CandidateScore]]:
        """candidate id -> site -> score (sites withdrawn since do not count)."""
        out: dict[str, dict[str, CandidateScore]] = {}
        for s in self.store.evaluations.scores(job_id):
            out.setdefault(s.candidate_id, {})[s.site] = s.score
        return out

    def stack(self, job_id: str) -> dict[str, list[StackStats]]:
        """A stack job's sums: site -> its statistics."""
        return self.store.evaluations.stack(job_id)

    def results(self, job: EvaluationJob) -> dict[str, Consortium]:
        """candidate id -> its consortium result, with the difference to the job's reference."""
        by_candidate = self.scores(job.job_id)
        reference = by_candidate.get(job.candidates[0].candidate_id)
        return {
            cid: consortium(by_site, reference) for cid, by_site in by_candidate.items() if by_site
        }
