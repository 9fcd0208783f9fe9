"""A content-addressed blob folder: ``blobs/ab/<sha256>``. Blobs enter only by an atomic rename
of a complete, fsynced file; a blob's name is the hash of its bytes."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from common.artifacts import sha256_file
from common.fileio import atomic_write

SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.partials = root / "uploads"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.partials.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        if not SHA_RE.match(sha):
            raise ValueError(f"not a sha256: {sha[:80]!r}")
        return self.blobs / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def adopt(self, tmp: Path, sha: str) -> Path:
        """Move a complete, fsynced file in as blob ``sha`` (the caller checked the hash)."""
        dest = self.path(sha)
        dest.parent.mkdir(exist_ok=True)
        if dest.is_file() and sha256_file(dest) == sha:
            tmp.unlink()  # the same bytes are already stored
        else:
            os.replace(tmp, dest)  # new, or replacing a damaged copy (a re-upload repairs it)
            fsync_dir(dest.parent)
        return dest

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has(sha):
            dest = self.path(sha)
            atomic_write(dest, data)
            fsync_dir(dest.parent)
        return sha

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def partial(self, key: str) -> Path:
        """File of an unfinished upload; ``key`` is a hex digest of (site, upload id)."""
        return self.partials / f"{key}.part"

    def all_blobs(self) -> Iterator[tuple[str, Path]]:
        for p in self.blobs.glob("*/*"):
            yield p.name, p

    def verify(self, sha: str) -> bool:
        p = self.path(sha)
        return p.is_file() and sha256_file(p) == sha

    def remove_temporaries(self) -> int:
        """Delete leftovers of interrupted atomic writes (``.name.xxxx`` files)."""
        n = 0
        for p in list(self.blobs.glob("*/.*")) + list(self.blobs.glob(".*")):
            p.unlink(missing_ok=True)
            n += 1
        return n
