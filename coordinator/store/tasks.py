"""Tasks: immutable once created, stored as their protobuf message."""

from __future__ import annotations

from common.pb.mmlego.v1 import registry_pb2 as pb
from common.records import TaskRecord
from common.serde import task_from_pb, task_to_pb

from .audit import record_event
from .db import Database


class Tasks:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, task_id: str) -> TaskRecord | None:
        rows = self.db.query("SELECT message FROM tasks WHERE task_id = ?", (task_id,))
        return task_from_pb(pb.Task.FromString(bytes(rows[0][0]))) if rows else None

    def listing(self) -> list[TaskRecord]:
        """Every task, oldest first."""
        rows = self.db.query("SELECT message FROM tasks ORDER BY created_at, task_id")
        return [task_from_pb(pb.Task.FromString(bytes(r[0]))) for r in rows]

    def count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM tasks")[0][0])

    def create(self, task: TaskRecord, actor: str) -> bool:
        """Store a new task; False (nothing written) when its id is taken."""
        raw = task_to_pb(task).SerializeToString(deterministic=True)
        with self.db.tx() as c:
            if c.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task.task_id,)).fetchone():
                return False
            c.execute(
                "INSERT INTO tasks(task_id, message, created_at) VALUES(?,?,?)",
                (task.task_id, raw, task.created_at),
            )
            record_event(c, actor, "task-created", task_id=task.task_id)
        return True
