"""LegoMerge as a service: the latest accepted block of every (site, modality) of a task, merged
with no training into an immutable model version with a model card."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import torch
from cryptography import x509
from safetensors import safe_open

from common.artifacts import sha256_file
from common.artifacts.modelfile import merged_head_weights
from common.lego.merge import HEAD_MERGES, LATENT_MERGES
from common.pki import identity_from_cert
from common.records import BlockRecord, ModelRecord, TaskRecord, utc_now
from common.serde import manifest_from_bytes, model_to_bytes
from common.version import code_version

from .errors import Kind, RegistryError, invalid, not_found, precondition
from .store import Store, write_card

log = logging.getLogger("mmlego.coordinator")


def _signer(b: BlockRecord) -> dict[str, Any]:
    ident = identity_from_cert(x509.load_pem_x509_certificate(b.signer_certificate)) if b.signer_certificate else None
    return {"site": b.site, "certificate_serial": str(ident.serial) if ident else "",
            "signing_key_sha256": hashlib.sha256(ident.signing_key).hexdigest() if ident else ""}


def head_tensors(store: Store, block_id: str) -> dict[str, torch.Tensor]:
    """A stored block's head (``head.*``, prefix removed), after re-checking the blob's hash."""
    path = store.blobs.path(block_id)
    if not path.is_file() or sha256_file(path) != block_id:
        raise RegistryError(Kind.DATA_LOSS, f"stored block {block_id[:12]} is missing or damaged on the coordinator's disk; "
                            "the operator must restore it from backup or withdraw it")
    with safe_open(str(path), framework="pt") as st:  # type: ignore[no-untyped-call]
        return {k[len("head."):]: st.get_tensor(k) for k in st.keys() if k.startswith("head.")}


def task_card(t: TaskRecord) -> dict[str, Any]:
    return {"kind": t.spec.kind, "n_bins": t.spec.n_bins, "bin_edges": list(t.spec.bin_edges), "n_classes": t.spec.n_classes,
            "latent_rows": t.latent_rows, "latent_dim": t.latent_dim, "fourier": t.fourier, "init_seed": t.init_seed,
            "modalities": list(t.modalities)}


def merge_task(store: Store, task_id: str, latent_merge: str = "", head_merge: str = "", actor: str = "operator") -> ModelRecord:
    """Build, store and return a new merge version of ``task_id``."""
    task = store.task(task_id)
    if task is None:
        raise not_found(f"task {task_id!r} does not exist")
    params = {"latent_merge": latent_merge or "harmonic", "head_merge": head_merge or "spherical"}
    for reg, name in ((LATENT_MERGES, params["latent_merge"]), (HEAD_MERGES, params["head_merge"])):
        try:
            reg.get(name)
        except KeyError as exc:
            raise invalid(str(exc.args[0])) from None
    records = store.db.latest_blocks(task_id)
    if not records:
        raise precondition(f"task {task_id!r} has no accepted blocks of sites that are not withdrawn; nothing to merge")
    heads, entries = [], []
    for r in records:
        manifest = manifest_from_bytes(r.manifest)
        heads.append(head_tensors(store, r.block_id))
        entries.append({"block_id": r.block_id, "site": r.site, "modality": r.modality, "size": r.size,
                        "accepted_at": r.accepted_at, "signer": _signer(r), "train_stats": dict(manifest.train_stats),
                        "code_version": manifest.code_version})
    weights = merged_head_weights(heads, params)
    extra = {"task": task_card(task), "blocks": entries}
    record = insert_version(store, task_id, "merge", tuple(r.block_id for r in records), params, weights, extra, actor)
    log.info("merged %d blocks of %s into %s", len(records), task_id, record.model_id,
             extra={"event": "merged", "task": task_id, "model_id": record.model_id, "blocks": len(records), "actor": actor})
    return record


def insert_version(store: Store, task_id: str, recipe: str, block_ids: tuple[str, ...], params: dict[str, str], weights: bytes,
                   card_extra: dict[str, Any], actor: str, parent_id: str = "", metrics: dict[str, float] | None = None) -> ModelRecord:
    """Store ``weights`` as a blob and a new immutable model version of ``task_id`` (id
    ``<task>-v<n>``) with its model card (also written as card.json / card.md for operators)."""
    sha = store.blobs.put_bytes(weights)  # 1. the blob is durable under its hash
    created = utc_now()
    with store.db.tx() as c:  # 2. then the version becomes visible (a crash between: recovery removes the orphan blob)
        if not store.blobs.has(sha):  # a coordinator starting beside this process (a fuse run) swept it as an orphan
            store.blobs.put_bytes(weights)
        n = c.execute("SELECT COUNT(*) FROM models WHERE task_id = ?", (task_id,)).fetchone()[0]
        model_id = f"{task_id}-v{n + 1}"
        card = {"model_id": model_id, "task_id": task_id, "recipe": recipe, "parameters": params, "parent_id": parent_id,
                "created_at": created, "created_by": actor, "code_version": code_version(), "weights_sha256": sha,
                "metrics": dict(metrics or {}), **card_extra}
        record = ModelRecord(model_id=model_id, task_id=task_id, block_ids=block_ids, recipe=recipe, parameters=params,
                             weights_sha256=sha, weights_size=len(weights), card=card, created_at=created,
                             code_version=code_version(), parent_id=parent_id, metrics=dict(metrics or {}))
        c.execute("INSERT INTO models(model_id, task_id, message, weights_sha256, created_at) VALUES(?,?,?,?,?)",
                  (model_id, task_id, model_to_bytes(record), sha, created))
        store.db.event(c, actor, recipe, model_id=model_id, blocks=len(block_ids), parent_id=parent_id)
    write_card(store.models_dir / model_id, card)  # 3. a crash before this: recovery writes them from the record
    return record
