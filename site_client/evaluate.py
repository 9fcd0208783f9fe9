"""A site's part in federated evaluation: fetch the jobs it has not answered, rebuild every
candidate from what it can check itself, score them on its validation patients and send pair
counts only.

What the site checks before it scores: a recipe names accepted blocks it downloads and verifies
(hashes, the signer's certificate from the consortium CA, the signature); a version is pulled with
every check of ``site pull`` (a merge's head is recomputed bit for bit; a fused version's frozen
tensors must equal its verified blocks'); a LegoFuse round's model is the LegoFuse of a verified
version's blocks with only the trainable tensors taken from the coordinator (their sha256 and
layout must match what the job names). What it limits: at most ``max_eval_queries`` distinct
candidates per task, each against its job's reference (a ledger in its state folder survives
restarts; a job that would go over is declined whole), and no count below its minimum cell size (a candidate that covers too few of its
validation patients is left out; with none left, the job is declined)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from common.artifacts import IntegrityError, SignatureError, load_block
from common.artifacts.modelfile import load_model_folder, recipe_model, weights_parameter
from common.client import CallError, RegistryClient
from common.data.dataset import MultimodalDataset
from common.data.splits import site_split
from common.evaluation.candidates import Candidate, EvaluationJob, SiteReport
from common.evaluation.scoring import Scorable, covered, enough, score_models
from common.fileio import atomic_write
from common.fuse import fused_model
from common.fuse.wire import layout, trainable_names, unpack
from common.records import TaskRecord

from .config import SiteConfig

log = logging.getLogger("mmlego.site")


class Unverifiable(Exception):
    """A candidate the site will not score (it cannot check it, or it is switched off)."""


@dataclass
class Answer:
    job_id: str
    declined: str
    scored: int


class Ledger:
    """The distinct candidates this site has scored, per task: its query budget's book."""

    def __init__(self, cfg: SiteConfig) -> None:
        self.path = cfg.state / "evaluation-ledger.json"
        try:
            self.data: dict[str, list[str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self.data = {}
        except ValueError as exc:
            raise ValueError(f"{self.path} is not a readable evaluation ledger ({exc}); it must not be lost (it is the "
                             "query budget's book): restore it from backup") from None

    def used(self, task_id: str) -> set[str]:
        return set(self.data.get(task_id, []))

    def add(self, task_id: str, digests: set[str]) -> None:
        self.data[task_id] = sorted(self.used(task_id) | digests)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())


class Builder:
    """Rebuilds candidates from verified parts, caching blocks and versions in the state folder."""

    def __init__(self, cfg: SiteConfig, client: RegistryClient, task: TaskRecord) -> None:
        self.cfg, self.client, self.task = cfg, client, task
        self.blocks: dict[str, Any] = {}  # block id -> the block, rebuilt once per job (a job's candidates share blocks)
        self.versions: dict[str, tuple[Any, Any]] = {}  # model id -> (model, record), loaded once per job

    def block(self, block_id: str) -> Any:
        if block_id in self.blocks:
            return self.blocks[block_id]
        folder = self.cfg.state / "verified-blocks" / block_id
        if not (folder / "signer.crt").is_file():
            self.client.pull_block(block_id, folder)  # hashes, CA-issued signer, signature checked
        try:
            block, manifest = load_block(folder)
        except (IntegrityError, OSError):  # a copy the machine lost part of (not synced): fetched again
            shutil.rmtree(folder, ignore_errors=True)
            self.client.pull_block(block_id, folder)
            block, manifest = load_block(folder)
        if manifest.weights_sha256 != block_id or manifest.task_id != self.task.task_id:
            raise Unverifiable(f"block {block_id[:12]} is not a block of task {self.task.task_id}")
        self.blocks[block_id] = block.eval()
        return self.blocks[block_id]

    def version(self, model_id: str) -> tuple[Any, Any]:
        from .fuse_client import model_folder

        if model_id not in self.versions:  # a round's candidates and its parent share the version
            self.versions[model_id] = load_model_folder(model_folder(self.cfg, model_id))  # every check of `site pull`
        return self.versions[model_id]

    def build(self, job: EvaluationJob, c: Candidate) -> Scorable:
        if c.is_recipe:
            blocks = [self.block(i) for i in c.block_ids]
            params = {"latent_merge": c.latent_merge, "head_merge": c.head_merge, **weights_parameter(c.weights)}
            model = recipe_model(c.kind, blocks, params)
            return model, model.modalities
        if c.model_id and not c.model_id.startswith(self.task.task_id + "-v"):
            raise Unverifiable(f"{c.model_id} is not a version of task {self.task.task_id}")
        model, record = self.version(c.model_id)
        if c.kind == "version":
            if record.recipe == "fuse" and not self.cfg.evaluation.score_fused:
                raise Unverifiable("scoring fused models is switched off ([evaluation] score_fused = false)")
            return model, model.modalities
        if not self.cfg.evaluation.score_fused:
            raise Unverifiable("scoring fused models is switched off ([evaluation] score_fused = false)")
        if record.recipe not in ("merge", "ensemble"):
            raise Unverifiable(f"a LegoFuse round starts from a merge or ensemble version, not a {record.recipe}")
        fused = fused_model(model.block_list, c.fuse_mode, record.parameters)
        state = {k: v.detach().cpu() for k, v in fused.state_dict().items()}
        names = trainable_names(fused)
        if layout(state, names) != c.layout:
            raise Unverifiable("the round's tensor layout is not that of the LegoFuse of its version's blocks")
        from flwr.app import Array, ArrayRecord

        from common.fuse.wire import FLAT

        data = self.client.download_candidate(job.job_id, c.candidate_id, c.weights_sha256)
        flat = np.frombuffer(data, dtype=np.float32)
        fused.load_state_dict(unpack(ArrayRecord({FLAT: Array(flat.copy())}), state, names), strict=True)
        return fused.eval(), fused.modalities


def validation(cfg: SiteConfig, data: MultimodalDataset) -> MultimodalDataset:
    """The site's validation patients: the same ones its blocks stopped early on."""
    _, val = site_split(data, cfg.train.val_fraction, cfg.train.seed)
    return data.subset(val)


def answer(cfg: SiteConfig, client: RegistryClient, job: EvaluationJob, data: MultimodalDataset, ledger: Ledger,
           task: TaskRecord) -> SiteReport:
    """This site's report on ``job`` (scores, or a decline with the reason's kind only)."""
    if not cfg.evaluation.enabled:
        return SiteReport(job.job_id, declined="disabled")
    if data.task != task.spec.kind:
        return SiteReport(job.job_id, declined="wrong-task-kind")
    val = validation(cfg, data)
    if not enough(val, task.spec, covered(val, list(task.modalities)), cfg.min_cell_size):
        log.info("evaluation %s: fewer than %d validation patients or events here; declined", job.job_id, cfg.min_cell_size)
        return SiteReport(job.job_id, declined="too-few-patients")
    asked = booked(job)
    new = set(asked.values()) - ledger.used(task.task_id)
    if len(ledger.used(task.task_id)) + len(new) > cfg.evaluation.max_eval_queries:
        log.warning("evaluation %s: %d new candidates would pass this site's query budget of %d for task %s; declined",
                    job.job_id, len(new), cfg.evaluation.max_eval_queries, task.task_id,
                    extra={"event": "evaluation-refused", "job_id": job.job_id, "reason": "query-budget"})
        return SiteReport(job.job_id, declined="query-budget")
    builder = Builder(cfg, client, task)
    models: list[Scorable | None] = []
    for c in job.candidates:
        try:
            models.append(builder.build(job, c))
        except (Unverifiable, IntegrityError, SignatureError, CallError, ValueError) as exc:
            # what the site cannot rebuild and check itself, it does not score (the others it does)
            log.warning("evaluation %s: candidate %s not scored: %s: %s", job.job_id, c.candidate_id, type(exc).__name__, exc,
                        extra={"event": "evaluation-refused", "job_id": job.job_id, "reason": type(exc).__name__})
            models.append(None)
    scores = score_models(models, val, task.spec, cfg.min_cell_size)
    kept = {c.candidate_id: s for c, s in zip(job.candidates, scores, strict=True) if s is not None}
    if not kept:
        return SiteReport(job.job_id, declined="too-few-patients")
    ledger.add(task.task_id, {asked[c] for c in kept})  # booked before they leave
    return SiteReport(job.job_id, kept)


def booked(job: EvaluationJob) -> dict[str, str]:
    """What each candidate costs the query budget: itself, and (but for the reference) its
    difference to the job's reference, whose variance the report carries too: the same candidate
    against another reference is a new query."""
    ref = job.candidates[0].digest()
    return {c.candidate_id: c.digest() if i == 0 else hashlib.sha256((ref + c.digest()).encode()).hexdigest()
            for i, c in enumerate(job.candidates)}


def evaluate_pending(cfg: SiteConfig, client: RegistryClient, data: MultimodalDataset | Callable[[], MultimodalDataset],
                     on_answer: Callable[[Answer], None] = lambda _: None) -> list[Answer]:
    """Answer every open job of the site's task it has not answered yet; returns what it did."""
    jobs = client.pending_evaluations(cfg.task)
    if not jobs:
        return []
    if callable(data):
        data = data()
    ledger = Ledger(cfg)
    tasks: dict[str, TaskRecord] = {}
    out = []
    for job in jobs:
        try:
            task = tasks.setdefault(job.task_id, client.task(job.task_id))
            report = answer(cfg, client, job, data, ledger, task)
        except CallError:
            raise  # the coordinator is away: the next poll tries again
        except Exception:  # a problem of this site (its data, its ledger): logged here, declined by kind only
            log.exception("evaluation %s: could not answer it", job.job_id)
            report = SiteReport(job.job_id, declined="error")
        try:
            client.report(report)
        except CallError as exc:
            if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            log.warning("evaluation %s: the coordinator did not keep the report: %s", job.job_id, exc.message)
            out.append(Answer(job.job_id, "not-kept", 0))  # closed meanwhile, say: nothing more to do for it
        else:
            out.append(Answer(job.job_id, report.declined, len(report.scores)))
        on_answer(out[-1])
    return out
