"""Sites as the registry saw them: recorded on their first call, refreshed from their
certificate, withdrawn by an operator (with their blocks)."""

from __future__ import annotations

import json

from common.records import SiteRecord, utc_now

from .audit import record_event
from .db import Database

SITE_SQL = (
    "SELECT s.name, s.modalities, s.paired, s.withdrawn, s.withdrawn_reason, COALESCE(c.n, 0), "
    "s.first_seen, s.last_seen FROM sites s LEFT JOIN (SELECT site, COUNT(*) AS n FROM blocks "
    "WHERE state != 'corrupt' GROUP BY site) c ON c.site = s.name"
)


class Sites:
    def __init__(self, db: Database) -> None:
        self.db = db

    def touch(self, name: str, modalities: tuple[str, ...], paired: bool) -> None:
        """Record a site the first time it calls; refresh what its certificate says later."""
        now = utc_now()
        with self.db.tx() as c:
            c.execute(
                "INSERT INTO sites(name, modalities, paired, first_seen, last_seen) "
                "VALUES(?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "modalities=excluded.modalities, paired=excluded.paired, "
                "last_seen=excluded.last_seen",
                (name, json.dumps(list(modalities)), int(paired), now, now),
            )

    def get(self, name: str) -> SiteRecord | None:
        rows = self.listing(name)
        return rows[0] if rows else None

    def listing(self, name: str | None = None) -> list[SiteRecord]:
        """Every site by name (or the one named), with its blocks that are not corrupt."""
        rows = self.db.query(
            SITE_SQL + (" WHERE s.name = ?" if name else "") + " ORDER BY s.name",
            (name,) if name else (),
        )
        return [
            SiteRecord(
                r[0], tuple(json.loads(r[1])), bool(r[2]), bool(r[3]), int(r[5]), r[4], r[6], r[7]
            )
            for r in rows
        ]

    def withdraw(self, name: str, reason: str, actor: str) -> SiteRecord | None:
        """Withdraw a site and its accepted blocks in one transaction; None (nothing written)
        when no site of that name has called."""
        with self.db.tx() as c:
            if not c.execute("SELECT 1 FROM sites WHERE name = ?", (name,)).fetchone():
                return None
            c.execute(
                "UPDATE sites SET withdrawn = 1, withdrawn_reason = ? WHERE name = ?",
                (reason, name),
            )
            c.execute(
                "UPDATE blocks SET state = 'withdrawn' WHERE site = ? AND state = 'accepted'",
                (name,),
            )
            record_event(c, actor, "site-withdrawn", site=name, reason=reason)
        return self.get(name)
