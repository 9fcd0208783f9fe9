"""The one place that converts between protobuf messages (common.pb) and our dataclasses."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from .artifacts.manifest import BlockManifest, DPAccount
from .artifacts.recipefile import read_recipe, write_recipe
from .evaluation.candidates import Candidate, EvaluationJob, JobStatus, SiteReport
from .evaluation.scores import CandidateScore, Consortium, PairCounts
from .evaluation.stacking import StackStats
from .lego.config import BlockConfig
from .pb.mmlego.v1 import admin_pb2 as apb
from .pb.mmlego.v1 import evaluation_pb2 as epb
from .pb.mmlego.v1 import registry_pb2 as pb
from .recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE
from .records import (
    BlockRecord,
    Chunk,
    FuseRound,
    FuseRun,
    ModelRecord,
    PublicRanges,
    Recommendation,
    SiteRecord,
    TaskRecord,
    UploadData,
    UploadHeader,
    UploadProgress,
)
from .tasks.spec import TaskSpec


def _ts(iso: str) -> Timestamp:
    t = Timestamp()
    if iso:
        t.FromDatetime(dt.datetime.fromisoformat(iso))
    return t


def _iso(t: Timestamp) -> str:
    if t.seconds == 0 and t.nanos == 0:
        return ""
    return t.ToDatetime(tzinfo=dt.UTC).isoformat(timespec="microseconds")


# ---- block manifests --------------------------------------------------------------------------
def manifest_to_pb(m: BlockManifest) -> pb.BlockManifest:
    return pb.BlockManifest(
        task_id=m.task_id,
        site=m.site,
        modality=m.config.modality,
        config_json=json.dumps(m.config.to_dict(), sort_keys=True),
        tensors=[
            pb.TensorSpec(name=k, shape=list(v), dtype=m.dtypes.get(k, ""))
            for k, v in sorted(m.tensors.items())
        ],
        train_stats=dict(m.train_stats),
        code_version=m.code_version,
        created_at=_ts(m.created_at),
        weights_sha256=m.weights_sha256,
        weights_size=m.weights_size,
        dp=_dp_to_pb(m.dp),
    )


def _dp_to_pb(d: DPAccount | None) -> pb.DpAccounting | None:
    if d is None:
        return None
    return pb.DpAccounting(
        epsilon=d.epsilon,
        delta=d.delta,
        target_epsilon=d.target_epsilon,
        noise_multiplier=d.noise_multiplier,
        sample_rate=d.sample_rate,
        steps=d.steps,
        max_grad_norm=d.max_grad_norm,
        accountant=d.accountant,
        input_scaling=d.input_scaling,
    )


def _dp_from_pb(msg: pb.BlockManifest) -> DPAccount | None:
    if not msg.HasField("dp"):
        return None
    d = msg.dp
    return DPAccount(
        epsilon=d.epsilon,
        delta=d.delta,
        target_epsilon=d.target_epsilon,
        noise_multiplier=d.noise_multiplier,
        sample_rate=d.sample_rate,
        steps=d.steps,
        max_grad_norm=d.max_grad_norm,
        accountant=d.accountant,
        input_scaling=d.input_scaling,
    )


def manifest_to_bytes(m: BlockManifest) -> bytes:
    return manifest_to_pb(m).SerializeToString(deterministic=True)


def manifest_from_pb(msg: pb.BlockManifest) -> BlockManifest:
    """Raise ``ValueError`` naming what is wrong with a manifest message."""
    try:
        config = BlockConfig.from_dict(json.loads(msg.config_json))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"manifest config_json is not a valid block configuration: {exc}") from exc
    if msg.modality != config.modality:
        raise ValueError(
            f"manifest modality {msg.modality!r} differs from its config's {config.modality!r}"
        )
    names = [t.name for t in msg.tensors]
    if len(set(names)) != len(names):
        raise ValueError("manifest lists a tensor twice")
    if any(d < 0 for t in msg.tensors for d in t.shape):
        raise ValueError("manifest lists a negative tensor dimension")
    if len(msg.weights_sha256) != 64 or any(
        c not in "0123456789abcdef" for c in msg.weights_sha256
    ):
        raise ValueError("manifest weights_sha256 must be 64 lower-case hex digits")
    if msg.weights_size <= 0:
        raise ValueError(f"manifest weights_size must be positive, got {msg.weights_size}")
    try:
        dp = _dp_from_pb(msg)
    except ValueError as exc:
        raise ValueError(f"manifest dp: {exc}") from exc
    return BlockManifest(
        config=config,
        weights_sha256=msg.weights_sha256,
        weights_size=msg.weights_size,
        tensors={t.name: list(t.shape) for t in msg.tensors},
        dtypes={t.name: t.dtype for t in msg.tensors},
        task_id=msg.task_id,
        site=msg.site,
        train_stats=dict(msg.train_stats),
        code_version=msg.code_version,
        created_at=_iso(msg.created_at),
        dp=dp,
    )


def manifest_from_bytes(data: bytes) -> BlockManifest:
    try:
        msg = pb.BlockManifest.FromString(data)
    except DecodeError as exc:
        raise ValueError(f"manifest is not a valid BlockManifest message: {exc}") from exc
    return manifest_from_pb(msg)


# ---- tasks ------------------------------------------------------------------------------------
def task_to_pb(t: TaskRecord) -> pb.Task:
    return pb.Task(
        task_id=t.task_id,
        kind=t.spec.kind,
        n_bins=t.spec.n_bins if t.spec.kind == "survival" else 0,
        bin_edges=list(t.spec.bin_edges),
        n_classes=t.spec.n_classes if t.spec.kind == "classification" else 0,
        latent_rows=t.latent_rows,
        latent_dim=t.latent_dim,
        fourier=t.fourier,
        init_seed=t.init_seed,
        modalities=list(t.modalities),
        description=t.description,
        created_at=_ts(t.created_at),
        fuse_mode=t.fuse_mode,
        max_block_epsilon=t.max_block_epsilon,
        public_ranges={
            m: pb.PublicRanges(
                all=pb.Range(low=r.all[0], high=r.all[1]) if r.all else None,
                features={f: pb.Range(low=lo, high=hi) for f, (lo, hi) in r.features.items()},
            )
            for m, r in t.public_ranges.items()
        },
    )


def task_from_pb(msg: pb.Task) -> TaskRecord:
    """Raise ``ValueError`` naming what is wrong with a task message."""
    if msg.kind == "survival":
        spec = TaskSpec("survival", n_bins=msg.n_bins, bin_edges=tuple(msg.bin_edges))
    elif msg.kind == "classification":
        spec = TaskSpec("classification", n_classes=msg.n_classes)
    else:
        raise ValueError(f"task kind must be 'survival' or 'classification', got {msg.kind!r}")
    return TaskRecord(
        task_id=msg.task_id,
        spec=spec,
        latent_rows=msg.latent_rows,
        latent_dim=msg.latent_dim,
        fourier=msg.fourier,
        init_seed=msg.init_seed,
        modalities=tuple(msg.modalities),
        description=msg.description,
        created_at=_iso(msg.created_at),
        fuse_mode=msg.fuse_mode or "stack",
        max_block_epsilon=msg.max_block_epsilon,
        public_ranges={
            m: PublicRanges(
                all=(r.all.low, r.all.high) if r.HasField("all") else None,
                features={f: (v.low, v.high) for f, v in r.features.items()},
            )
            for m, r in msg.public_ranges.items()
        },
    )


# ---- blocks, sites, models, uploads -------------------------------------------------------------
def block_to_pb(b: BlockRecord) -> pb.BlockInfo:
    return pb.BlockInfo(
        block_id=b.block_id,
        task_id=b.task_id,
        site=b.site,
        modality=b.modality,
        size=b.size,
        accepted_at=_ts(b.accepted_at),
        state=b.state,
        manifest=pb.SignedManifest(manifest=b.manifest, signature=b.signature),
        signer_certificate=b.signer_certificate,
    )


def block_from_pb(msg: pb.BlockInfo) -> BlockRecord:
    return BlockRecord(
        block_id=msg.block_id,
        task_id=msg.task_id,
        site=msg.site,
        modality=msg.modality,
        size=msg.size,
        accepted_at=_iso(msg.accepted_at),
        state=msg.state,
        manifest=msg.manifest.manifest,
        signature=msg.manifest.signature,
        signer_certificate=msg.signer_certificate,
    )


def site_to_pb(s: SiteRecord) -> pb.Site:
    return pb.Site(
        name=s.name,
        modalities=list(s.modalities),
        paired=s.paired,
        withdrawn=s.withdrawn,
        block_count=s.block_count,
        withdrawn_reason=s.withdrawn_reason,
        first_seen=s.first_seen,
        last_seen=s.last_seen,
    )


def site_from_pb(msg: pb.Site) -> SiteRecord:
    return SiteRecord(
        msg.name,
        tuple(msg.modalities),
        msg.paired,
        msg.withdrawn,
        msg.block_count,
        msg.withdrawn_reason,
        msg.first_seen,
        msg.last_seen,
    )


def model_to_pb(m: ModelRecord) -> pb.ModelVersion:
    return pb.ModelVersion(
        model_id=m.model_id,
        task_id=m.task_id,
        block_ids=list(m.recipe.block_ids),
        recipe=m.recipe.kind,
        parameters=write_recipe(m.recipe, m.settings),
        parent_id=m.parent_id,
        metrics=dict(m.metrics),
        created_at=_ts(m.created_at),
        weights_sha256=m.weights_sha256,
        weights_size=m.weights_size,
        card_json=json.dumps(m.card, sort_keys=True),
        code_version=m.code_version,
    )


def model_from_pb(msg: pb.ModelVersion) -> ModelRecord:
    try:
        card = json.loads(msg.card_json) if msg.card_json else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"model card of {msg.model_id!r} is not valid JSON: {exc}") from exc
    recipe, settings = read_recipe(msg.recipe, msg.block_ids, msg.parameters)
    return ModelRecord(
        model_id=msg.model_id,
        task_id=msg.task_id,
        recipe=recipe,
        settings=settings,
        weights_sha256=msg.weights_sha256,
        weights_size=msg.weights_size,
        card=card,
        created_at=_iso(msg.created_at),
        code_version=msg.code_version,
        parent_id=msg.parent_id,
        metrics=dict(msg.metrics),
    )


def model_to_bytes(m: ModelRecord) -> bytes:
    return model_to_pb(m).SerializeToString(deterministic=True)


def model_outline(data: bytes) -> tuple[str, str, tuple[str, ...]]:
    """(model id, recipe kind, block ids) of a serialized version, without reading its card."""
    msg = pb.ModelVersion.FromString(data)
    return msg.model_id, msg.recipe, tuple(msg.block_ids)


def model_from_bytes(data: bytes) -> ModelRecord:
    try:
        return model_from_pb(pb.ModelVersion.FromString(data))
    except DecodeError as exc:
        raise ValueError(f"not a valid ModelVersion message: {exc}") from exc


def upload_to_pb(u: UploadProgress) -> pb.UploadStatus:
    return pb.UploadStatus(upload_id=u.upload_id, received_bytes=u.received, total_bytes=u.total)


def chunk_from_pb(msg: pb.UploadChunk) -> Chunk | None:
    """A domain chunk, or None for a message with neither header nor data."""
    part = msg.WhichOneof("part")
    if part == "header":
        h = msg.header
        return UploadHeader(h.upload_id, h.manifest.manifest, h.manifest.signature, msg.offset)
    if part == "data":
        return UploadData(msg.data, msg.offset)
    return None


def chunk_to_pb(c: Chunk) -> pb.UploadChunk:
    if isinstance(c, UploadHeader):
        return pb.UploadChunk(
            header=pb.UploadHeader(
                upload_id=c.upload_id,
                manifest=pb.SignedManifest(manifest=c.manifest, signature=c.signature),
            ),
            offset=c.offset,
        )
    return pb.UploadChunk(data=c.data, offset=c.offset)


# ---- federated evaluation ----------------------------------------------------------------------
def candidate_to_pb(c: Candidate) -> epb.Candidate:
    return epb.Candidate(
        candidate_id=c.candidate_id,
        kind=c.kind,
        label=c.label,
        block_ids=list(c.block_ids),
        weights=list(c.weights),
        latent_merge=c.latent_merge,
        head_merge=c.head_merge,
        model_id=c.model_id,
        weights_sha256=c.weights_sha256,
        weights_size=c.weights_size,
        fuse_mode=c.fuse_mode,
        layout=c.layout,
        folds=c.folds,
        groups=list(c.groups),
    )


def candidate_from_pb(msg: epb.Candidate) -> Candidate:
    """Raise ``ValueError`` naming what is wrong with a candidate message."""
    c = Candidate(
        candidate_id=msg.candidate_id,
        kind=msg.kind,
        label=msg.label,
        block_ids=tuple(msg.block_ids),
        weights=tuple(msg.weights),
        latent_merge=msg.latent_merge or DEFAULT_LATENT_MERGE,
        head_merge=msg.head_merge or DEFAULT_HEAD_MERGE,
        model_id=msg.model_id,
        weights_sha256=msg.weights_sha256,
        weights_size=msg.weights_size,
        fuse_mode=msg.fuse_mode,
        layout=msg.layout,
        folds=msg.folds,
        groups=tuple(msg.groups),
    )
    problem = c.problem()
    if problem:
        raise ValueError(problem)
    return c


def job_to_pb(j: EvaluationJob) -> epb.EvaluationJob:
    return epb.EvaluationJob(
        job_id=j.job_id,
        task_id=j.task_id,
        purpose=j.purpose,
        candidates=[candidate_to_pb(c) for c in j.candidates],
        created_at=_ts(j.created_at),
        deadline=_ts(j.deadline),
        stack_points=[epb.StackPoint(weights=list(p)) for p in j.points],
        sites=list(j.sites),
    )


def job_from_pb(msg: epb.EvaluationJob) -> EvaluationJob:
    ids = [c.candidate_id for c in msg.candidates]
    if not ids or len(set(ids)) != len(ids):
        raise ValueError(f"evaluation job {msg.job_id!r} needs candidates with distinct ids")
    job = EvaluationJob(
        msg.job_id,
        msg.task_id,
        msg.purpose,
        tuple(candidate_from_pb(c) for c in msg.candidates),
        _iso(msg.created_at),
        _iso(msg.deadline),
        tuple(tuple(p.weights) for p in msg.stack_points),
        tuple(msg.sites),
    )
    problem = job.problem()
    if problem:
        raise ValueError(f"evaluation job {msg.job_id!r}: {problem}")
    return job


def job_to_bytes(j: EvaluationJob) -> bytes:
    return job_to_pb(j).SerializeToString(deterministic=True)


def job_from_bytes(data: bytes) -> EvaluationJob:
    return job_from_pb(epb.EvaluationJob.FromString(data))


def score_to_pb(candidate_id: str, s: CandidateScore) -> epb.CandidateScore:
    return epb.CandidateScore(
        candidate_id=candidate_id,
        patients=s.patients,
        events=s.events,
        var_metric=s.var_metric,
        var_diff=s.var_diff,
        strata=[
            epb.PairCounts(concordant=p.concordant, discordant=p.discordant, tied=p.tied)
            for p in s.strata
        ],
    )


def score_from_pb(msg: epb.CandidateScore) -> CandidateScore:
    return CandidateScore(
        tuple(PairCounts(p.concordant, p.discordant, p.tied) for p in msg.strata),
        msg.patients,
        msg.events,
        msg.var_metric,
        msg.var_diff,
    )


def score_to_bytes(candidate_id: str, s: CandidateScore) -> bytes:
    return score_to_pb(candidate_id, s).SerializeToString(deterministic=True)


def score_from_bytes(data: bytes) -> CandidateScore:
    return score_from_pb(epb.CandidateScore.FromString(data))


def stack_to_pb(s: StackStats) -> epb.StackStats:
    return epb.StackStats(
        point=s.point,
        fold=s.fold,
        patients=s.patients,
        events=s.events,
        loss=s.loss,
        gradient=list(s.gradient),
        hessian=list(s.hessian),
    )


def stack_from_pb(msg: epb.StackStats) -> StackStats:
    return StackStats(
        msg.point,
        msg.fold,
        msg.patients,
        msg.events,
        msg.loss,
        tuple(msg.gradient),
        tuple(msg.hessian),
    )


def stack_to_bytes(s: StackStats) -> bytes:
    return stack_to_pb(s).SerializeToString(deterministic=True)


def stack_from_bytes(data: bytes) -> StackStats:
    return stack_from_pb(epb.StackStats.FromString(data))


def report_to_pb(r: SiteReport) -> epb.EvaluationReport:
    return epb.EvaluationReport(
        job_id=r.job_id,
        declined=r.declined,
        scores=[score_to_pb(cid, s) for cid, s in sorted(r.scores.items())],
        stack=[stack_to_pb(s) for s in r.stack],
    )


def report_from_pb(msg: epb.EvaluationReport) -> SiteReport:
    """Raise ``ValueError`` when a candidate is scored twice or a decline carries scores."""
    ids = [s.candidate_id for s in msg.scores]
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"the report scores candidate {next(i for i in ids if ids.count(i) > 1)!r} twice"
        )
    if msg.declined and (ids or msg.stack):
        raise ValueError("a report either declines or carries scores, not both")
    if ids and msg.stack:
        raise ValueError("a report carries candidate scores or a stack job's sums, not both")
    if not msg.declined and not ids and not msg.stack:
        raise ValueError("a report carries scores or says why it declines")
    return SiteReport(
        msg.job_id,
        {s.candidate_id: score_from_pb(s) for s in msg.scores},
        msg.declined,
        tuple(stack_from_pb(s) for s in msg.stack),
    )


def status_to_pb(s: JobStatus) -> epb.EvaluationStatus:
    return epb.EvaluationStatus(
        job=job_to_pb(s.job),
        state=s.state,
        delivered=list(s.delivered),
        reported=list(s.reported),
        declined=list(s.declined),
    )


def status_from_pb(msg: epb.EvaluationStatus) -> JobStatus:
    return JobStatus(
        job_from_pb(msg.job),
        msg.state,
        tuple(msg.delivered),
        tuple(msg.reported),
        tuple(msg.declined),
    )


def result_to_pb(candidate: Candidate, r: Consortium) -> epb.CandidateResult:
    return epb.CandidateResult(
        candidate_id=candidate.candidate_id,
        label=candidate.label,
        value=r.value,
        se=r.se,
        diff=r.diff,
        se_diff=r.se_diff,
        sites=list(r.sites),
        patients=r.patients,
    )


def result_from_pb(msg: epb.CandidateResult) -> tuple[str, Consortium]:
    return msg.candidate_id, Consortium(
        msg.value, msg.se, tuple(msg.sites), msg.patients, 0, msg.diff, msg.se_diff
    )


def recommendation_to_pb(r: Recommendation) -> epb.Recommendation:
    return epb.Recommendation(
        task_id=r.task_id,
        model=model_to_pb(r.model),
        metric=r.metric,
        reason=r.reason,
        sites=list(r.sites),
        site=r.site,
    )


def recommendation_from_pb(msg: epb.Recommendation) -> Recommendation:
    return Recommendation(
        msg.task_id, model_from_pb(msg.model), msg.metric, msg.reason, tuple(msg.sites), msg.site
    )


# ---- the admin service ------------------------------------------------------------------------
# The consortium summary is plain data (``coordinator status --json`` prints it); these keep its
# keys, their order, and None for what was not measured, so both sides print the same JSON.
_TASK_KEYS = (
    "task",
    "kind",
    "modalities",
    "fuse_mode",
    "max_block_epsilon",
    "blocks",
    "latest_blocks",
    "versions",
    "latest_version",
    "recommended",
    "recommended_metric",
    "recommended_reason",
)
_VERSION_KEYS = (
    "model",
    "task",
    "recipe",
    "parent",
    "blocks",
    "created_at",
    "rounds",
    "val_metric",
    "sites",
)
_OPTIONAL = ("max_block_epsilon", "recommended_metric", "val_metric")
_LISTS = ("modalities", "sites")


def _summary_to_pb(row: dict[str, Any], cls: Any) -> Any:
    return cls(**{k: v for k, v in row.items() if v is not None})


def _summary_from_pb(msg: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in keys:
        v = getattr(msg, k)
        out[k] = (
            (v if msg.HasField(k) else None) if k in _OPTIONAL else list(v) if k in _LISTS else v
        )
    return out


def consortium_to_pb(status: dict[str, Any]) -> apb.ConsortiumStatus:
    return apb.ConsortiumStatus(
        store=status["store"],
        schema=status["schema"],
        code_version=status["code_version"],
        blob_bytes=status["blob_bytes"],
        open_uploads=status["open_uploads"],
        corrupt_blocks=status["corrupt_blocks"],
        tasks=[_summary_to_pb(t, apb.TaskSummary) for t in status["tasks"]],
        sites=[_summary_to_pb(x, apb.SiteSummary) for x in status["sites"]],
        models=[_summary_to_pb(m, apb.VersionSummary) for m in status["models"]],
    )


def consortium_from_pb(msg: apb.ConsortiumStatus) -> dict[str, Any]:
    sites = [
        {
            "site": x.site,
            "modalities": list(x.modalities),
            "paired": x.paired,
            "state": x.state,
            "blocks": x.blocks,
            "last_seen": x.last_seen,
            **({"withdrawn_reason": x.withdrawn_reason} if x.state == "withdrawn" else {}),
        }
        for x in msg.sites
    ]
    return {
        "store": msg.store,
        "schema": msg.schema,
        "code_version": msg.code_version,
        "blob_bytes": msg.blob_bytes,
        "open_uploads": msg.open_uploads,
        "corrupt_blocks": list(msg.corrupt_blocks),
        "tasks": [_summary_from_pb(t, _TASK_KEYS) for t in msg.tasks],
        "sites": sites,
        "models": [_summary_from_pb(m, _VERSION_KEYS) for m in msg.models],
    }


def fuse_round_to_pb(r: FuseRound) -> apb.FuseRoundInfo:
    validated = math.isfinite(r.value)
    return apb.FuseRoundInfo(
        round=r.round,
        asked=r.asked,
        answered=list(r.answered),
        failed=list(r.failed),
        no_answer=list(r.no_answer),
        patients=r.patients,
        train_loss=r.train_loss,
        seconds=r.seconds,
        validated=validated,
        **(
            {"value": r.value, "parent": r.parent, "diff": r.diff, "se_diff": r.se_diff}
            if validated
            else {}
        ),
    )


def fuse_round_from_pb(msg: apb.FuseRoundInfo) -> FuseRound:
    nan = math.nan
    v = (msg.value, msg.parent, msg.diff, msg.se_diff) if msg.validated else (nan, nan, nan, nan)
    return FuseRound(
        msg.round,
        msg.asked,
        tuple(msg.answered),
        tuple(msg.failed),
        tuple(msg.no_answer),
        msg.patients,
        msg.train_loss,
        msg.seconds,
        *v,
    )


def fuse_run_to_pb(r: FuseRun) -> apb.FuseRunInfo:
    return apb.FuseRunInfo(
        run_key=r.run_key,
        task_id=r.task_id,
        parent_id=r.parent_id,
        started_at=r.started_at,
        finished_at=r.finished_at,
        state=r.state,
        model_id=r.model_id,
        reason=r.reason,
        rounds=[fuse_round_to_pb(x) for x in r.rounds],
    )


def fuse_run_from_pb(msg: apb.FuseRunInfo) -> FuseRun:
    return FuseRun(
        msg.run_key,
        msg.task_id,
        msg.parent_id,
        msg.started_at,
        msg.state,
        msg.finished_at,
        msg.model_id,
        msg.reason,
        tuple(fuse_round_from_pb(x) for x in msg.rounds),
    )
