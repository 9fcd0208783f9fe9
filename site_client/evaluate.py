"""A site's part in federated evaluation: fetch the jobs it has not answered, rebuild every
candidate from what it can check itself, score them on its patients and send pair counts only. With
cross-fitting (``[evaluation] folds`` = K) every patient is scored, a patient of fold k through the
candidate rebuilt from the site's fold-k block copies (and, for a LegoFuse round, the fold run that
no site trained on its fold k), so no model that saw the patient scores it; with K = 0 the site
scores its validation split.

What the site checks before it scores: a recipe names accepted blocks it downloads and verifies
(hashes, the signer's certificate from the consortium CA, the signature); a version is pulled with
every check of ``site pull`` (a merge's head is recomputed bit for bit; a fused version's frozen
tensors must equal its verified blocks'); a LegoFuse round's model is the LegoFuse of a verified
version's blocks with only the trainable tensors taken from the coordinator (their sha256 and layout
must match what the job names). What it limits: at most ``max_eval_queries`` distinct candidates per
task, each against its job's reference (a ledger in its state folder survives restarts; a job that
would go over is declined whole), and no count below its minimum cell size (a candidate that covers
too few of its patients is left out; with none left, the job is declined)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from common.artifacts import BlockManifest, IntegrityError, SignatureError
from common.artifacts.blockfile import (
    WEIGHTS,
    build_block,
    load_block_state,
    parse_weights,
    read_block_files,
)
from common.artifacts.foldcopies import FoldCopies, fold_folder, load_fold_copies
from common.artifacts.modelfile import load_model_folder, modality_block
from common.client import CallError, RegistryClient
from common.data.dataset import MultimodalDataset
from common.data.splits import FoldError, site_folds, site_split
from common.evaluation.candidates import SWITCHED_OFF, Candidate, EvaluationJob, SiteReport
from common.evaluation.pairs import events_of
from common.evaluation.scoring import (
    Part,
    Scorable,
    covered,
    enough,
    predict_parts,
    score_models,
)
from common.evaluation.stacking import features, site_stats
from common.fileio import atomic_write
from common.fuse import fused_of
from common.fuse.wire import FLAT, layout, split_runs, trainable_names, unpack
from common.lego.block import latent_memo
from common.lego.recipe import Recipe
from common.lego.soup import shifted, soup_memo
from common.records import TaskRecord

from .config import SiteConfig
from .modality_blocks import ModalityBlocks

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
            raise ValueError(
                f"{self.path} is not a readable evaluation ledger ({exc}); it must not be lost (it "
                "is the query budget's book): restore it from backup"
            ) from None

    def used(self, task_id: str) -> set[str]:
        return set(self.data.get(task_id, []))

    def add(self, task_id: str, digests: set[str]) -> None:
        self.data[task_id] = sorted(self.used(task_id) | digests)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True).encode())


class Builder:
    """Rebuilds candidates from verified parts, caching blocks and versions in the state folder.
    With ``folds`` (cross-fitting) it rebuilds a candidate once per fold: the site's own blocks
    replaced by their copies of that fold, a LegoFuse round's weights by that fold's run."""

    def __init__(
        self,
        cfg: SiteConfig,
        client: RegistryClient,
        task: TaskRecord,
        patients: MultimodalDataset,
        fold_of: np.ndarray | None = None,
    ) -> None:
        self.cfg, self.client, self.task, self.patients = cfg, client, task, patients
        self.fold_of = fold_of  # cross-fitting: the fold of every patient scored
        self.blocks: dict[
            str, Any
        ] = {}  # block id -> the block, rebuilt once per job (a job's candidates share blocks)
        self.manifests: dict[str, BlockManifest] = {}  # block id -> its manifest, read once per job
        self.states: dict[str, tuple[dict[str, Any], BlockManifest]] = {}  # verified, unbuilt
        self.soups: dict[tuple[Any, ...], Any] = {}  # modality blocks made for this job
        self.kept = ModalityBlocks(cfg.state / "modality-blocks")
        self.sites: dict[str, str] = {}  # block id -> the site that signed it
        self.block_folds: dict[
            str, int
        ] = {}  # block id -> the folds it was cross-fitted with (0: a validation split)
        self.versions: dict[
            str, tuple[Any, Any]
        ] = {}  # model id -> (model, record), loaded once per job
        self.copies: dict[str, FoldCopies] = {}  # own block id -> its fold copies
        self.runs: dict[
            str, list[dict[str, Any]]
        ] = {}  # fuse-round candidate id -> each run's state, full run first

    @property
    def folds(self) -> int:
        return self.cfg.evaluation.folds if self.fold_of is not None else 0

    def manifest(self, block_id: str) -> BlockManifest:
        """A verified block's manifest (the block is pulled once into the state folder, with
        every check; its manifest read once per job): who signed it, how it was trained."""
        if block_id in self.manifests:
            return self.manifests[block_id]
        folder = self.cfg.state / "verified-blocks" / block_id
        if not (folder / "signer.crt").is_file():
            self.client.pull_block(block_id, folder)  # hashes, CA-issued signer, signature checked
        try:
            manifest = read_block_files(folder).manifest
        except (IntegrityError, OSError):  # a copy the machine lost part of: fetched again
            shutil.rmtree(folder, ignore_errors=True)
            self.client.pull_block(block_id, folder)
            manifest = read_block_files(folder).manifest
        if manifest.weights_sha256 != block_id or manifest.task_id != self.task.task_id:
            raise Unverifiable(f"block {block_id[:12]} is not a block of task {self.task.task_id}")
        self.manifests[block_id], self.sites[block_id] = manifest, manifest.site
        self.block_folds[block_id] = int(manifest.train_stats.get("folds", 0))
        return manifest

    def verified(self, block_id: str) -> tuple[dict[str, Any], BlockManifest]:
        """A block's weights, checked against its manifest, and the manifest; read once per job
        and not built (a modality block averages many without building them)."""
        if block_id not in self.states:
            manifest = self.manifest(block_id)
            folder = self.cfg.state / "verified-blocks" / block_id
            try:
                state = parse_weights((folder / WEIGHTS).read_bytes(), manifest)
            except (IntegrityError, OSError):  # damaged since it was pulled: fetched again
                shutil.rmtree(folder, ignore_errors=True)
                self.client.pull_block(block_id, folder)
                state, manifest = load_block_state(folder)
            self.states[block_id] = (state, manifest)
        return self.states[block_id]

    def block(self, block_id: str) -> Any:
        if block_id not in self.blocks:
            state, manifest = self.verified(block_id)
            self.blocks[block_id] = build_block(manifest, state).eval()
        return self.blocks[block_id]

    def modality_block(
        self, ids: Sequence[str], share: Sequence[float], swap: dict[str, Any]
    ) -> Any:
        """The modality block of the blocks ``ids`` (hierarchical Lego) with ``share``: of the
        released blocks, made once and kept in the state folder (and for the job), then with the
        fold copies of ``swap`` in place of the site's own (common.lego.soup.shifted)."""
        if len(ids) == 1:
            return swap.get(ids[0]) or self.block(ids[0])
        mine = tuple((i, id(swap[i])) for i in ids if i in swap)
        memo = (tuple(ids), tuple(share), mine)
        if memo in self.soups:
            return self.soups[memo]
        if mine:
            out = self.modality_block(ids, share, {})
            for pos, i in enumerate(ids):
                if i in swap:
                    out = shifted(out, share[pos], self.block(i), swap[i])
        else:
            key = self.kept.key(ids, share)
            first = self.manifest(ids[0])
            out = self.kept.get(key, first)
            if out is None:
                out = modality_block([self.verified(i) for i in ids], share)
                self.kept.put(key, out.state_dict())
        self.soups[memo] = out
        return out

    def make(
        self, recipe: Recipe, ids: Sequence[str], swap: dict[str, Any], mode: str = "stack"
    ) -> Any:
        """``recipe`` over the blocks ``ids`` with the fold copies of ``swap`` in place of the
        released ones (a fuse: in ``mode``); a grouped recipe of the modality blocks (no block
        built but those)."""
        if not recipe.groups:
            return recipe.make([swap.get(i) or self.block(i) for i in ids], mode)
        return recipe.make_of(
            lambda idx, share: self.modality_block([ids[k] for k in idx], share, swap), mode
        )

    def version(self, model_id: str) -> tuple[Any, Any]:
        from .fuse_client import model_folder

        if model_id not in self.versions:  # a round's candidates and its parent share the version
            self.versions[model_id] = load_model_folder(
                model_folder(self.cfg, model_id)
            )  # every check of `site pull`
        return self.versions[model_id]

    def not_cross_fitted(self, block_ids: Sequence[str]) -> None:
        """A site with a validation split (``folds`` = 0) cannot score a block of its own that was
        cross-fitted (trained on every one of its patients, its validation patients among them)."""
        for i in block_ids:
            self.manifest(i)
            if self.sites[i] == self.cfg.site and self.block_folds[i]:
                raise Unverifiable(
                    f"this site's block {i[:12]} was cross-fitted on all its patients; with "
                    "[evaluation] folds = 0 it cannot be scored on the validation split"
                )

    def own_copies(self, block_ids: Sequence[str]) -> dict[str, FoldCopies]:
        """The fold copies of this site's own blocks among ``block_ids`` (its signature on them is
        verified with the block); a block of its own without them cannot be scored out of fold."""
        out = {}
        for i in block_ids:
            self.manifest(i)
            if self.sites[i] != self.cfg.site:
                continue
            if i not in self.copies:
                try:
                    copies = load_fold_copies(fold_folder(self.cfg.state, i))
                except (FileNotFoundError, ValueError, IntegrityError) as exc:
                    raise Unverifiable(
                        f"this site's block {i[:12]} has no usable fold copies ({exc}); it cannot "
                        "be scored "
                        "out of fold (train the site's blocks again with [evaluation] folds)"
                    ) from None
                if copies.folds != self.folds:
                    raise Unverifiable(
                        f"this site's block {i[:12]} was cross-fitted with {copies.folds} folds, "
                        f"the site now uses {self.folds}"
                    )
                changed = [
                    p
                    for p, k in zip(self.patients.ids, self.fold_of.tolist(), strict=True)  # type: ignore[union-attr]
                    if copies.fold_of.get(p, k) != k
                ]
                if changed:
                    raise FoldsChanged(
                        f"{len(changed)} patients are in other folds than when block {i[:12]} was "
                        "trained"
                    )
                self.copies[i] = copies
            out[i] = self.copies[i]
        return out

    def parts(self, job: EvaluationJob, c: Candidate) -> list[Part]:
        """The candidate as scored: one model for every patient, or (cross-fitting) one per fold."""
        if c.model_id and not re.fullmatch(re.escape(self.task.task_id) + r"-v[0-9]+", c.model_id):
            raise Unverifiable(f"{c.model_id[:80]} is not a version of task {self.task.task_id}")
        ids = c.block_ids if c.is_recipe else self.version(c.model_id)[1].block_ids
        if self.fold_of is None:
            self.not_cross_fitted(ids)
            return [(np.arange(len(self.patients)), self.build(job, c, {}, None))]
        own = self.own_copies(ids)
        if (
            not own and c.kind != "fuse-round"
        ):  # nothing of this site's in it: the same model for every fold
            return [(np.arange(len(self.patients)), self.build(job, c, {}, None))]
        return [
            (
                np.flatnonzero(self.fold_of == k),
                self.build(job, c, {i: f.blocks[k] for i, f in own.items()}, k),
            )
            for k in range(self.folds)
        ]

    def build(
        self, job: EvaluationJob, c: Candidate, swap: dict[str, Any], fold: int | None
    ) -> Scorable:
        """``c`` rebuilt with the blocks of ``swap`` (block id -> a fold copy) in place of the
        released ones; ``fold``: the fold whose patients it will score (cross-fitting)."""
        if c.is_recipe:
            model = self.make(c.recipe, c.block_ids, swap)
            return model, model.modalities
        model, record = self.version(c.model_id)
        if c.kind == "version" and not record.recipe.method.trained:
            if not swap:
                return model, model.modalities
            rebuilt = self.make(record.recipe, record.block_ids, swap)
            return rebuilt, rebuilt.modalities
        if not self.cfg.evaluation.score_fused:
            raise Unverifiable(
                "scoring fused models is switched off ([evaluation] score_fused = false)"
            )
        if c.kind == "version":  # a stored fused version: its full run's weights only
            took_part = self.cfg.site in record.card.get("fuse", {}).get("participants", [])
            # a participant trained its full run on all its patients (cross-fitting), or on its
            # training split (folds = 0, certain only when the run had no fold runs: a cross-fitting
            # site does not take part in such a run)
            if took_part and (
                self.fold_of is not None or int(record.settings.get("folds", "0") or 0) > 0
            ):
                raise Unverifiable(
                    "this site trained that fused version's full run on the patients it would "
                    "score it on"
                )
            if not swap:
                return model, model.modalities
            return self._fused(
                record.block_ids,
                record.recipe,
                record.settings.get("mode", "stack"),
                model.state_dict(),
                swap,
            )
        if record.recipe.method.trained:
            raise Unverifiable(
                "a LegoFuse round starts from a merge or ensemble version, not a "
                f"{record.recipe.kind}"
            )
        runs = self._runs(job, c, record, model)
        run = (
            1 + fold if fold is not None and c.folds == self.folds else 0
        )  # fold k's patients: the run that never saw them
        return self._fused(record.block_ids, record.recipe, c.fuse_mode, runs[run], swap, model)

    def _runs(
        self, job: EvaluationJob, c: Candidate, record: Any, model: Any
    ) -> list[dict[str, Any]]:
        """Every run's global weights of a LegoFuse round (fetched once): the full run, then the
        fold runs."""
        if c.candidate_id not in self.runs:
            fused = fused_of(model, c.fuse_mode, record.recipe)
            state = {k: v.detach().cpu() for k, v in fused.state_dict().items()}
            names = trainable_names(fused)
            if layout(state, names) != c.layout:
                raise Unverifiable(
                    "the round's tensor layout is not that of the LegoFuse of its version's blocks"
                )
            from flwr.app import Array, ArrayRecord

            data = self.client.download_candidate(job.job_id, c.candidate_id, c.weights_sha256)
            self.runs[c.candidate_id] = [
                unpack(ArrayRecord({FLAT: Array(flat)}), state, names)
                for flat in split_runs(data, 1 + c.folds)
            ]
        return self.runs[c.candidate_id]

    def _fused(
        self,
        ids: Sequence[str],
        recipe: Recipe,
        mode: str,
        weights: dict[str, Any],
        swap: dict[str, Any],
        made: Any = None,
    ) -> Scorable:
        """The LegoFuse of the blocks ``ids`` (of ``recipe``; ``made``: the version's model, when
        loaded already) holding ``weights``; with fold copies in ``swap``, the weights' change
        from the released blocks' LegoFuse added to the LegoFuse of the blocks with the copies in
        place (so the site's own released blocks, which saw the patient, play no part:
        docs/EVALUATION.md)."""
        fusing = recipe.fused()
        fused = (
            fused_of(made, mode, recipe)
            if made is not None and not recipe.method.trained
            else self.make(fusing, ids, {}, mode)
        )
        if swap:
            start = {k: v.detach().clone() for k, v in fused.state_dict().items()}
            fused = self.make(fusing, ids, swap, mode)
            mine = fused.state_dict()
            trained = set(trainable_names(fused))
            weights = {
                k: mine[k] + (weights[k] - start[k]) if k in trained else mine[k] for k in mine
            }
        fused.load_state_dict(weights, strict=True)
        return fused.eval(), fused.modalities


