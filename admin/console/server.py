"""The console's HTTP server (the standard library's threading server): ``make_console`` checks
where it may listen and returns a ``Console`` that serves in the foreground or, as a context
manager, in a background thread (tests)."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from .app import ConsoleApp, Request, Response
from .security import (
    SECURITY_HEADERS,
    Guard,
    check_token,
    is_loopback,
    is_wildcard,
    parse_listen,
    url_host,
)
from .source import ConsoleSource

log = logging.getLogger("mmlego.console")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: ConsoleApp

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(
            self
        )  # HTTPServer's would look its own name up in the DNS
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server_version = "mmlego-console"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle or slow connection lets go of its thread

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        app = cast(_Server, self.server).app
        headers = {k.lower(): v for k, v in self.headers.items()}
        if "content-length" in headers or "transfer-encoding" in headers:
            # a GET with a body: not read, so the connection cannot be reused
            self.close_connection = True
        hosts = tuple(self.headers.get_all("Host") or ())
        self._send(app.handle(Request(self.command, self.path, headers, hosts)), head)

    def _send(self, r: Response, head: bool = False) -> None:
        self.send_response(r.status)
        self.send_header("Content-Type", r.content_type)
        self.send_header("Content-Length", str(len(r.body)))
        for name, value in r.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and r.body:
            self.wfile.write(r.body)

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request, a method without a ``do_`` handler) as
        short plain pages with the console's headers; any method but GET and HEAD is 405."""
        self.close_connection = True
        app = cast(_Server, self.server).app
        if code == 501 and getattr(self, "command", "") not in ("GET", "HEAD"):
            r = app.method_not_allowed()
        else:
            r = app.plain(code, message or "bad request")
        try:
            self._send(r, head=getattr(self, "command", "") == "HEAD")
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        path = self.path.split("?", 1)[0] if hasattr(self, "path") else ""
        text = format % args
        if hasattr(self, "path") and self.path != path:
            text = text.replace(
                self.path, path + "?…"
            )  # queries stay out of the log (/login?token=...)
        log.debug("console: %s %s", self.address_string(), text)


class Console:
    """A console server bound to its port: ``serve_forever()``, ``shutdown()``, or ``with`` (serves
    in a background thread until the block ends)."""

    def __init__(self, server: _Server, url: str) -> None:
        self._server, self.url = server, url
        self.port = int(server.server_address[1])
        self._serving = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def serve_forever(self) -> None:
        with self._lock:
            self._serving = True
        log.info("console: serving %s", self.url)
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:  # ended by shutdown() or by an exception (Ctrl-C): nothing left to stop
            with self._lock:
                self._serving = False

    def shutdown(self) -> None:
        """Stop serving (if it serves) and close the socket."""
        with self._lock:
            serving, self._serving = self._serving, False
        if serving:
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Console:
        self._thread = threading.Thread(
            target=self.serve_forever, name="mmlego-console", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def make_console(
    source: ConsoleSource,
    listen: str = "127.0.0.1:8765",
    allow_remote: bool = False,
    token: str = "",
    label: str = "",
) -> Console:
    """A console of ``source`` bound to ``listen`` ("host:port"; port 0 takes a free one). A host
    that is not loopback needs ``allow_remote`` and a token; the console speaks plain HTTP, so
    reach a remote one through TLS (an SSH tunnel or a reverse proxy). ``label`` is shown on every
    page (e.g. the admin and coordinator). ``ValueError`` says what is wrong."""
    host, port = parse_listen(listen)
    if token:
        check_token(token)
    if not is_loopback(host):
        if not allow_remote:
            raise ValueError(
                "the console listens on loopback only (127.0.0.1, ::1 or localhost), "
                f"not {host!r}; to serve other machines pass --allow-remote with a token, "
                "and put TLS in front of it"
            )
        if not token:
            raise ValueError(
                f"a console on {host!r} (not loopback) needs a token of at least 16 characters"
            )
    bind = "127.0.0.1" if host == "localhost" else host
    cls = _Server6 if ":" in bind else _Server
    server = cls((bind, port), _Handler, bind_and_activate=False)
    try:
        server.server_bind()
        server.server_activate()
    except OSError as exc:
        server.server_close()
        raise ValueError(f"the console cannot listen on {listen}: {exc.strerror or exc}") from None
    port = int(server.server_address[1])
    server.app = ConsoleApp(source, Guard.of(host, port, token), label)
    shown = socket.gethostname() if is_wildcard(host) else url_host(host)
    if not is_loopback(host):
        log.warning(
            "console: serving %s:%d to other machines over plain HTTP; only the token guards it",
            shown,
            port,
        )
    return Console(server, f"http://{shown}:{port}/")
