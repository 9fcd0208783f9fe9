"""The BlockRegistry servicer: thin. It takes the caller from the auth interceptor, converts
messages with :mod:`common.serde`, calls :class:`~coordinator.registry.Registry`, and maps domain
errors to status codes (unknown errors become INTERNAL; details go to the log)."""

from __future__ import annotations

import errno
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from common import serde
from common.fuse import FuseConfig
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.pb.mmlego.v1 import registry_pb2_grpc as pb_grpc
from common.records import Chunk

from .auth import Authenticator, caller, status_of
from .errors import Kind, RegistryError, as_invalid, invalid, precondition
from .fuse_rounds import FuseError, NotStored
from .fusing import check_fuse_start
from .metrics import Metrics
from .registry import Registry
from .store import is_locked

log = logging.getLogger("mmlego.coordinator")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class FuseStart:
    """A LegoFuse run an operator asked for (the Fuse and RunFuse calls)."""

    model_id: str
    config: FuseConfig
    deadline_s: float  # seconds the sites get to score each round (0: no scoring asked of them)
    # sites taking part to wait for (config.sites: paired ones, or all with one of the model's
    # modalities; 0: the coordinator's [flower] setting)
    expect_paired: int = 0
    unvalidated: bool = False


# Runs a fuse on the SuperLink and waits: (what, progress lines, the run's key) -> the new version's
# id; NotStored when no round was kept, FuseError when the run failed.
FuseRunner = Callable[[FuseStart, Callable[[str], None], str], str]


def fuse_start(registry: Registry, request: pb.FuseRequest) -> FuseStart:
    """What a FuseRequest asks for, checked: the parent is a merge or ensemble version; the
    settings default to the task's fuse mode and :class:`FuseConfig`'s defaults."""
    parent = registry.model(request.model_id)
    check_fuse_start(parent)
    if request.expect_paired < 0:
        raise invalid(f"expect_paired must be >= 0, got {request.expect_paired}")
    d = FuseConfig()
    with as_invalid():
        cfg = FuseConfig(
            mode=request.mode or registry.task(parent.task_id).fuse_mode,
            rounds=request.rounds or d.rounds,
            epochs=request.epochs or d.epochs,
            lr=request.lr or d.lr,
            proximal_mu=request.proximal_mu,
            patience=request.patience or d.patience,
            folds=-1 if request.folds == 0 else max(0, request.folds),
            sites=request.sites or d.sites,
            sites_per_round=request.sites_per_round,
        )
    deadline = (
        0.0
        if request.unvalidated or not registry.evaluating
        else registry.evaluations.deadline(request.deadline_s)
    )
    return FuseStart(parent.model_id, cfg, deadline, request.expect_paired, request.unvalidated)


PAGE_BYTES = 1 << 20  # a ListBlocks reply stays under this (the message limit is 2 MiB)
# a call that waits for the sites answers this long before the caller's own deadline
CALL_MARGIN_S = 10.0


def no_superlink() -> RegistryError:
    return RegistryError(
        Kind.UNIMPLEMENTED,
        "this coordinator has no Flower SuperLink configured for LegoFuse rounds",
    )


def call_deadline(registry: Registry, asked_s: float, context: grpc.ServicerContext) -> float:
    """Seconds a call may wait for the sites' scores: what was asked (0: the coordinator's
    default, never more than it), and never past the caller's own gRPC deadline."""
    wait = registry.evaluations.deadline(asked_s)
    remaining = context.time_remaining()
    if remaining is not None and wait > 0:
        wait = max(0.5, min(wait, remaining - CALL_MARGIN_S))
    return wait


def _abort(context: grpc.ServicerContext, method: str, exc: Exception, metrics: Metrics) -> None:
    """Map ``exc`` to a status and abort (raises). Servicer methods never abort themselves."""
    if isinstance(exc, RegistryError):
        log.info(
            "%s refused (%s): %s",
            method,
            exc.kind.value,
            exc.message,
            extra={"event": "refused", "method": method, "reason": exc.kind.value},
        )
        metrics.refused(method, exc.kind.value)
        context.abort(status_of(exc.kind), exc.message)
    if is_locked(exc):
        log.warning("%s: the registry database is locked: %s", method, exc)
        context.abort(
            grpc.StatusCode.UNAVAILABLE,
            "the registry's database is locked (by another process?); nothing was "
            "stored; try again later",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        log.error("%s: the store's disk is full: %s", method, exc)
        context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED, "the coordinator's disk is full; nothing was stored"
        )
    if not context.is_active():
        log.info("%s: the client went away (%s)", method, type(exc).__name__)
        context.abort(grpc.StatusCode.CANCELLED, "the call was cancelled")
    log.exception("%s failed", method)
    context.abort(
        grpc.StatusCode.INTERNAL,
        f"{method} failed inside the coordinator; the operator finds the cause in its log",
    )


