"""An operator's tools on the coordinator's host: a summary of the store (``coordinator
status``), and a consistent backup of it that a restore checks, file by file, before it is used.

A backup is a folder: ``registry.sqlite`` (SQLite's online backup: a consistent snapshot while
the coordinator serves), every blob that snapshot references (blobs are immutable and named by
their sha256, so copying them after the snapshot is consistent), ``flower-nodes.json`` (which
Flower node is which site), the SuperLink's database when there is one (node key registrations),
and ``backup.json`` listing every file with its size and sha256."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from common.artifacts import sha256_file
from common.fileio import atomic_write
from common.records import utc_now
from common.version import code_version

from .config import CoordinatorConfig
from .flower import NODES_FILE
from .registry import Registry
from .store import SCHEMA_VERSION, Store, referenced_in, snapshot

MANIFEST = "backup.json"


class BackupError(Exception):
    """A backup that cannot be written, or one that must not be restored (named file and reason)."""


def status(registry: Registry) -> dict[str, Any]:
    """Tasks, sites, blocks and model versions of the store, as plain data."""
    store = registry.store
    tasks = []
    every = registry.models()  # newest first, each card read once
    for t in registry.tasks():
        blocks = registry.blocks(t.task_id)
        versions = [m for m in every if m.task_id == t.task_id]
        rec = _recommended(registry, t.task_id) if versions else None
        tasks.append(
            {
                "task": t.task_id,
                "kind": t.spec.kind,
                "modalities": list(t.modalities),
                "fuse_mode": t.fuse_mode,
                "max_block_epsilon": t.max_block_epsilon or None,
                "blocks": len(blocks),
                "latest_blocks": len(store.blocks.latest(t.task_id)),
                "versions": len(versions),
                "latest_version": versions[0].model_id if versions else "",
                "recommended": rec.model.model_id if rec else "",
                "recommended_metric": rec.metric if rec and rec.metric == rec.metric else None,
                "recommended_reason": rec.reason if rec else "",
            }
        )
    sites = [
        {
            "site": s.name,
            "modalities": list(s.modalities),
            "paired": s.paired,
            "state": "withdrawn" if s.withdrawn else "active",
            "blocks": s.block_count,
            "last_seen": s.last_seen,
            **({"withdrawn_reason": s.withdrawn_reason} if s.withdrawn else {}),
        }
        for s in registry.sites()
    ]
    models = [
        {
            "model": m.model_id,
            "task": m.task_id,
            "recipe": m.recipe.kind,
            "parent": m.parent_id,
            "blocks": len(m.block_ids),
            "created_at": m.created_at,
            "rounds": len(m.card.get("fuse", {}).get("rounds", [])),
            "val_metric": m.metrics.get("val_metric"),
            "sites": sorted({b.get("site", "") for b in m.card.get("blocks", [])}),
        }
        for m in every
    ]
    corrupt = store.blocks.corrupt_ids()
    blob_bytes = sum(p.stat().st_size for _, p in store.blobs.all_blobs())
    return {
        "store": str(store.root),
        "schema": SCHEMA_VERSION,
        "code_version": code_version(),
        "blob_bytes": blob_bytes,
        "open_uploads": store.uploads.count(),
        "corrupt_blocks": corrupt,
        "tasks": tasks,
        "sites": sites,
        "models": models,
    }


def _recommended(registry: Registry, task_id: str) -> Any:
    from .errors import RegistryError

    try:
        return registry.recommended(task_id)
    except RegistryError:  # e.g. every version has a withdrawn site's block
        return None


def backup(config: CoordinatorConfig, out: Path) -> dict[str, Any]:
    """Write a backup of the coordinator's store (it may be serving) to the new folder ``out``."""
    db = config.store / "registry.sqlite"
    if not db.is_file():
        raise BackupError(f"{db} does not exist: there is no store to back up at {config.store}")
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} is not empty; give a new folder")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    snapshot(db, tmp / "registry.sqlite")
    store = Store(config.store, recover=False)
    files: dict[str, dict[str, Any]] = {}
    try:
        # what the snapshot names, not what the live store names now
        referenced = referenced_in(tmp / "registry.sqlite")
        for sha in sorted(referenced):
            dest = tmp / "blobs" / sha[:2] / sha
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store.blobs.path(sha), dest)
            if sha256_file(dest) != sha:
                raise BackupError(
                    f"stored blob {sha[:12]} is damaged on the coordinator's disk (its hash "
                    "differs); the backup was not written"
                )
            files[str(dest.relative_to(tmp))] = {"bytes": dest.stat().st_size, "sha256": sha}
    except FileNotFoundError as exc:
        raise BackupError(
            f"a blob the store references is missing: {exc.filename}; the backup was not written"
        ) from None
    finally:
        store.close()
    if (config.store / NODES_FILE).is_file():
        shutil.copyfile(config.store / NODES_FILE, tmp / NODES_FILE)
    link_db = config.flower_home / "superlink" / "superlink.db"
    if link_db.is_file():
        snapshot(link_db, tmp / "superlink.db")
    for p in sorted(tmp.glob("*")):  # the files beside the blobs (hashed above)
        if p.is_file():
            files[p.name] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    manifest = {
        "created_at": utc_now(),
        "code_version": code_version(),
        "schema": SCHEMA_VERSION,
        "blobs": len(referenced),
        "files": files,
    }
    atomic_write(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return manifest


def check_backup(folder: Path) -> dict[str, Any]:
    """The backup's manifest, after every file it lists is found intact (and nothing else is
    there)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise BackupError(f"{folder} is not a backup (no {MANIFEST})") from None
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{folder / MANIFEST} is not a readable backup manifest") from None
    try:
        schema = int(manifest.get("schema", -1))
    except (TypeError, ValueError):
        schema = -1
    if (
        not 1 <= schema <= SCHEMA_VERSION
    ):  # an older schema is migrated when the restored store is opened
        raise BackupError(
            f"the backup has store schema {manifest.get('schema')}; this mmlego reads schemas 1 "
            f"to {SCHEMA_VERSION}"
        )
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    if present != set(files):
        extra, missing = sorted(present - set(files)), sorted(set(files) - present)
        raise BackupError(
            f"the backup in {folder} is incomplete or altered: missing {missing[:5]}, unexpected "
            f"{extra[:5]}"
        )
    for name, meta in files.items():
        if sha256_file(folder / name) != meta["sha256"]:
            raise BackupError(
                f"{folder / name} differs from the backup's manifest (damaged or altered); not "
                "restored"
            )
    return manifest  # type: ignore[no-any-return]


def restore(config: CoordinatorConfig, folder: Path) -> dict[str, Any]:
    """Put a checked backup in place as the coordinator's store (which must not exist or be
    empty: the coordinator is stopped and a damaged store moved aside first). Every file was
    checked against the manifest first; the store is then opened once with recovery and a re-hash
    of every block."""
    manifest = check_backup(folder)
    if config.store.exists() and any(config.store.iterdir()):
        raise BackupError(
            f"the store folder {config.store} is not empty; stop the coordinator and move it "
            "aside first"
        )
    tmp = config.store.with_name(config.store.name + ".restoring")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in manifest["files"]:
        if name == "superlink.db":
            continue
        dest = tmp / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, dest)
    if config.store.exists():
        config.store.rmdir()
    tmp.rename(config.store)
    if "superlink.db" in manifest["files"]:
        link = config.flower_home / "superlink"
        link.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "superlink.db", link / "superlink.db")
    store = Store(config.store, upload_ttl_s=config.upload_ttl_s, verify=True)
    try:
        rec = store.recovery
        assert rec is not None
        if rec.corrupt_blocks:
            raise BackupError(
                f"after the restore {len(rec.corrupt_blocks)} blocks failed their hash check"
            )
        tasks = store.tasks.count()
        versions = store.models.count()
    finally:
        store.close()
    return {
        "tasks": tasks,
        "versions": versions,
        "blobs": manifest["blobs"],
        "blobs_verified": rec.blobs_verified,
        "created_at": manifest["created_at"],
    }
