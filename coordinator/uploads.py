"""Receiving a block: the header is checked before any weights are read (signature, site,
modality, task, shapes, size); chunks are appended at their offset to a partial file while the
bytes are hashed and checked (safetensors header, names/shapes/dtypes, finiteness); a complete
file whose hash matches the signed manifest is fsynced, renamed into the blob store, and only then
recorded. A broken stream can be resumed from the bytes held."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError, safe_open

from common.artifacts import BlockManifest, IntegrityError, SignatureError, check_manifest, verify
from common.artifacts.streamcheck import StreamCheck
from common.client.connect import CHUNK_BYTES
from common.pki import Identity
from common.records import (
    BlockRecord,
    Chunk,
    TaskRecord,
    UploadData,
    UploadHeader,
    UploadProgress,
    utc_now,
)
from common.serde import manifest_from_bytes

from .errors import (
    Kind,
    RegistryError,
    as_invalid,
    forbidden,
    invalid,
    not_found,
    precondition,
)
from .store import OpenUpload, Store, fsync_dir

log = logging.getLogger("mmlego.coordinator")

MANIFEST_MAX = 1 << 20
UPLOAD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _key(site: str, upload_id: str) -> str:
    return hashlib.sha256(f"{site}\0{upload_id}".encode()).hexdigest()


def check_safetensors_header(path: Path) -> None:
    """safetensors' own parser accepts the file (header and offsets; the data is not read)."""
    try:
        with safe_open(str(path), framework="pt") as st:  # type: ignore[no-untyped-call]
            st.keys()
    except (SafetensorError, ValueError, RuntimeError, OSError) as exc:
        raise IntegrityError(f"weights are not a valid safetensors file: {exc}") from exc


