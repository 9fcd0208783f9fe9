"""Who may read the console: where it listens (loopback unless asked otherwise), which Host
headers it answers (a guard against DNS rebinding), the access token, and the headers every
response carries."""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

COOKIE = "mmlego_console"
MIN_TOKEN = 16
TOKEN_RE = re.compile(
    r"[A-Za-z0-9._~+/=-]+"
)  # secrets.token_urlsafe() and base64: safe in a cookie and a URL
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as (host, port); ``ValueError`` naming a bad one."""
    host, sep, port = listen.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address needs brackets, or the port is ambiguous
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f"listen address {listen!r} is not host:port (e.g. 127.0.0.1:8765, or [::1]:8765 "
            "for IPv6)"
        )
    return host.lower(), int(port)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and "localhost": reachable from this machine only."""
    ip = _ip(host)
    return host == "localhost" if ip is None else ip.is_loopback


def is_wildcard(host: str) -> bool:
    """0.0.0.0 or :: (every interface)."""
    ip = _ip(host)
    return ip is not None and ip.is_unspecified


def check_token(token: str) -> None:
    if len(token) < MIN_TOKEN or not TOKEN_RE.fullmatch(token):
        raise ValueError(
            f"the console token must be at least {MIN_TOKEN} characters of letters, digits and "
            "._~+/=- (make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass(frozen=True)
class Guard:
    """The Host names the console answers (``name:port``, lower case) and its token ("" = none)."""

    port: int
    hosts: frozenset[str]
    token: str = ""
    # listening on every interface: any literal IP address (DNS rebinding needs a name)
    any_ip: bool = False

    @classmethod
    def of(cls, host: str, port: int, token: str = "") -> Guard:
        names = set(LOOPBACK_HOSTS)
        any_ip = is_wildcard(host)
        if any_ip:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        elif not is_loopback(host):
            names.add(url_host(host))
        hosts = {f"{n}:{port}" for n in names} | (
            names if port == 80 else set()
        )  # port 80 may go unsaid
        return cls(port, frozenset(hosts), token, any_ip)

    def host_ok(self, header: str) -> bool:
        value = header.strip().lower()
        if value in self.hosts:
            return True
        if not self.any_ip:
            return False
        name, _, port = value.rpartition(":")
        return port == str(self.port) and _ip(name.strip("[]")) is not None

    def _same(self, given: str) -> bool:
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """No token set, ``Authorization: Bearer <token>``, or the login cookie."""
        if not self.token:
            return True
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._same(value.strip()):
            return True
        # read by hand: a browser sends every cookie of the host (all its ports), and one malformed
        # cookie of another local app would make http.cookies drop the rest
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and self._same(value.strip().strip('"')):
                return True
        return False

    def login(self, given: str) -> str | None:
        """The Set-Cookie value for a correct token, else None."""
        if not self.token or not self._same(given):
            return None
        return f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
