"""How many rows the store holds, by state: what the metrics endpoint reports at every scrape."""

from __future__ import annotations

from .db import Database
from .records import StoreCounts


def counts(db: Database) -> StoreCounts:
    return StoreCounts(
        tasks=int(db.query("SELECT COUNT(*) FROM tasks")[0][0]),
        sites={
            bool(w): int(n)
            for w, n in db.query("SELECT withdrawn, COUNT(*) FROM sites GROUP BY withdrawn")
        },
        blocks={
            str(s): int(n) for s, n in db.query("SELECT state, COUNT(*) FROM blocks GROUP BY state")
        },
        open_uploads=int(db.query("SELECT COUNT(*) FROM uploads")[0][0]),
        evaluations={
            str(s): int(n)
            for s, n in db.query("SELECT state, COUNT(*) FROM evaluations GROUP BY state")
        },
    )
