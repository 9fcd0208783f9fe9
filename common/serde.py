"""The one place that converts between protobuf messages (common.pb) and our dataclasses."""

from __future__ import annotations

import datetime as dt
import json

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from .artifacts.manifest import BlockManifest
from .lego.config import BlockConfig
from .pb.mmlego.v1 import registry_pb2 as pb
from .records import BlockRecord, Chunk, ModelRecord, SiteRecord, TaskRecord, UploadData, UploadHeader, UploadProgress
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
        task_id=m.task_id, site=m.site, modality=m.config.modality,
        config_json=json.dumps(m.config.to_dict(), sort_keys=True),
        tensors=[pb.TensorSpec(name=k, shape=list(v), dtype=m.dtypes.get(k, "")) for k, v in sorted(m.tensors.items())],
        train_stats=dict(m.train_stats), code_version=m.code_version, created_at=_ts(m.created_at),
        weights_sha256=m.weights_sha256, weights_size=m.weights_size)


def manifest_to_bytes(m: BlockManifest) -> bytes:
    return manifest_to_pb(m).SerializeToString(deterministic=True)


def manifest_from_pb(msg: pb.BlockManifest) -> BlockManifest:
    """Raise ``ValueError`` naming what is wrong with a manifest message."""
    try:
        config = BlockConfig.from_dict(json.loads(msg.config_json))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"manifest config_json is not a valid block configuration: {exc}") from exc
    if msg.modality != config.modality:
        raise ValueError(f"manifest modality {msg.modality!r} differs from its config's {config.modality!r}")
    names = [t.name for t in msg.tensors]
    if len(set(names)) != len(names):
        raise ValueError("manifest lists a tensor twice")
    if any(d < 0 for t in msg.tensors for d in t.shape):
        raise ValueError("manifest lists a negative tensor dimension")
    if len(msg.weights_sha256) != 64 or any(c not in "0123456789abcdef" for c in msg.weights_sha256):
        raise ValueError("manifest weights_sha256 must be 64 lower-case hex digits")
    if msg.weights_size <= 0:
        raise ValueError(f"manifest weights_size must be positive, got {msg.weights_size}")
    return BlockManifest(config=config, weights_sha256=msg.weights_sha256, weights_size=msg.weights_size,
                         tensors={t.name: list(t.shape) for t in msg.tensors}, dtypes={t.name: t.dtype for t in msg.tensors},
                         task_id=msg.task_id, site=msg.site, train_stats=dict(msg.train_stats), code_version=msg.code_version,
                         created_at=_iso(msg.created_at))


def manifest_from_bytes(data: bytes) -> BlockManifest:
    try:
        msg = pb.BlockManifest.FromString(data)
    except DecodeError as exc:
        raise ValueError(f"manifest is not a valid BlockManifest message: {exc}") from exc
    return manifest_from_pb(msg)


# ---- tasks ------------------------------------------------------------------------------------
def task_to_pb(t: TaskRecord) -> pb.Task:
    return pb.Task(task_id=t.task_id, kind=t.spec.kind, n_bins=t.spec.n_bins if t.spec.kind == "survival" else 0,
                   bin_edges=list(t.spec.bin_edges), n_classes=t.spec.n_classes if t.spec.kind == "classification" else 0,
                   latent_rows=t.latent_rows, latent_dim=t.latent_dim, fourier=t.fourier, init_seed=t.init_seed,
                   modalities=list(t.modalities), description=t.description, created_at=_ts(t.created_at),
                   fuse_mode=t.fuse_mode)


def task_from_pb(msg: pb.Task) -> TaskRecord:
    """Raise ``ValueError`` naming what is wrong with a task message."""
    if msg.kind == "survival":
        spec = TaskSpec("survival", n_bins=msg.n_bins, bin_edges=tuple(msg.bin_edges))
    elif msg.kind == "classification":
        spec = TaskSpec("classification", n_classes=msg.n_classes)
    else:
        raise ValueError(f"task kind must be 'survival' or 'classification', got {msg.kind!r}")
    return TaskRecord(task_id=msg.task_id, spec=spec, latent_rows=msg.latent_rows, latent_dim=msg.latent_dim,
                      fourier=msg.fourier, init_seed=msg.init_seed, modalities=tuple(msg.modalities),
                      description=msg.description, created_at=_iso(msg.created_at), fuse_mode=msg.fuse_mode or "stack")


# ---- blocks, sites, models, uploads -------------------------------------------------------------
def block_to_pb(b: BlockRecord) -> pb.BlockInfo:
    return pb.BlockInfo(block_id=b.block_id, task_id=b.task_id, site=b.site, modality=b.modality, size=b.size,
                        accepted_at=_ts(b.accepted_at), state=b.state,
                        manifest=pb.SignedManifest(manifest=b.manifest, signature=b.signature),
                        signer_certificate=b.signer_certificate)


def block_from_pb(msg: pb.BlockInfo) -> BlockRecord:
    return BlockRecord(block_id=msg.block_id, task_id=msg.task_id, site=msg.site, modality=msg.modality, size=msg.size,
                       accepted_at=_iso(msg.accepted_at), state=msg.state, manifest=msg.manifest.manifest,
                       signature=msg.manifest.signature, signer_certificate=msg.signer_certificate)


def site_to_pb(s: SiteRecord) -> pb.Site:
    return pb.Site(name=s.name, modalities=list(s.modalities), paired=s.paired, withdrawn=s.withdrawn,
                   block_count=s.block_count, withdrawn_reason=s.withdrawn_reason)


def site_from_pb(msg: pb.Site) -> SiteRecord:
    return SiteRecord(msg.name, tuple(msg.modalities), msg.paired, msg.withdrawn, msg.block_count, msg.withdrawn_reason)


def model_to_pb(m: ModelRecord) -> pb.ModelVersion:
    return pb.ModelVersion(model_id=m.model_id, task_id=m.task_id, block_ids=list(m.block_ids), recipe=m.recipe,
                           parameters=dict(m.parameters), parent_id=m.parent_id, metrics=dict(m.metrics),
                           created_at=_ts(m.created_at), weights_sha256=m.weights_sha256, weights_size=m.weights_size,
                           card_json=json.dumps(m.card, sort_keys=True), code_version=m.code_version)


def model_from_pb(msg: pb.ModelVersion) -> ModelRecord:
    try:
        card = json.loads(msg.card_json) if msg.card_json else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"model card of {msg.model_id!r} is not valid JSON: {exc}") from exc
    return ModelRecord(model_id=msg.model_id, task_id=msg.task_id, block_ids=tuple(msg.block_ids), recipe=msg.recipe,
                       parameters=dict(msg.parameters), weights_sha256=msg.weights_sha256, weights_size=msg.weights_size,
                       card=card, created_at=_iso(msg.created_at), code_version=msg.code_version, parent_id=msg.parent_id,
                       metrics=dict(msg.metrics))


def model_to_bytes(m: ModelRecord) -> bytes:
    return model_to_pb(m).SerializeToString(deterministic=True)


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
        return pb.UploadChunk(header=pb.UploadHeader(upload_id=c.upload_id,
                                                     manifest=pb.SignedManifest(manifest=c.manifest, signature=c.signature)),
                              offset=c.offset)
    return pb.UploadChunk(data=c.data, offset=c.offset)
