"""Copies of SQLite files for a backup: a consistent snapshot of a live database, and the
blobs a snapshot of the store references."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .db import referenced_blobs


def snapshot(source: Path, dest: Path) -> None:
    """A consistent copy of a live SQLite database (the online backup API)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def referenced_in(copy: Path) -> set[str]:
    """Every blob a copy of the store's database references (not what the live store names
    now)."""
    con = sqlite3.connect(copy)
    try:
        return referenced_blobs(con)
    finally:
        con.close()