def _timed(metrics: Metrics, method: str, started: float, context: grpc.ServicerContext) -> None:
    code = context.code() or grpc.StatusCode.OK  # set by an abort
    metrics.rpc_seconds.labels(
        method, code.name if isinstance(code, grpc.StatusCode) else str(code)
    ).observe(time.perf_counter() - started)


def translated(fn: F) -> F:
    """Run a unary-response handler; domain errors become their status code; timed by status."""

    @functools.wraps(fn)
    def inner(self: BlockRegistryServicer, request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            return fn(self, request, context)
        except Exception as exc:
            _abort(context, fn.__name__, exc, self.metrics)
        finally:
            _timed(self.metrics, fn.__name__, started, context)

    return inner  # type: ignore[return-value]


def streamed(fn: F) -> F:
    """Like :func:`translated` for a server-streaming handler (a generator)."""

    @functools.wraps(fn)
    def inner(
        self: BlockRegistryServicer, request: Any, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            _abort(context, fn.__name__, exc, self.metrics)
        finally:
            _timed(self.metrics, fn.__name__, started, context)

    return inner  # type: ignore[return-value]


def page_of(page_size: int, page_token: str) -> tuple[int, int | None]:
    """(items per page, the sequence number to list below) of a paged list call."""
    if page_size < 0:
        raise invalid(f"page_size must be >= 0, got {page_size}")
    try:
        return min(1000, page_size or 100), int(page_token) if page_token else None
    except ValueError:
        raise invalid("page_token is not one this registry gave out") from None


def fill_page(page: Any, rows: list[tuple[int, Any]], size: int) -> str:
    """Append up to ``size`` of ``rows`` (seq, message) to ``page`` while it stays under
    PAGE_BYTES (at least one: a reply stays well under the message limit); the next page's token."""
    used, last = 0, None
    for seq, msg in rows[:size]:
        if len(page) and used + msg.ByteSize() > PAGE_BYTES:
            break
        page.append(msg)
        used += msg.ByteSize()
        last = seq
    return str(last) if len(page) < len(rows) and last is not None else ""


class BlockRegistryServicer(pb_grpc.BlockRegistryServicer):
    def __init__(
        self,
        registry: Registry,
        auth: Authenticator,
        insecure: bool,
        fuse_runner: FuseRunner | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.registry = registry
        self.auth = auth
        self.insecure = insecure
        self.metrics = metrics or Metrics(registry.store)
        self.fuse_runner = fuse_runner

    # ---- uploads ------------------------------------------------------------------------------
    @translated
    def UploadBlock(
        self, request_iterator: Iterator[pb.UploadChunk], context: grpc.ServicerContext
    ) -> pb.UploadResult:
        who = caller()

        def chunks() -> Iterator[Chunk]:
            for msg in request_iterator:
                if not isinstance(msg, pb.UploadChunk):
                    error = getattr(msg, "error", "?")
                    raise invalid(f"an upload message is not a valid UploadChunk ({error})")
                c = serde.chunk_from_pb(msg)
                if c is None:
                    raise invalid("an upload message must carry a header or data")
                yield c

        block, present = self.registry.upload(
            who, self.auth.peer_certificate(context, self.insecure), chunks()
        )
        self.metrics.uploads.labels("already_present" if present else "accepted").inc()
        return pb.UploadResult(block=serde.block_to_pb(block), already_present=present)

    @translated
    def GetUploadStatus(
        self, request: pb.UploadStatusRequest, context: grpc.ServicerContext
    ) -> pb.UploadStatus:
        return serde.upload_to_pb(self.registry.uploads.status(caller(), request.upload_id))

    # ---- downloads ----------------------------------------------------------------------------
    @streamed
    def DownloadBlock(
        self, request: pb.DownloadBlockRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadChunk]:
        block = self.registry.block(request.block_id)
        chunks = self.registry.read_chunks(block.block_id, request.offset)
        yield pb.DownloadChunk(block=serde.block_to_pb(block))
        for offset, data in chunks:
            if not context.is_active():
                return
            yield pb.DownloadChunk(data=data, offset=offset)

    @streamed
    def DownloadModel(
        self, request: pb.DownloadModelRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadChunk]:
        model = self.registry.model(request.model_id)
        yield pb.DownloadChunk(model=serde.model_to_pb(model))
        for offset, data in self.registry.read_chunks(model.weights_sha256):
            if not context.is_active():
                return
            yield pb.DownloadChunk(data=data, offset=offset)

    # ---- reads --------------------------------------------------------------------------------
    @translated
    def ListTasks(
        self, request: pb.ListTasksRequest, context: grpc.ServicerContext
    ) -> pb.ListTasksResponse:
        return pb.ListTasksResponse(tasks=[serde.task_to_pb(t) for t in self.registry.tasks()])

    @translated
    def GetTask(self, request: pb.GetTaskRequest, context: grpc.ServicerContext) -> pb.Task:
        return serde.task_to_pb(self.registry.task(request.task_id))

    @translated
    def ListBlocks(
        self, request: pb.ListBlocksRequest, context: grpc.ServicerContext
    ) -> pb.ListBlocksResponse:
        size, before = page_of(request.page_size, request.page_token)
        rows = self.registry.block_page(
            request.task_id,
            request.site,
            request.modality,
            request.include_withdrawn,
            before,
            size + 1,
        )
        out = pb.ListBlocksResponse()
        out.next_page_token = fill_page(
            out.blocks, [(r.seq, serde.block_to_pb(r.item)) for r in rows], size
        )
        return out

    @translated
    def GetBlock(self, request: pb.GetBlockRequest, context: grpc.ServicerContext) -> pb.BlockInfo:
        return serde.block_to_pb(self.registry.block(request.block_id))

    @translated
    def ListSites(
        self, request: pb.ListSitesRequest, context: grpc.ServicerContext
    ) -> pb.ListSitesResponse:
        return pb.ListSitesResponse(sites=[serde.site_to_pb(s) for s in self.registry.sites()])

    @translated
    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        size, before = page_of(request.page_size, request.page_token)
        rows = self.registry.model_page(request.task_id, before, size + 1)
        out = pb.ListModelsResponse()
        out.next_page_token = fill_page(
            out.models, [(r.seq, pb.ModelVersion.FromString(r.item)) for r in rows], size
        )
        return out

    @translated
    def GetModel(
        self, request: pb.GetModelRequest, context: grpc.ServicerContext
    ) -> pb.ModelVersion:
        return serde.model_to_pb(self.registry.model(request.model_id))

    # ---- admin --------------------------------------------------------------------------------
    @translated
    def CreateTask(self, request: pb.Task, context: grpc.ServicerContext) -> pb.Task:
        with as_invalid():
            task = serde.task_from_pb(request)
        return serde.task_to_pb(self.registry.create_task(task, caller().name))

    @translated
    def Merge(self, request: pb.MergeRequest, context: grpc.ServicerContext) -> pb.ModelVersion:
        wait = call_deadline(self.registry, request.deadline_s, context)
        model = self.registry.merge(
            request.task_id,
            request.latent_merge,
            request.head_merge,
            caller().name,
            request.recipe,  # the wire's name for the merge policy
            wait,
            stop=lambda: not context.is_active(),
            evaluate=not request.unmeasured,
            layout=request.hierarchy,
        )
        self.metrics.merges.inc()
        return serde.model_to_pb(model)

    @translated
    def Fuse(self, request: pb.FuseRequest, context: grpc.ServicerContext) -> pb.ModelVersion:
        if self.fuse_runner is None:
            raise no_superlink()
        start = fuse_start(self.registry, request)
        try:
            model_id = self.fuse_runner(start, lambda _: None, "")
        except FuseError as exc:
            self.metrics.fuse_runs.labels(
                "not_stored" if isinstance(exc, NotStored) else "failed"
            ).inc()
            raise precondition(
                f"no fused version stored: {exc}" if isinstance(exc, NotStored) else str(exc)
            ) from None
        self.metrics.fuse_runs.labels("stored").inc()
        return serde.model_to_pb(self.registry.model(model_id))

    @translated
    def WithdrawSite(
        self, request: pb.WithdrawSiteRequest, context: grpc.ServicerContext
    ) -> pb.Site:
        if not request.reason.strip():
            raise invalid("withdrawing a site needs a reason (it goes to the audit log)")
        return serde.site_to_pb(self.registry.withdraw(request.site, request.reason, caller().name))
