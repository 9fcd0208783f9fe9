"""An operator's connection to the coordinator from anywhere: the admin kit (admin.toml, the admin
certificate and key, the consortium CA) and the calls of ``mmlego admin`` and the console. Nothing
of the coordinator's host is needed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import serde
from ..client import CallError, RegistryClient, TLSFiles
from ..pb.mmlego.v1 import admin_pb2 as apb
from ..pb.mmlego.v1 import admin_pb2_grpc as apb_grpc
from ..pb.mmlego.v1 import registry_pb2 as pb
from ..records import FuseRound, FuseRun, ModelRecord
from ..tomlconfig import read_toml
from .kitfile import KIT_FILE, AdminToml


@dataclass(frozen=True)
class AdminKit:
    """An operator's kit (``mmlego ca enroll-admin``): who, which coordinator, and the TLS files."""

    name: str
    coordinator: str
    tls: TLSFiles

    @classmethod
    def load(cls, folder: Path, coordinator: str = "") -> AdminKit:
        """The kit in ``folder``; ``ValueError`` naming what is missing or wrong."""
        if not folder.is_dir():
            raise ValueError(
                f"admin kit {folder} is not a folder "
                f"(make one with: mmlego ca enroll-admin NAME --out {folder})"
            )
        raw = read_toml(folder / KIT_FILE, AdminToml)
        tls = TLSFiles(folder / raw.tls.cert, folder / raw.tls.key, folder / raw.tls.ca)
        try:
            tls.check()
        except FileNotFoundError as exc:
            raise ValueError(f"admin kit {folder}: {exc}") from None
        return cls(raw.admin, coordinator or raw.coordinator, tls)


class AdminClient(RegistryClient):
    """The registry's calls plus the admin service (status, fuse runs, a streamed fuse run)."""

    def __init__(self, kit: AdminKit, timeout_s: float = 30.0) -> None:
        super().__init__(kit.coordinator, kit.tls, timeout_s=timeout_s)
        self.kit = kit
        self.admin = apb_grpc.AdminStub(self.channel)

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        if hasattr(self.admin, method):
            import grpc

            try:
                return getattr(self.admin, method)(
                    request, timeout=timeout or self.timeout_s, metadata=self.metadata
                )
            except grpc.RpcError as exc:
                raise CallError.of(exc) from None
        return super().call(method, request, timeout)

    def status(self) -> dict[str, Any]:
        """What ``mmlego coordinator status --json`` prints on the coordinator's host."""
        return serde.consortium_from_pb(self.call("GetStatus", apb.GetStatusRequest()))

    def fuse_runs(self, task_id: str = "", limit: int = 50) -> list[FuseRun]:
        reply = self.call("ListFuseRuns", apb.ListFuseRunsRequest(task_id=task_id, limit=limit))
        return [serde.fuse_run_from_pb(r) for r in reply.runs]

    def run_fuse(
        self, request: pb.FuseRequest, timeout_s: float = 4 * 3600.0
    ) -> Iterator[str | FuseRound | ModelRecord]:
        """Start a fuse run and follow it: progress lines (str) and rounds as they end, then the
        stored version (ModelRecord) or, when none was stored, ``NotStored``. CallError on
        failure."""
        import grpc

        try:
            for event in self.admin.RunFuse(request, timeout=timeout_s, metadata=self.metadata):
                kind = event.WhichOneof("event")
                if kind == "line":
                    yield event.line
                elif kind == "round":
                    yield serde.fuse_round_from_pb(event.round)
                elif kind == "stored":
                    yield serde.model_from_pb(event.stored)
                elif kind == "not_stored":
                    raise NotStored(event.not_stored)
        except grpc.RpcError as exc:
            raise CallError.of(exc) from None


class NotStored(Exception):
    """A fuse run that ended without storing a version (no round beat the parent); the message
    says why."""
