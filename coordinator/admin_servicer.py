"""The Admin servicer: thin, like the registry's. The consortium's summary, fuse runs with their
rounds, and a fuse run whose progress streams to the operator (``mmlego admin fuse``)."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Iterator

import grpc

from common import serde
from common.pb.mmlego.v1 import admin_pb2 as apb
from common.pb.mmlego.v1 import admin_pb2_grpc as apb_grpc
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.records import FuseRun

from . import fuse_run
from .errors import invalid, precondition
from .fuse_rounds import FuseError, NotStored
from .metrics import Metrics
from .operations import status
from .registry import Registry
from .servicer import FuseRunner, fuse_start, no_superlink, streamed, translated

log = logging.getLogger("mmlego.coordinator")
POLL_S = 1.0  # how often a streamed run's record is read for new rounds
MAX_RUNS = 500


class AdminServicer(apb_grpc.AdminServicer):
    def __init__(
        self, registry: Registry, metrics: Metrics, fuse_runner: FuseRunner | None = None
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.fuse_runner = fuse_runner

    @translated
    def GetStatus(
        self, request: apb.GetStatusRequest, context: grpc.ServicerContext
    ) -> apb.ConsortiumStatus:
        return serde.consortium_to_pb(status(self.registry))

    @translated
    def ListFuseRuns(
        self, request: apb.ListFuseRunsRequest, context: grpc.ServicerContext
    ) -> apb.ListFuseRunsResponse:
        if not 0 <= request.limit <= MAX_RUNS:
            raise invalid(f"limit must be 0 (the default, 50) to {MAX_RUNS}, got {request.limit}")
        runs = fuse_run.runs(self.registry.store, request.task_id, request.limit or 50)
        return apb.ListFuseRunsResponse(runs=[serde.fuse_run_to_pb(r) for r in runs])

    @streamed
    def RunFuse(
        self, request: pb.FuseRequest, context: grpc.ServicerContext
    ) -> Iterator[apb.FuseEvent]:
        """The run goes on in a thread of its own; this call relays its lines and its rounds (read
        from the run's record) until it ends. A caller that goes away stops the relaying only."""
        if self.fuse_runner is None:
            raise no_superlink()
        start, runner, key = fuse_start(self.registry, request), self.fuse_runner, uuid.uuid4().hex
        lines: queue.Queue[str | None] = queue.Queue()
        outcome: dict[str, str | BaseException] = {}

        def work() -> None:
            try:
                outcome["model"] = runner(start, lines.put, key)
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc
            finally:
                lines.put(None)

        threading.Thread(target=work, name=f"fuse-{key[:8]}", daemon=True).start()
        sent, done = 0, False
        while not done:
            try:
                line = lines.get(timeout=POLL_S)
            except queue.Empty:
                line = ""
            done = line is None
            if line:
                yield apb.FuseEvent(line=line)
            run = self._run(key)
            for r in run.rounds[sent:] if run is not None else ():
                yield apb.FuseEvent(round=serde.fuse_round_to_pb(r))
                sent += 1
            if not context.is_active():
                log.info("fuse run %s: the operator stopped watching; the run goes on", key[:8])
                return
        error = outcome.get("error")
        if isinstance(error, NotStored):
            self.metrics.fuse_runs.labels("not_stored").inc()
            yield apb.FuseEvent(not_stored=str(error))
            return
        if isinstance(error, FuseError):
            self.metrics.fuse_runs.labels("failed").inc()
            raise precondition(str(error))
        if isinstance(error, BaseException):
            raise error
        self.metrics.fuse_runs.labels("stored").inc()
        yield apb.FuseEvent(stored=serde.model_to_pb(self.registry.model(str(outcome["model"]))))

    def _run(self, key: str) -> FuseRun | None:
        return fuse_run.run(self.registry.store, key)