def empty_folds(
    data: MultimodalDataset, task: TaskRecord, fold_of: np.ndarray, folds: int
) -> list[int]:
    """The folds that hold, among the patients the task's modalities cover, no event (survival) or
    not every class those patients have (classification): their patients cannot be scored."""
    held = covered(data, list(task.modalities))
    if task.spec.kind == "survival":
        return [
            k
            for k in range(folds)
            if events_of("survival", data.targets(), 0, held & (fold_of == k)) == 0
        ]
    labels = np.asarray(data.targets()["label"])
    classes = set(labels[held].tolist())
    return [k for k in range(folds) if set(labels[held & (fold_of == k)].tolist()) != classes]


class FoldsChanged(Exception):
    """The site's patients are not in the folds its blocks were cross-fitted on (its data
    changed)."""


def validation(cfg: SiteConfig, data: MultimodalDataset) -> MultimodalDataset:
    """The site's validation patients (``[evaluation] folds`` = 0): the ones its blocks stopped
    early on."""
    _, val = site_split(data, cfg.train.val_fraction, cfg.train.seed)
    return data.subset(val)


def answer(
    cfg: SiteConfig,
    client: RegistryClient,
    job: EvaluationJob,
    data: MultimodalDataset,
    ledger: Ledger,
    task: TaskRecord,
) -> SiteReport:
    """This site's report on ``job`` (scores, or a decline with the reason's kind only). With
    cross-fitting every patient is scored, each through the candidate rebuilt from the site's
    fold copies that never saw it; otherwise the validation patients."""
    if data.task != task.spec.kind:
        return SiteReport(job.job_id, declined="wrong-task-kind")
    patients = data if cfg.evaluation.folds else validation(cfg, data)
    if not enough(patients, task.spec, covered(patients, list(task.modalities)), cfg.min_cell_size):
        log.info(
            "evaluation %s: fewer than %d patients or events here; declined",
            job.job_id,
            cfg.min_cell_size,
        )
        return SiteReport(job.job_id, declined="too-few-patients")
    fold_of = None
    if cfg.evaluation.folds:
        try:
            fold_of = site_folds(data, cfg.evaluation.folds, cfg.train.seed)
        except FoldError as exc:
            log.warning(
                "evaluation %s: %s; declined",
                job.job_id,
                exc,
                extra={"event": "evaluation-refused", "job_id": job.job_id, "reason": "folds"},
            )
            return SiteReport(job.job_id, declined="folds")
        empty = empty_folds(data, task, fold_of, cfg.evaluation.folds)
        if empty:
            log.warning(
                "evaluation %s: fold(s) %s of the site's patients hold no event (or no patient of "
                "a class) among "
                "those the task's modalities cover: the folds cannot each be scored; declined",
                job.job_id,
                ", ".join(map(str, empty)),
                extra={
                    "event": "evaluation-refused",
                    "job_id": job.job_id,
                    "reason": "fold-without-event",
                },
            )
            return SiteReport(job.job_id, declined="fold-without-event")
    asked = booked(job)
    new = set(asked.values()) - ledger.used(task.task_id)
    if len(ledger.used(task.task_id)) + len(new) > cfg.evaluation.max_eval_queries:
        log.warning(
            "evaluation %s: %d new candidates would pass this site's query budget of %d for task "
            "%s; declined",
            job.job_id,
            len(new),
            cfg.evaluation.max_eval_queries,
            task.task_id,
            extra={"event": "evaluation-refused", "job_id": job.job_id, "reason": "query-budget"},
        )
        return SiteReport(job.job_id, declined="query-budget")
    builder = Builder(cfg, client, task, patients, fold_of)
    if job.purpose == "stack":
        return stack_answer(cfg, job, builder, patients, task, fold_of, ledger, asked)
    models: list[list[Part] | None] = []
    for c in job.candidates:
        try:
            models.append(builder.parts(job, c))
        except FoldsChanged as exc:
            log.warning(
                "evaluation %s: %s: the site's data changed since it trained; declined (train its "
                "blocks again)",
                job.job_id,
                exc,
                extra={
                    "event": "evaluation-refused",
                    "job_id": job.job_id,
                    "reason": "folds-changed",
                },
            )
            return SiteReport(job.job_id, declined="folds-changed")
        except (Unverifiable, IntegrityError, SignatureError, CallError, ValueError) as exc:
            # what the site cannot rebuild and check itself, it does not score (the others it does)
            log.warning(
                "evaluation %s: candidate %s not scored: %s: %s",
                job.job_id,
                c.candidate_id,
                type(exc).__name__,
                exc,
                extra={
                    "event": "evaluation-refused",
                    "job_id": job.job_id,
                    "reason": type(exc).__name__,
                },
            )
            models.append(None)
    scores = score_models(models, patients, task.spec, cfg.min_cell_size)
    kept = {c.candidate_id: s for c, s in zip(job.candidates, scores, strict=True) if s is not None}
    if not kept:
        return SiteReport(job.job_id, declined="too-few-patients")
    ledger.add(task.task_id, {asked[c] for c in kept})  # booked before they leave
    return SiteReport(job.job_id, kept)


