"""Writing key material: private files 0600 from the start, all writes atomic."""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write


def write_private(path: Path, data: bytes) -> None:
    atomic_write(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    atomic_write(path, data, 0o644)
