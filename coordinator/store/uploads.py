"""Unfinished uploads: the record that lets a broken stream resume (its bytes are a partial file
of the blob store)."""

from __future__ import annotations

from typing import Any

from .db import Database
from .records import OpenUpload

UPLOAD_COLS = "site, upload_id, key, manifest, signature, block_id, total, started_at"


def _upload(r: tuple[Any, ...]) -> OpenUpload:
    return OpenUpload(r[0], r[1], r[2], bytes(r[3]), bytes(r[4]), r[5], int(r[6]), float(r[7]))


class OpenUploads:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, site: str, upload_id: str) -> OpenUpload | None:
        rows = self.db.query(
            f"SELECT {UPLOAD_COLS} FROM uploads WHERE site = ? AND upload_id = ?",
            (site, upload_id),
        )
        return _upload(rows[0]) if rows else None

    def listing(self, site: str | None = None) -> list[OpenUpload]:
        """Unfinished uploads (of ``site``)."""
        sql = f"SELECT {UPLOAD_COLS} FROM uploads" + (" WHERE site = ?" if site else "")
        return [_upload(r) for r in self.db.query(sql, (site,) if site else ())]

    def count(self, site: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM uploads" + (" WHERE site = ?" if site else "")
        return int(self.db.query(sql, (site,) if site else ())[0][0])

    def start(self, upload: OpenUpload) -> None:
        with self.db.tx() as c:
            c.execute(
                f"INSERT INTO uploads({UPLOAD_COLS}) VALUES(?,?,?,?,?,?,?,?)",
                (
                    upload.site,
                    upload.upload_id,
                    upload.key,
                    upload.manifest,
                    upload.signature,
                    upload.block_id,
                    upload.total,
                    upload.started_at,
                ),
            )

    def delete(self, key: str) -> None:
        with self.db.tx() as c:
            c.execute("DELETE FROM uploads WHERE key = ?", (key,))