def stack_answer(
    cfg: SiteConfig,
    job: EvaluationJob,
    builder: Builder,
    patients: MultimodalDataset,
    task: TaskRecord,
    fold_of: np.ndarray | None,
    ledger: Ledger,
    asked: dict[str, str],
) -> SiteReport:
    """A stack job: every component scores every patient out of fold (through the site's fold
    copies that never saw it), and the site sends the stacking loss's sums at the job's points,
    per fold when each fold passes its minimum cell size, else in all (common.evaluation.stacking).
    A component it cannot rebuild and check declines the whole job: the sums need every one."""
    cache = StackCache(cfg, task, job, patients, fold_of)
    cached = cache.load()
    if cached is not None:
        x, present = cached
        return _stack_report(cfg, job, task, patients, fold_of, ledger, asked, x, present)
    parts = []
    for c in job.candidates:
        try:
            parts.append(builder.parts(job, c))
        except FoldsChanged:
            return SiteReport(job.job_id, declined="folds-changed")
        except (Unverifiable, IntegrityError, SignatureError, CallError, ValueError) as exc:
            log.warning(
                "evaluation %s: stack component %s cannot be rebuilt: %s: %s; declined",
                job.job_id,
                c.candidate_id,
                type(exc).__name__,
                exc,
                extra={"event": "evaluation-refused", "job_id": job.job_id, "reason": "stack"},
            )
            return SiteReport(job.job_id, declined="cannot-verify")
    predicted = [predict_parts(p, patients, task.spec) for p in parts]
    x, present = features(
        task.spec.kind, [s for s, _ in predicted], [m for _, m in predicted], len(patients)
    )
    cache.save(x, present)
    return _stack_report(cfg, job, task, patients, fold_of, ledger, asked, x, present)


