"""Building and running the coordinator's gRPC server: mutual TLS (plaintext only on loopback
with an explicit flag), the auth interceptor, the registry servicer and the standard health
service."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.client.connect import MAX_MESSAGE
from common.pb.mmlego.v1 import admin_pb2_grpc as apb_grpc
from common.pb.mmlego.v1 import evaluation_pb2_grpc as epb_grpc
from common.pb.mmlego.v1 import registry_pb2_grpc as pb_grpc
from common.pki import Identity

from .admin_servicer import AdminServicer
from .auth import ADMIN_SERVICE, EVALUATION_SERVICE, Authenticator, AuthInterceptor
from .config import CoordinatorConfig, is_loopback
from .errors import RegistryError
from .evaluation_servicer import EvaluationServicer
from .metrics import Metrics, http_app, serve_http
from .registry import Registry
from .servicer import BlockRegistryServicer, FuseRunner, FuseStart
from .store import OperationalError

log = logging.getLogger("mmlego.coordinator")
SERVICE_NAME = "mmlego.v1.BlockRegistry"


@dataclass
class Running:
    server: grpc.Server
    port: int
    registry: Registry
    health: health.HealthServicer
    metrics: Metrics
    metrics_port: int = 0  # the bound port of /metrics and /healthz (0: not served)


def _credentials(config: CoordinatorConfig) -> grpc.ServerCredentials:
    for what, path in (
        ("certificate", config.cert),
        ("key", config.key),
        ("CA certificate", config.ca),
    ):
        if not path.is_file():
            raise ValueError(
                f"TLS {what} {path} not found; create server credentials with: "
                "mmlego coordinator init"
            )
    return grpc.ssl_server_credentials(
        [(config.key.read_bytes(), config.cert.read_bytes())],
        root_certificates=config.ca.read_bytes(),
        require_client_auth=True,
    )


def warm_up() -> None:
    """Pay torch's one-time meta-device set-up (about 2 s) before the first upload does."""
    from common.artifacts import expected_tensors
    from common.lego import BlockConfig, EncoderConfig
    from common.tasks import TaskSpec

    expected_tensors(BlockConfig("warmup", EncoderConfig("tabular", 2), TaskSpec("classification")))


@contextmanager
def serve(config: CoordinatorConfig, fuse_runner: FuseRunner | None = None) -> Iterator[Running]:
    """Start the coordinator; yields the running server (``port`` is the bound one) and stops it on
    exit. Fuse runs go to the SuperLink of ``[flower]`` unless ``fuse_runner`` is given (tests)."""
    if config.insecure and not is_loopback(config.host):
        raise ValueError(
            f"plaintext serving is allowed only on a loopback address, not {config.host!r}"
        )
    registry = Registry.open(config)
    warm_up()
    auth = Authenticator(config.ca, config.crl)

    metrics = Metrics(registry.store)

    def refused(method: str, err: RegistryError) -> None:
        log.warning(
            "refused %s: %s",
            method,
            err.message,
            extra={"event": "refused", "method": method, "reason": err.kind.value},
        )
        metrics.refused(method, err.kind.value)

    last_seen: dict[str, float] = {}

    def seen(who: Identity) -> None:
        """Record a site when it first calls, and at most once a minute after that."""
        now = time.monotonic()
        if who.role == "site" and now - last_seen.get(who.name, -1e9) > 60:
            try:
                registry.seen(who)
            except OperationalError as exc:
                # a locked database must not fail the call itself; retried on the next call
                log.warning("could not record that %s called: %s", who.name, exc)
                return
            last_seen[who.name] = now

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="rpc"),
        interceptors=[AuthInterceptor(auth, config.insecure, refused, seen)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )

    def on_superlink(start: FuseStart, progress: Callable[[str], None], run_key: str) -> str:
        from .flower import fuse
        from .fuse_rounds import NotStored

        assert config.path is not None
        result = fuse(
            config,
            config.path,
            start.model_id,
            start.config,
            start.expect_paired or None,
            progress=progress,
            deadline_s=start.deadline_s,
            unvalidated=start.unvalidated,
            run_key=run_key,
        )
        if result.model_id is None:
            raise NotStored(result.reason)
        return result.model_id

    runner = fuse_runner or (on_superlink if config.path is not None else None)
    pb_grpc.add_BlockRegistryServicer_to_server(
        BlockRegistryServicer(registry, auth, config.insecure, runner, metrics), server
    )
    epb_grpc.add_EvaluationServicer_to_server(EvaluationServicer(registry, metrics), server)
    apb_grpc.add_AdminServicer_to_server(AdminServicer(registry, metrics, runner), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    serving = threading.Event()

    def healthy() -> str | None:
        """None when the registry serves and its database answers; otherwise why not."""
        if not serving.is_set():
            return "not serving"
        problem = registry.store.ping()
        return None if problem is None else f"database: {problem}"

    http = None
    try:
        if config.metrics_listen:
            http, metrics_port = serve_http(config.metrics_listen, http_app(metrics, healthy))
            log.info(
                "metrics on http://%s:%d/metrics, health on /healthz",
                http.server_name,
                metrics_port,
            )
        else:
            metrics_port = 0
        if config.insecure:
            log.warning("serving WITHOUT TLS on %s (loopback only; for debugging)", config.host)
            port = server.add_insecure_port(config.address)
        else:
            port = server.add_secure_port(config.address, _credentials(config))
        if port == 0:
            raise OSError(f"could not listen on {config.address}")
        server.start()
        for name in ("", SERVICE_NAME, EVALUATION_SERVICE, ADMIN_SERVICE):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        serving.set()
        log.info(
            "coordinator listening on %s:%d (%s)",
            config.host,
            port,
            "plaintext" if config.insecure else "mutual TLS",
        )
        yield Running(server, port, registry, health_servicer, metrics, metrics_port)
    finally:
        serving.clear()
        if http is not None:
            http.shutdown()
            http.server_close()
        health_servicer.enter_graceful_shutdown()
        server.stop(grace=2.0).wait(5.0)
        registry.close()


def serve_forever(config: CoordinatorConfig) -> None:
    """Run until SIGTERM or SIGINT; prints the bound address once listening."""
    stop = threading.Event()
    logging.getLogger("mmlego").setLevel(
        min(logging.INFO, logging.getLogger().getEffectiveLevel())
    )  # a service logs its events
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with serve(config) as running:
        print(f"mmlego coordinator listening on {config.host}:{running.port}", flush=True)
        if running.metrics_port:
            print(
                f"mmlego coordinator metrics on {config.metrics_listen.rpartition(':')[0]}:"
                f"{running.metrics_port} (/metrics, /healthz)",
                flush=True,
            )
        stop.wait()
    print("mmlego coordinator stopped", flush=True)
