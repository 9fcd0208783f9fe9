"""The console's pages as a function of a request: checks (Host, method, token), routes, templates
and the mapping of the coordinator's refusals to HTTP statuses. No sockets here (see ``server``)."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import grpc
import jinja2

from common.client import CallError

from . import pages
from .security import Guard
from .source import ConsoleSource

log = logging.getLogger("mmlego.console")
HERE = Path(__file__).parent
NAV = (("/", "Overview"), ("/blocks", "Blocks"), ("/versions", "Versions"), ("/fuse", "Fuse runs"))
LIVE_S = 5  # pages that change re-fetch themselves this often (static/live.js)
TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
HINT = (
    "The coordinator may be down, or it refused the call; its log and this console's log have more."
)
HINTS = {
    grpc.StatusCode.UNAVAILABLE: (
        "The coordinator may be down or unreachable from here, or it refused this kit's "
        "TLS session."
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        "The coordinator did not answer in time: it may be down or overloaded."
    ),
    grpc.StatusCode.UNAUTHENTICATED: "The coordinator did not accept this admin kit's certificate.",
    grpc.StatusCode.PERMISSION_DENIED: (
        "The coordinator refused this admin kit (is it an admin certificate, and not revoked?)."
    ),
}


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request line's target: path and query
    headers: Mapping[str, str]  # names in lower case
    hosts: tuple[str, ...] = ()  # every Host header sent (a request must send exactly one)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def _num(x: Any, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) and math.isfinite(x) else "-"


def _eps(x: Any) -> str:
    """A DP epsilon as the CLI prints it (3 significant digits)."""
    return f"{x:.3g}" if isinstance(x, int | float) and math.isfinite(x) else "-"


def _size(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, size=_size, ago=pages.ago, short=lambda s: str(s)[:12], eps=_eps)
    return env


def load_static() -> dict[str, tuple[bytes, str]]:
    """The static files by name, read once (only these names are served: no paths from a
    request)."""
    return {
        p.name: (p.read_bytes(), TYPES.get(p.suffix, "application/octet-stream"))
        for p in sorted((HERE / "static").iterdir())
        if p.is_file()
    }


class ConsoleApp:
    """Answers one request; never raises (a bug becomes a 500 page and a logged traceback)."""

    def __init__(self, source: ConsoleSource, guard: Guard, label: str = "") -> None:
        self.source, self.guard, self.label = source, guard, label
        self.env = environment()
        self.static = load_static()

    def handle(self, req: Request) -> Response:
        try:
            return self._handle(req)
        except CallError as exc:
            return self._call_error(exc)
        except Exception:
            log.exception("console: %s %s failed", req.method, urlsplit(req.target).path)
            return self.page(
                "error.html",
                "Error",
                500,
                heading="Internal error",
                message="The console failed to build this page; its log has the details.",
                hint="",
            )

    def _handle(self, req: Request) -> Response:
        if len(req.hosts) != 1:
            return self.plain(400, "a request must carry exactly one Host header")
        if not self.guard.host_ok(req.hosts[0]):
            log.warning(
                "console: refused a request for Host %r (not an address it serves)",
                req.hosts[0][:100],
            )
            return self.plain(
                421, "this console does not serve that Host; open it by the address it printed"
            )
        if req.method not in ("GET", "HEAD"):
            return self.method_not_allowed()
        url = urlsplit(req.target)
        path = url.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if path == "/healthz":
            return Response(200, b"ok\n", "text/plain; charset=utf-8")
        if path == "/login":
            return self.login(query.get("token", ""))
        if not self.guard.authorized(req.headers):
            return self.unauthorized()
        return self.route(path, query)

    def route(self, path: str, query: dict[str, str]) -> Response:
        task, site = query.get("task", "")[:200], query.get("site", "")[:200]
        views: dict[str, tuple[str, str, Callable[[], dict[str, Any]]]] = {
            "/": ("overview.html", "Overview", lambda: pages.overview(self.source)),
            "/blocks": ("blocks.html", "Blocks", lambda: pages.blocks(self.source, task, site)),
            "/versions": ("versions.html", "Versions", lambda: pages.versions(self.source, task)),
            "/fuse": ("fuse.html", "Fuse runs", lambda: pages.fuse(self.source, task)),
        }
        if path in views:
            template, title, build = views[path]
            return self.page(
                template, title, live=LIVE_S if path != "/blocks" else 0, active=path, **build()
            )
        if path.startswith("/versions/"):
            model_id = unquote(path.removeprefix("/versions/"))
            if "/" in model_id or not model_id or len(model_id) > 200:
                return self.not_found(f"no page {path}")
            context = pages.version(self.source, model_id)
            return self.page("version.html", f"Version {model_id}", active="/versions", **context)
        if path.startswith("/static/") and path.removeprefix("/static/") in self.static:
            body, kind = self.static[path.removeprefix("/static/")]
            return Response(200, body, kind)
        return self.not_found(f"no page {path}")

    # ---- responses -------------------------------------------------------------------------------
    def page(
        self,
        template: str,
        title: str,
        code: int = 200,
        live: int = 0,
        active: str = "",
        bare: bool = False,
        headers: list[tuple[str, str]] | None = None,
        **context: Any,
    ) -> Response:
        """A page of ``template``: ``live`` > 0 makes it re-fetch itself, ``bare`` leaves out the
        nav bar, the stylesheet and the script (the login page: they need the token too)."""
        now = dt.datetime.now(dt.UTC)
        html = self.env.get_template(template).render(
            title=title,
            nav=NAV,
            active=active,
            live=live,
            bare=bare,
            label=self.label,
            now=now.strftime("%H:%M:%S UTC"),
            now_iso=now.isoformat(timespec="seconds"),
            **context,
        )
        return Response(code, html.encode(), headers=headers or [])

    def plain(self, status: int, text: str) -> Response:
        return Response(status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def not_found(self, message: str) -> Response:
        return self.page(
            "error.html", "Not found", 404, heading="Not found", message=message, hint=""
        )

    def method_not_allowed(self) -> Response:
        r = self.plain(405, "the console is read-only: only GET and HEAD")
        r.headers.append(("Allow", "GET, HEAD"))
        return r

    def unauthorized(self) -> Response:
        return self.page(
            "login.html",
            "Log in",
            401,
            bare=True,
            headers=[("WWW-Authenticate", 'Bearer realm="mmlego console"')],
        )

    def login(self, token: str) -> Response:
        if not self.guard.token:
            return Response(303, b"", headers=[("Location", "/")])
        cookie = self.guard.login(token)
        if cookie is None:
            log.warning("console: a login with a wrong token")
            return self.unauthorized()
        return Response(303, b"", headers=[("Set-Cookie", cookie), ("Location", "/")])

    def _call_error(self, exc: CallError) -> Response:
        if exc.code == grpc.StatusCode.NOT_FOUND:
            return self.not_found(exc.message)
        status = 400 if exc.code == grpc.StatusCode.INVALID_ARGUMENT else 502
        log.warning("console: the coordinator answered %s: %s", exc.code.name, exc.message)
        return self.page(
            "error.html",
            "Coordinator error",
            status,
            message=exc.message,
            heading=f"The coordinator answered {exc.code.name}",
            hint=HINTS.get(exc.code, HINT) if status == 502 else "",
        )
