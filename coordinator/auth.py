"""Who is calling: the identity in the client's TLS certificate (checked against the consortium
CA and its revocation list, re-read when it changes), and which roles may call which RPC. The
one interceptor here is the only place that authenticates."""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from common.client.connect import INSECURE_CERT_KEY
from common.pki import Identity, identity_from_cert, revoked_serials

from .errors import Kind, RegistryError

log = logging.getLogger("mmlego.coordinator")

CALLER: contextvars.ContextVar[Identity] = contextvars.ContextVar("mmlego_caller")
SITE, ADMIN = frozenset({"site"}), frozenset({"admin"})
ANYONE = frozenset({"site", "admin"})
ROLES_BY_METHOD: dict[str, frozenset[str]] = {
    "UploadBlock": SITE,
    "GetUploadStatus": SITE,
    "CreateTask": ADMIN,
    "Merge": ADMIN,
    "Fuse": ADMIN,
    "WithdrawSite": ADMIN,
    "DownloadBlock": ANYONE,
    "DownloadModel": ANYONE,
    "ListTasks": ANYONE,
    "GetTask": ANYONE,
    "ListBlocks": ANYONE,
    "GetBlock": ANYONE,
    "ListSites": ANYONE,
    "ListModels": ANYONE,
    "GetModel": ANYONE,
    # the Evaluation service
    "PendingEvaluations": SITE,
    "DownloadCandidate": SITE,
    "ReportEvaluation": SITE,
    "ListEvaluations": ADMIN,
    "Evaluate": ADMIN,
    "GetRecommended": ANYONE,
    # the Admin service
    "GetStatus": ADMIN,
    "ListFuseRuns": ADMIN,
    "RunFuse": ADMIN,
}
REGISTRY_SERVICE, EVALUATION_SERVICE, ADMIN_SERVICE = (
    "mmlego.v1.BlockRegistry",
    "mmlego.v1.Evaluation",
    "mmlego.v1.Admin",
)
EVALUATION_METHODS = frozenset(
    {
        "PendingEvaluations",
        "DownloadCandidate",
        "ReportEvaluation",
        "ListEvaluations",
        "Evaluate",
        "GetRecommended",
    }
)
ADMIN_METHODS = frozenset({"GetStatus", "ListFuseRuns", "RunFuse"})
SERVICE = f"/{REGISTRY_SERVICE}/"


def method_path(name: str) -> str:
    """The gRPC path of one of our methods, e.g. ``/mmlego.v1.Evaluation/ReportEvaluation``."""
    service = (
        EVALUATION_SERVICE
        if name in EVALUATION_METHODS
        else ADMIN_SERVICE
        if name in ADMIN_METHODS
        else REGISTRY_SERVICE
    )
    return f"/{service}/{name}"


def method_name(path: str) -> str | None:
    """The method of a path of one of our services; None for another service (health checks)."""
    service, _, name = path.strip("/").partition("/")
    return (
        name if service in (REGISTRY_SERVICE, EVALUATION_SERVICE, ADMIN_SERVICE) and name else None
    )


def caller() -> Identity:
    return CALLER.get()


