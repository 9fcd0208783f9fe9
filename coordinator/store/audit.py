"""The audit log: one event per change, written in the change's own transaction."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from common.records import utc_now


def record_event(c: sqlite3.Connection, actor: str, action: str, **detail: Any) -> None:
    c.execute(
        "INSERT INTO events(at, actor, action, detail) VALUES(?,?,?,?)",
        (utc_now(), actor, action, json.dumps(detail, sort_keys=True)),
    )