def _stack_report(
    cfg: SiteConfig,
    job: EvaluationJob,
    task: TaskRecord,
    patients: MultimodalDataset,
    fold_of: np.ndarray | None,
    ledger: Ledger,
    asked: dict[str, str],
    x: np.ndarray,
    present: np.ndarray,
) -> SiteReport:
    stats = site_stats(
        task.spec.kind,
        x,
        present,
        patients.targets(),
        job.points,
        fold_of,
        cfg.evaluation.folds if fold_of is not None else 0,
        cfg.min_cell_size,
    )
    if not stats:
        return SiteReport(job.job_id, declined="too-few-patients")
    ledger.add(task.task_id, set(asked.values()))  # booked before they leave
    return SiteReport(job.job_id, stack=tuple(stats))


class StackCache:
    """The components' out-of-fold predictions of this site's patients, kept in its state folder
    between the stack jobs of one fit (they ask about other weights of the same components): the
    latest set only, keyed by the task, the components, the folds, the patients and the data
    folder's files (name, size, modification time: data that changed is scored again)."""

    def __init__(
        self,
        cfg: SiteConfig,
        task: TaskRecord,
        job: EvaluationJob,
        patients: MultimodalDataset,
        fold_of: np.ndarray | None,
    ) -> None:
        key = json.dumps(
            [
                task.task_id,
                [c.digest() for c in job.candidates],
                list(patients.ids),
                fold_of.tolist() if fold_of is not None else None,
                sorted(
                    (str(f.relative_to(cfg.data)), st.st_size, st.st_mtime_ns)
                    for f in cfg.data.rglob("*")
                    if f.is_file() and (st := f.stat())
                ),
            ]
        )
        self.folder = cfg.state / "stack-cache"
        self.path = self.folder / f"{hashlib.sha256(key.encode()).hexdigest()}.npz"

    def load(self) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(self.path, allow_pickle=False) as f:
                return f["x"], f["present"]
        except (OSError, KeyError, ValueError):
            return None

    def save(self, x: np.ndarray, present: np.ndarray) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)  # the latest fit's only
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, present=present)
        tmp.replace(self.path)


