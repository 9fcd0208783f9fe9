"""What a registry stores, as rows a reader can take in (bytes as their size and hash), and the
difference between two such snapshots: the RPC fuzz names the rows an input changed."""

from __future__ import annotations

import hashlib
import sqlite3

from common.serde import score_from_bytes
from coordinator.config import CoordinatorConfig

Rows = dict[str, frozenset[tuple[object, ...]]]


def _cell(v: object) -> object:
    """A row's value as a reader takes it in: bytes as their size and hash, long text cut."""
    if isinstance(v, bytes | memoryview):
        b = bytes(v)
        return f"<{len(b)} bytes, sha256 {hashlib.sha256(b).hexdigest()[:16]}>"
    if isinstance(v, str) and len(v) > 80:
        return v[:60] + f"...<{len(v)} chars, sha256 {hashlib.sha256(v.encode()).hexdigest()[:16]}>"
    return v


def stored_rows(cfg: CoordinatorConfig) -> Rows:
    """What the registry holds for others to see, as rows: tasks, sites, blocks, model versions
    and blob files (unfinished uploads are kept on purpose, for resuming; the audit log grows on
    purpose; the fuzzing site may answer the open evaluation job once: :func:`reports_kept`)."""
    out: dict[str, frozenset[tuple[object, ...]]] = {}
    with sqlite3.connect(cfg.store / "registry.sqlite") as con:
        for table, sql in (
            ("tasks", "SELECT * FROM tasks"),
            ("sites", "SELECT name, modalities, paired, withdrawn FROM sites"),  # not last_seen
            ("blocks", "SELECT * FROM blocks"),
            ("models", "SELECT * FROM models"),
        ):
            out[table] = frozenset(tuple(_cell(v) for v in r) for r in con.execute(sql))
    root = cfg.store / "blobs"
    out["blobs"] = frozenset(
        (str(p.relative_to(root)), _cell(p.read_bytes()))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    )
    return out


def unasked_changes(before: Rows, after: Rows, created: set[str]) -> list[str]:
    """Rows added ('+') or gone ('-') between two snapshots, but for the tasks that valid
    CreateTask requests among the inputs asked for (exactly those: one row each)."""
    lines = []
    for table in before:
        added, gone = after[table] - before[table], before[table] - after[table]
        if table == "tasks":
            asked = {r for r in added if r[0] in created}
            ids = sorted(str(r[0]) for r in asked)
            if ids == sorted(created):
                added -= asked
            lines += [
                f"? tasks: {t!r} was created (OK) but is not stored" for t in created - set(ids)
            ]
        lines += [f"+ {table}: {r}" for r in sorted(added, key=repr)]
        lines += [f"- {table}: {r}" for r in sorted(gone, key=repr)]
    return lines


def reports_kept(cfg: CoordinatorConfig) -> list[str]:
    """Why the evaluation reports kept cannot be: more than one, one from another job or site,
    or a score that fails the report checks (the fuzzing site may answer job t1-e2 once, since a
    mutated report can be a valid one)."""
    with sqlite3.connect(cfg.store / "registry.sqlite") as con:
        reports = con.execute("SELECT job_id, site FROM eval_reports").fetchall()
        messages = [bytes(m) for (m,) in con.execute("SELECT message FROM eval_scores")]
    problems = [f"report {r} kept" for r in reports if r != ("t1-e2", "hosp-a")]
    if len(reports) > 1:
        problems.append(f"{len(reports)} reports kept: {reports}")
    for m in messages:
        why = score_from_bytes(m).problem(1)
        if why:
            problems.append(f"a kept score cannot be: {why}")
    return problems