class Authenticator:
    """Turns a peer certificate into an :class:`Identity`, or raises UNAUTHENTICATED."""

    def __init__(self, ca_cert: Path, crl: Path | None) -> None:
        self.ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        self.crl_path = crl
        self._crl_stamp: tuple[int, int] | None = None
        self._revoked: set[int] = set()
        self._lock = threading.Lock()
        self._cache: dict[bytes, tuple[x509.Certificate, Identity]] = {}
        self._reload_crl()

    def _reload_crl(self) -> None:
        if self.crl_path is None:
            return
        try:
            st = self.crl_path.stat()
        except FileNotFoundError:
            log.error("revocation list %s is missing; keeping the last one read", self.crl_path)
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._crl_stamp:
            return
        try:
            revoked = revoked_serials(self.crl_path.read_bytes(), self.ca)
        except ValueError as exc:
            log.error(
                "revocation list %s not usable (%s); keeping the last one read", self.crl_path, exc
            )
            return
        self._revoked, self._crl_stamp = revoked, stamp
        log.info("revocation list loaded: %d revoked certificate(s)", len(revoked))

    def identify_pem(self, pem: bytes) -> Identity:
        key = hashlib.sha256(pem).digest()
        with self._lock:
            self._reload_crl()
            hit = self._cache.get(key)
            if hit is None:
                try:
                    cert = x509.load_pem_x509_certificate(pem)
                    cert.verify_directly_issued_by(self.ca)
                    ident = identity_from_cert(cert)
                except (ValueError, TypeError) as exc:
                    raise RegistryError(
                        Kind.UNAUTHENTICATED, f"client certificate not accepted: {exc}"
                    ) from None
                except Exception as exc:  # InvalidSignature and friends
                    raise RegistryError(
                        Kind.UNAUTHENTICATED,
                        "client certificate is not issued by the consortium CA",
                    ) from exc
                hit = (cert, ident)
                if len(self._cache) > 10_000:
                    # bounded: certificates are few, but callers are not trusted
                    self._cache.clear()
                self._cache[key] = hit
            cert, ident = hit
            revoked = cert.serial_number in self._revoked
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise RegistryError(
                Kind.UNAUTHENTICATED,
                f"certificate of {ident.name!r} is not valid now "
                f"(valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)",
            )
        if revoked:
            raise RegistryError(
                Kind.UNAUTHENTICATED,
                f"certificate of {ident.name!r} (serial {cert.serial_number}) was revoked; "
                "ask the consortium operator for a new kit",
            )
        return ident

    @staticmethod
    def peer_certificate(context: grpc.ServicerContext, insecure: bool) -> bytes:
        """The caller's PEM certificate: from the TLS session, or (plaintext mode only) from
        metadata."""
        pems = context.auth_context().get("x509_pem_cert")
        if not pems and insecure:
            pems = [v for k, v in context.invocation_metadata() if k == INSECURE_CERT_KEY]  # type: ignore[misc]
        if not pems:
            return b""
        return pems[0] if isinstance(pems[0], bytes) else str(pems[0]).encode()

    def identify(self, context: grpc.ServicerContext, insecure: bool) -> Identity:
        pem = self.peer_certificate(context, insecure)
        if not pem:
            raise RegistryError(
                Kind.UNAUTHENTICATED,
                "no client certificate: connect with your kit's tls.crt and tls.key",
            )
        return self.identify_pem(pem)


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticates every call of our services and checks the caller's role; the identity is
    available to the servicer through :func:`caller`. Health checks need no identity."""

    def __init__(
        self,
        auth: Authenticator,
        insecure: bool,
        on_refused: Callable[[str, RegistryError], None],
        on_caller: Callable[[Identity], None] | None = None,
    ) -> None:
        self.auth = auth
        self.insecure = insecure
        self.on_refused = on_refused
        # told of every authenticated caller (the registry records sites)
        self.on_caller = on_caller

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        name = method_name(details.method)  # type: ignore[attr-defined]
        if handler is None or name is None:
            return handler
        roles = ROLES_BY_METHOD.get(name, frozenset())

        def check(context: grpc.ServicerContext) -> None:
            try:
                ident = self.auth.identify(context, self.insecure)
                if ident.role not in roles:
                    raise RegistryError(
                        Kind.FORBIDDEN,
                        f"{name} is for {' or '.join(sorted(roles)) or 'nobody'}; "
                        f"{ident.name!r} is a {ident.role}",
                    )
            except RegistryError as err:
                self.on_refused(name, err)
                context.abort(_STATUS[err.kind], err.message)
            CALLER.set(ident)
            if self.on_caller is not None:
                self.on_caller(ident)

        def wrap(
            fn: Callable[[Any, grpc.ServicerContext], Any],
        ) -> Callable[[Any, grpc.ServicerContext], Any]:
            def inner(request: Any, context: grpc.ServicerContext) -> Any:
                check(context)
                if isinstance(request, Undecodable):
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"{name}: the request is not a valid message ({request.error})",
                    )
                return fn(request, context)

            return inner

        decode = handler.request_deserializer

        def lenient(data: bytes) -> Any:
            try:
                return decode(data)
            except Exception as exc:  # DecodeError: the servicer refuses it with INVALID_ARGUMENT
                return Undecodable(str(exc))

        kind = (
            ("stream" if handler.request_streaming else "unary")
            + "_"
            + ("stream" if handler.response_streaming else "unary")
        )
        make = getattr(grpc, f"{kind}_rpc_method_handler")
        return make(
            wrap(getattr(handler, kind)),
            request_deserializer=lenient if decode else None,
            response_serializer=handler.response_serializer,
        )


class Undecodable:
    """A request message that did not parse."""

    def __init__(self, error: str) -> None:
        self.error = error


_STATUS = {
    Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Kind.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Kind.EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Kind.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    Kind.ABORTED: grpc.StatusCode.ABORTED,
    Kind.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
}


def status_of(kind: Kind) -> grpc.StatusCode:
    """The one mapping from domain error kinds to gRPC status codes."""
    return _STATUS[kind]