def booked(job: EvaluationJob) -> dict[str, str]:
    """What each candidate costs the query budget: itself, and (but for the reference) its
    difference to the job's reference, whose variance the report carries too: the same candidate
    against another reference is a new query. A stack job is one query: its components and
    points together."""
    if job.purpose == "stack":
        body = json.dumps(
            [[c.digest() for c in job.candidates], [list(p) for p in job.points]]
        ).encode()
        return {"stack": hashlib.sha256(b"stack" + body).hexdigest()}
    ref = job.candidates[0].digest()
    return {
        c.candidate_id: c.digest()
        if i == 0
        else hashlib.sha256((ref + c.digest()).encode()).hexdigest()
        for i, c in enumerate(job.candidates)
    }


def evaluate_pending(
    cfg: SiteConfig,
    client: RegistryClient,
    data: MultimodalDataset | Callable[[], MultimodalDataset],
    on_answer: Callable[[Answer], None] = lambda _: None,
) -> list[Answer]:
    """Answer every open job of the site's task it has not answered yet; returns what it did."""
    jobs = client.pending_evaluations(cfg.task)
    if not jobs:
        return []
    dataset = None  # switched off: every job declined, the data never read
    if cfg.evaluation.enabled:
        dataset = data() if callable(data) else data
    ledger = Ledger(cfg)
    tasks: dict[str, TaskRecord] = {}
    out = []
    for job in jobs:
        try:
            if dataset is None:
                report = SiteReport(job.job_id, declined=SWITCHED_OFF)
            else:
                task = tasks.setdefault(job.task_id, client.task(job.task_id))
                # the job's candidates share their modality blocks and their blocks' latents
                with latent_memo(), soup_memo():
                    report = answer(cfg, client, job, dataset, ledger, task)
        except CallError:
            raise  # the coordinator is away: the next poll tries again
        except (
            Exception
        ):  # a problem of this site (its data, its ledger): logged here, declined by kind only
            log.exception("evaluation %s: could not answer it", job.job_id)
            report = SiteReport(job.job_id, declined="error")
        try:
            client.report(report)
        except CallError as exc:
            if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            log.warning(
                "evaluation %s: the coordinator did not keep the report: %s",
                job.job_id,
                exc.message,
            )
            out.append(
                Answer(job.job_id, "not-kept", 0)
            )  # closed meanwhile, say: nothing more to do for it
        else:
            out.append(Answer(job.job_id, report.declined, len(report.scores)))
        on_answer(out[-1])
    return out