class Uploads:
    def __init__(self, store: Store, max_block_bytes: int, max_open_per_site: int) -> None:
        self.store = store
        self.max_block_bytes = max_block_bytes
        self.max_open_per_site = max_open_per_site
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    # ---- header checks, before any weights are read ------------------------------------------
    def task(self, task_id: str) -> TaskRecord:
        task = self.store.task(task_id)
        if task is None:
            raise not_found(
                f"task {task_id!r} does not exist; ask the operator to create it "
                "(mmlego coordinator task create)"
            )
        return task

    def check_header(self, site: Identity, h: UploadHeader) -> BlockManifest:
        if not UPLOAD_ID_RE.match(h.upload_id):
            raise invalid(
                "upload_id must be 1-128 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit"
            )
        if len(h.manifest) > MANIFEST_MAX:
            raise invalid(f"manifest is {len(h.manifest)} bytes; the limit is {MANIFEST_MAX}")
        try:
            verify(h.manifest, h.signature, site.signing_key)
        except SignatureError as exc:
            raise RegistryError(
                Kind.UNAUTHENTICATED, f"{exc}; re-sign the block with your kit's signing.key"
            ) from None
        with as_invalid():
            m = manifest_from_bytes(h.manifest)
        if m.site != site.name:
            raise forbidden(f"the manifest names site {m.site!r}, but the caller is {site.name!r}")
        if m.modality not in site.modalities:
            raise forbidden(
                f"site {site.name!r} is enrolled for {list(site.modalities)}, not for modality "
                f"{m.modality!r}"
            )
        record = self.store.sites.get(site.name)
        if record is not None and record.withdrawn:
            raise precondition(
                f"site {site.name!r} was withdrawn from the consortium; it may not upload blocks"
            )
        task = self.task(m.task_id)
        with as_invalid():  # IntegrityError included
            task.check_block(m.config)
            check_manifest(m)
        if task.max_block_epsilon > 0:
            if m.dp is None:
                raise precondition(
                    f"task {task.task_id!r} accepts only blocks trained with differential privacy "
                    f"at epsilon <= {task.max_block_epsilon:g}; this block has no DP accounting "
                    "(set [privacy] block_epsilon in site.toml and train again)"
                )
            if m.dp.epsilon > task.max_block_epsilon:
                raise precondition(
                    f"task {task.task_id!r} accepts blocks at epsilon <= "
                    f"{task.max_block_epsilon:g}; this block spent epsilon {m.dp.epsilon:g} "
                    f"(delta {m.dp.delta:.3g})"
                )
        if m.weights_size > self.max_block_bytes:
            raise RegistryError(
                Kind.EXHAUSTED,
                f"block is {m.weights_size} bytes; this coordinator accepts at most "
                f"{self.max_block_bytes} bytes",
            )
        return m

    # ---- the stream --------------------------------------------------------------------------
    def status(self, site: Identity, upload_id: str) -> UploadProgress:
        row = self.store.uploads.get(site.name, upload_id)
        if row is None:
            raise not_found(
                f"no unfinished upload {upload_id!r} of site {site.name!r}; start it from offset 0"
            )
        part = self.store.blobs.partial(row.key)
        return UploadProgress(upload_id, part.stat().st_size if part.is_file() else 0, row.total)

    def receive(
        self, site: Identity, signer_cert: bytes, chunks: Iterator[Chunk]
    ) -> tuple[BlockRecord, bool]:
        """Consume one upload stream; returns (block, already_present)."""
        first = next(chunks, None)
        if not isinstance(first, UploadHeader):
            raise invalid(
                "an upload stream must start with a header (upload_id and signed manifest)"
            )
        m = self.check_header(site, first)
        existing = self.store.blocks.get(m.weights_sha256)
        if existing is not None:
            if existing.site != site.name:
                raise RegistryError(
                    Kind.EXISTS,
                    f"a block with these weights was already uploaded by site {existing.site!r}",
                )
            if existing.state == "accepted":
                return existing, True
        key = _key(site.name, first.upload_id)
        with self._lock:
            if key in self._busy:
                raise RegistryError(
                    Kind.ABORTED,
                    f"upload {first.upload_id!r} is already being received on another stream",
                )
            self._busy.add(key)
        try:
            return self._receive(site, signer_cert, first, m, key, chunks)
        finally:
            with self._lock:
                self._busy.discard(key)

    def _open(self, site: Identity, h: UploadHeader, m: BlockManifest, key: str) -> int:
        """Create or resume the upload record; returns the bytes already held."""
        uploads, part = self.store.uploads, self.store.blobs.partial(key)
        row = uploads.get(site.name, h.upload_id)
        if row is not None and (row.manifest != h.manifest or row.signature != h.signature):
            raise precondition(
                f"upload id {h.upload_id!r} was opened with another manifest; use a new upload id"
            )
        if row is None:
            if uploads.count(site.name) >= self.max_open_per_site:
                raise RegistryError(
                    Kind.EXHAUSTED,
                    f"site {site.name!r} has {self.max_open_per_site} unfinished uploads; "
                    "finish or let them expire first",
                )
            uploads.start(
                OpenUpload(
                    site.name,
                    h.upload_id,
                    key,
                    h.manifest,
                    h.signature,
                    m.weights_sha256,
                    m.weights_size,
                    time.time(),
                )
            )
            part.unlink(missing_ok=True)
        held = part.stat().st_size if part.is_file() else 0
        if h.offset != held:
            raise precondition(
                f"upload {h.upload_id!r}: the coordinator holds {held} bytes; resume from offset "
                f"{held}, not {h.offset}"
            )
        return held

    def _receive(
        self,
        site: Identity,
        signer_cert: bytes,
        h: UploadHeader,
        m: BlockManifest,
        key: str,
        chunks: Iterator[Chunk],
    ) -> tuple[BlockRecord, bool]:
        held = self._open(site, h, m, key)
        part = self.store.blobs.partial(key)
        digest, check = hashlib.sha256(), StreamCheck(m)
        try:
            with open(part, "r+b" if part.exists() else "w+b") as f:
                remaining = held  # a resumed upload: hash and check what is already held
                while remaining:
                    buf = f.read(min(remaining, 8 << 20))
                    if not buf:
                        raise precondition(
                            f"upload {h.upload_id!r}: the partial file shrank; resume from offset 0"
                        )
                    digest.update(buf)
                    check.feed(buf)
                    remaining -= len(buf)
                f.seek(held)
                f.truncate()
                try:
                    for c in chunks:
                        if not isinstance(c, UploadData):
                            raise invalid("only the first message of an upload may carry a header")
                        if len(c.data) > CHUNK_BYTES:
                            raise invalid(
                                f"chunk of {len(c.data)} bytes; the limit is {CHUNK_BYTES}"
                            )
                        if c.offset != held:
                            raise invalid(
                                f"chunk at offset {c.offset}, expected {held}: send chunks in "
                                "order, without gaps"
                            )
                        if held + len(c.data) > m.weights_size:
                            raise invalid(
                                f"more bytes than the manifest announced ({m.weights_size})"
                            )
                        f.write(c.data)
                        digest.update(c.data)
                        check.feed(c.data)
                        held += len(c.data)
                finally:
                    f.flush()
                    os.fsync(f.fileno())  # what was received is durable, also when the stream broke
        except IntegrityError as exc:
            self._discard(key, part)
            raise invalid(f"{exc}; the upload was discarded") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise RegistryError(
                    Kind.EXHAUSTED, "the coordinator's disk is full; try again later"
                ) from None
            raise
        if held < m.weights_size:
            raise precondition(
                f"upload {h.upload_id!r} is incomplete: {held} of {m.weights_size} bytes received; "
                f"resume from offset {held}"
            )
        return self._accept(site, signer_cert, h, m, key, part, digest.hexdigest(), check)

    def _discard(self, key: str, part: Path) -> None:
        part.unlink(missing_ok=True)
        self.store.uploads.delete(key)

    def _accept(
        self,
        site: Identity,
        signer_cert: bytes,
        h: UploadHeader,
        m: BlockManifest,
        key: str,
        part: Path,
        digest: str,
        check: StreamCheck,
    ) -> tuple[BlockRecord, bool]:
        try:
            if digest != m.weights_sha256:
                raise IntegrityError(
                    f"weights sha256 {digest[:16]}... does not match the signed manifest's "
                    f"{m.weights_sha256[:16]}..."
                )
            check.finish()
            check_safetensors_header(part)
        except IntegrityError as exc:
            self._discard(key, part)
            kind = Kind.DATA_LOSS if "sha256" in str(exc) else Kind.INVALID
            raise RegistryError(
                kind, f"{exc}; the upload was discarded, send the block again"
            ) from None
        self.store.blobs.adopt(part, m.weights_sha256)  # 1. the blob is durable under its hash
        record = BlockRecord(
            m.weights_sha256,
            m.task_id,
            site.name,
            m.modality,
            m.weights_size,
            utc_now(),
            "accepted",
            h.manifest,
            h.signature,
            signer_cert,
        )
        # 2. then the record becomes visible, atomically with the upload's end
        self.store.blocks.accept(record, key)
        fsync_dir(self.store.blobs.partials)
        log.info(
            "accepted block %s from %s (%s, %d bytes)",
            record.block_id[:12],
            site.name,
            record.modality,
            record.size,
            extra={
                "event": "block-accepted",
                "site": site.name,
                "modality": record.modality,
                "block_id": record.block_id,
                "bytes": record.size,
            },
        )
        return self.store.blocks.get(record.block_id) or record, False
