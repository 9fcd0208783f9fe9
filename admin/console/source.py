"""What the console reads from: the coordinator's admin calls (an ``AdminClient`` in production, a
fake in tests). Every method may raise ``common.client.CallError``."""

from __future__ import annotations

from typing import Any, Protocol

from common.records import BlockRecord, FuseRun, ModelRecord, SiteRecord, TaskRecord


class ConsoleSource(Protocol):
    def status(self) -> dict[str, Any]: ...

    def tasks(self) -> list[TaskRecord]: ...

    def sites(self) -> list[SiteRecord]: ...

    def blocks(
        self, task_id: str = "", site: str = "", modality: str = "", include_withdrawn: bool = False
    ) -> list[BlockRecord]: ...

    def models(self, task_id: str = "") -> list[ModelRecord]: ...

    def model(self, model_id: str) -> ModelRecord: ...

    def fuse_runs(self, task_id: str = "", limit: int = 50) -> list[FuseRun]: ...
