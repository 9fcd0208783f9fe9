"""What sites put on the wire, for tests: a recording TLS relay that sits between the sites and the
coordinator's registry (gRPC, mutual TLS) or the Flower SuperLink (HTTP/1.1, TLS) and keeps the
plaintext of both directions of every connection; decoders for what it kept (HTTP/2 frames, HPACK
and gRPC messages; HTTP/1.1 requests, Flower's Fleet protobufs and pushed objects); and a scanner
that finds planted byte strings in megabytes of captured bytes."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import ssl
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hpack
import numpy as np
from cryptography import x509
from flwr.app import Message
from flwr.proto.fleet_pb2 import PushMessagesRequest
from flwr.proto.message_pb2 import ObjectTree, PushObjectRequest
from flwr.supercore.constant import FLEET_HTTP_PUBLIC_KEY_HEADER
from flwr.supercore.inflatable.inflatable_object import (
    get_object_body,
    get_object_type_from_object_content,
    iterate_object_tree,
)
from flwr.supercore.inflatable.inflatable_utils import (
    inflatable_class_registry,
    inflate_object_from_contents,
    validate_object_content,
)
from flwr.supercore.protobuf.translation import PROTOBUF_REQUEST_TYPES
from google.protobuf.message import Message as ProtoMessage

from common.pki import identity_from_cert

KINDS = ("registry", "superlink")  # what simulate()'s relay hook asks for
READ_BYTES = 1 << 16


# ---- the relay -----------------------------------------------------------------------------------


@dataclass
class Capture:
    """One relayed connection: the service, the site (registry: from its client certificate), the
    ALPN protocol both hops agreed on, and the plaintext each way."""

    kind: str
    site: str | None = None
    alpn: str | None = None
    sent: bytearray = field(default_factory=bytearray)  # site -> server
    received: bytearray = field(default_factory=bytearray)  # server -> site
    # how the connection ended, when not by a clean close (teardown noise, mostly)
    error: str | None = None


class RecordingRelay:
    """``relay(kind, upstream) -> address``, the hook of :func:`simulate.run.simulate`.

    Each call opens a listener on 127.0.0.1 that terminates TLS with the coordinator's own server
    certificate (``out/coordinator``) and opens TLS to ``upstream``. For the registry it requires a
    client certificate of the consortium CA, reads the site from it and presents the same site's
    kit (``out/sites/<site>``) upstream, so the coordinator sees the identity it would see without
    the relay. The ALPN protocol the site chose (gRPC: h2; Flower's httpx: http/1.1) is the only
    one offered upstream. At most ``limit_bytes`` are kept in all; beyond that ``overflow`` is set
    and bytes are relayed unrecorded. One event loop in one thread; :meth:`close` stops both."""

    def __init__(self, out: Path, limit_bytes: int = 1 << 30, timeout_s: float = 30.0) -> None:
        self.out, self.limit_bytes, self.timeout_s = out, limit_bytes, timeout_s
        self.captures: list[Capture] = []
        self.overflow = False
        self._kept = 0
        self._lock = threading.Lock()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="recording-relay", daemon=True
        )
        self._thread.start()

    def __call__(self, kind: str, upstream: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown relay kind {kind!r}; known: {', '.join(KINDS)}")
        host, _, port = upstream.rpartition(":")
        listening = asyncio.run_coroutine_threadsafe(
            self._listen(kind, host, int(port)), self._loop
        )
        return f"127.0.0.1:{listening.result(self.timeout_s)}"

    def __enter__(self) -> RecordingRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening, cut every open connection, stop the loop and its thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(self.timeout_s)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout_s)
        if self._thread.is_alive():
            raise RuntimeError("the recording relay's thread did not stop")
        self._loop.close()

    def snapshot(self) -> list[Capture]:
        with self._lock:
            return list(self.captures)

    # ---- inside the loop ----------------------------------------------------------------------
    def _server_context(self, kind: str) -> ssl.SSLContext:
        coord = self.out / "coordinator"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(coord / "server.crt", coord / "server.key")
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        if kind == "registry":
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(coord / "ca.crt")
        return ctx

    def _client_context(self, cap: Capture, tls: ssl.SSLObject) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.out / "coordinator" / "ca.crt"))
        if cap.alpn:
            ctx.set_alpn_protocols([cap.alpn])
        if cap.kind == "registry":
            der = tls.getpeercert(binary_form=True)
            if der is None:
                raise ValueError("the site presented no client certificate")
            cert = x509.load_der_x509_certificate(der)
            who = identity_from_cert(cert)
            kit = self.out / "sites" / who.name
            if (
                who.role != "site"
                or x509.load_pem_x509_certificate((kit / "tls.crt").read_bytes()) != cert
            ):
                raise ValueError(
                    f"{who.role} {who.name!r} did not present its site kit's certificate"
                )
            ctx.load_cert_chain(kit / "tls.crt", kit / "tls.key")
            cap.site = who.name
        return ctx

    async def _listen(self, kind: str, host: str, port: int) -> int:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = self._loop.create_task(self._relay(kind, host, port, reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        server = await asyncio.start_server(
            accepted,
            "127.0.0.1",
            0,
            ssl=self._server_context(kind),
            ssl_handshake_timeout=self.timeout_s,
        )
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _relay(
        self,
        kind: str,
        host: str,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        cap = Capture(kind)
        with self._lock:
            self.captures.append(cap)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            tls = writer.get_extra_info("ssl_object")
            cap.alpn = tls.selected_alpn_protocol()
            ctx = self._client_context(cap, tls)
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), self.timeout_s
            )
            upstream = up_writer
            self._writers.add(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer, cap, cap.sent),
                self._pipe(up_reader, writer, cap, cap.received),
            )
        except (TimeoutError, OSError, ValueError) as exc:
            cap.error = f"{type(exc).__name__}: {exc}"
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, cap: Capture, sink: bytearray
    ) -> None:
        try:
            while data := await src.read(READ_BYTES):
                self._keep(sink, data)
                dst.write(data)
                await dst.drain()
        except (OSError, ssl.SSLError) as exc:  # one end went away: the other one goes too
            cap.error = cap.error or f"{type(exc).__name__}: {exc}"
        finally:
            dst.close()

    def _keep(self, sink: bytearray, data: bytes) -> None:
        with self._lock:
            if self._kept + len(data) > self.limit_bytes:
                self.overflow = True
                return
            self._kept += len(data)
            sink += data

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout_s)
        for server in self._servers:
            await asyncio.wait_for(server.wait_closed(), self.timeout_s)
        for w in self._writers:  # no TLS goodbye with a peer that may never answer
            w.transport.abort()
        await asyncio.sleep(0.1)  # let the transports finish closing


# ---- HTTP/2 and gRPC ----------------------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
(
    DATA,
    HEADERS,
    PRIORITY,
    RST_STREAM,
    SETTINGS,
    PUSH_PROMISE,
    PING,
    GOAWAY,
    WINDOW_UPDATE,
    CONTINUATION,
) = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE = 0x1
FRAME_NAMES = (
    "DATA",
    "HEADERS",
    "PRIORITY",
    "RST_STREAM",
    "SETTINGS",
    "PUSH_PROMISE",
    "PING",
    "GOAWAY",
    "WINDOW_UPDATE",
    "CONTINUATION",
)


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes


def h2_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """The HTTP/2 frames in ``data`` (no preface) and the bytes of an unfinished last frame."""
    frames, at = [], 0
    while len(data) - at >= 9:
        length = int.from_bytes(data[at : at + 3], "big")
        end = at + 9 + length
        if end > len(data):
            break
        stream = int.from_bytes(data[at + 5 : at + 9], "big") & 0x7FFFFFFF
        frames.append(Frame(data[at + 3], data[at + 4], stream, bytes(data[at + 9 : end])))
        at = end
    return frames, bytes(data[at:])


def _unpad(frame: Frame) -> bytes:
    p = frame.payload
    if frame.flags & PADDED:
        pad = p[0]
        if pad >= len(p):
            raise ValueError(f"stream {frame.stream}: padding {pad} longer than the frame")
        p = p[1 : len(p) - pad]
    return p


@dataclass
class GrpcCall:
    """One stream a client opened: its request headers and the gRPC messages it sent."""

    stream: int
    headers: list[tuple[str, str]]
    messages: list[bytes] = field(default_factory=list)
    ended: bool = False  # the client closed its side (END_STREAM)
    reset: bool = False  # the client cancelled it (RST_STREAM)
    rest: bytes = b""  # the start of a message the stream never finished

    @property
    def path(self) -> str:
        return next((v for k, v in self.headers if k == ":path"), "")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


def _table_size(received: bytes) -> int:
    """The HPACK table size the server allowed the client (its SETTINGS), default 4096."""
    size = 4096
    for f in h2_frames(received)[0]:
        if f.type == SETTINGS and not f.flags & ACK:
            for i in range(0, len(f.payload) - 5, 6):
                if int.from_bytes(f.payload[i : i + 2], "big") == SETTINGS_HEADER_TABLE_SIZE:
                    size = int.from_bytes(f.payload[i + 2 : i + 6], "big")
    return size


def grpc_messages(body: bytes, encoding: str | None) -> tuple[list[bytes], bytes]:
    """Length-prefixed gRPC messages (decompressed) and the bytes of an unfinished last one."""
    out, at = [], 0
    while len(body) - at >= 5:
        n = int.from_bytes(body[at + 1 : at + 5], "big")
        if len(body) - at - 5 < n:
            break
        msg = bytes(body[at + 5 : at + 5 + n])
        if body[at] & 1:
            if encoding == "gzip":
                msg = gzip.decompress(msg)
            elif encoding == "deflate":
                msg = zlib.decompress(msg)
            else:
                raise ValueError(f"compressed gRPC message with grpc-encoding {encoding!r}")
        out.append(msg)
        at += 5 + n
    return out, bytes(body[at:])


def grpc_calls(sent: bytes, received: bytes = b"") -> tuple[list[GrpcCall], dict[str, int], bytes]:
    """Decode a client's side of an HTTP/2 connection: its gRPC calls in order, a count of its
    frames by type, and the bytes of an unfinished last frame. ``received`` (the server's side)
    gives the HPACK table size the server allowed."""
    if not sent.startswith(PREFACE):
        raise ValueError("not an HTTP/2 client connection (no connection preface)")
    frames, rest = h2_frames(sent[len(PREFACE) :])
    size = _table_size(received)
    decoder = hpack.Decoder(max_header_list_size=1 << 20)
    decoder.max_allowed_table_size = size
    decoder.header_table_size = min(size, 4096)
    calls: dict[int, GrpcCall] = {}
    bodies: dict[int, bytearray] = {}
    counts: dict[str, int] = {}
    block: tuple[int, bool, bytearray] | None = None  # a header block waiting for its CONTINUATIONs
    for f in frames:
        name = FRAME_NAMES[f.type] if f.type < len(FRAME_NAMES) else f"type {f.type}"
        counts[name] = counts.get(name, 0) + 1
        if block is not None and f.type != CONTINUATION:
            raise ValueError(
                f"stream {block[0]}: a header block is interrupted by a {f.type} frame"
            )
        if f.type == HEADERS:
            p = _unpad(f)
            block = (
                f.stream,
                bool(f.flags & END_STREAM),
                bytearray(p[5:] if f.flags & PRIORITY_FLAG else p),
            )
        elif f.type == CONTINUATION:
            if block is None or block[0] != f.stream:
                raise ValueError(f"stream {f.stream}: CONTINUATION without HEADERS")
            block[2].extend(f.payload)
        elif f.type == DATA:
            if f.stream not in calls:
                raise ValueError(f"stream {f.stream}: DATA before HEADERS")
            bodies[f.stream].extend(_unpad(f))
            calls[f.stream].ended |= bool(f.flags & END_STREAM)
        elif f.type == RST_STREAM and f.stream in calls:
            calls[f.stream].reset = True
        elif f.type == PUSH_PROMISE:
            raise ValueError("a client sent PUSH_PROMISE")
        if block is not None and (f.flags & END_HEADERS):
            stream, end, raw = block
            headers = [(str(k), str(v)) for k, v in decoder.decode(bytes(raw))]
            if stream in calls:
                calls[stream].headers += headers  # trailers
            else:
                calls[stream] = GrpcCall(stream, headers)
                bodies[stream] = bytearray()
            calls[stream].ended |= end
            block = None
    for stream, call in calls.items():
        call.messages, call.rest = grpc_messages(
            bytes(bodies[stream]), call.header("grpc-encoding")
        )
    return list(calls.values()), counts, rest


# ---- HTTP/1.1 and Flower ------------------------------------------------------------------------


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]  # names in lower case
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


def _chunked(data: bytes, at: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``at``: (body, end), or None if it is unfinished."""
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(data[at:eol].split(b";")[0].strip(), 16)
        at = eol + 2
        if size == 0:
            while True:  # trailers, up to an empty line
                eol = data.find(b"\r\n", at)
                if eol < 0:
                    return None
                line, at = data[at:eol], eol + 2
                if not line:
                    return bytes(body), at
        if len(data) < at + size + 2:
            return None
        if data[at + size : at + size + 2] != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        body += data[at : at + size]
        at += size + 2


def http1_requests(sent: bytes) -> tuple[list[HttpRequest], bytes]:
    """The HTTP/1.1 requests a client sent on one connection, and the bytes of an unfinished last
    one."""
    out, at = [], 0
    while at < len(sent):
        eoh = sent.find(b"\r\n\r\n", at)
        if eoh < 0:
            break
        lines = bytes(sent[at:eoh]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"bad header line {line[:80]!r}")
            headers.append((name.strip().lower(), value.strip()))
        req = HttpRequest(parts[0], parts[1], headers, b"")
        start = eoh + 4
        if (req.header("transfer-encoding") or "").lower() == "chunked":
            got = _chunked(bytes(sent), start)
            if got is None:
                break
            req.body, end = got
        else:
            end = start + int(req.header("content-length") or 0)
            if end > len(sent):
                break
            req.body = bytes(sent[start:end])
        encoding = (req.header("content-encoding") or "identity").lower()
        if encoding == "gzip":
            req.body = gzip.decompress(req.body)
        elif encoding != "identity":
            raise ValueError(f"request body with content-encoding {encoding!r}")
        out.append(req)
        at = end
    return out, bytes(sent[at:])


@dataclass
class FleetCall:
    """One Fleet API request of a SuperNode: its path, the node key that signed it, its protobuf."""

    path: str
    node_key: bytes | None  # PEM public key from the request's node-auth header
    request: ProtoMessage
    body_bytes: int


def fleet_calls(requests: Iterable[HttpRequest]) -> list[FleetCall]:
    """Decode SuperNode requests with Flower's own request types; ValueError for anything else."""
    out = []
    for r in requests:
        path = r.path.split("?")[0]
        cls = PROTOBUF_REQUEST_TYPES.get((r.method, path))
        if cls is None or not path.startswith("/v1/fleet/"):
            raise ValueError(f"not a Fleet API request: {r.method} {r.path}")
        if r.header("content-type") != "application/protobuf":
            raise ValueError(f"{path}: content-type {r.header('content-type')!r}")
        key = r.header(FLEET_HTTP_PUBLIC_KEY_HEADER)
        out.append(
            FleetCall(
                path, base64.b64decode(key) if key else None, cls.FromString(r.body), len(r.body)
            )
        )
    return out


def pushed_objects(calls: Iterable[FleetCall]) -> dict[str, bytes]:
    """Object id -> content of every object pushed; each content is checked against its id and
    Flower's own format check."""
    out: dict[str, bytes] = {}
    for c in calls:
        if isinstance(c.request, PushObjectRequest):
            content = c.request.object_content
            if hashlib.sha256(content).hexdigest() != c.request.object_id:
                raise ValueError(
                    f"pushed object {c.request.object_id[:12]} does not hash to its id"
                )
            validate_object_content(content)
            out[c.request.object_id] = content
    return out


def object_type(content: bytes) -> str:
    return get_object_type_from_object_content(content)


def object_body(content: bytes) -> bytes:
    """A pushed object without its header (type, children, length), as Flower reads it."""
    return get_object_body(content, inflatable_class_registry[object_type(content)])


def pushed_messages(
    calls: Iterable[FleetCall], objects: Mapping[str, bytes]
) -> tuple[list[Message], set[str]]:
    """Every message a node pushed, inflated by Flower from the pushed objects, and the ids of
    all objects their trees name; ValueError if a tree names an object that was not pushed."""
    messages, named = [], set()
    for c in calls:
        if not isinstance(c.request, PushMessagesRequest):
            continue
        tree: ObjectTree
        for tree in c.request.message_object_trees:
            ids = [t.object_id for t in iterate_object_tree(tree)]
            missing = [i[:12] for i in ids if i not in objects]
            if missing:
                raise ValueError(
                    f"message {tree.object_id[:12]} names objects that were not pushed: {missing}"
                )
            named.update(ids)
            msg = inflate_object_from_contents(
                tree.object_id, dict(objects), keep_object_contents=True
            )
            assert isinstance(msg, Message)
            messages.append(msg)
    return messages, named


# ---- planted values -----------------------------------------------------------------------------

KEY_BYTES = 8


def find_needles(
    haystack: bytes | bytearray, needles: Mapping[bytes, Any]
) -> list[tuple[int, Any]]:
    """Every offset of ``haystack`` where one of ``needles`` (each at least 8 bytes) starts, with
    the needle's label. Candidates come from the needles' first 8 bytes, compared as uint64 at
    all 8 alignments at once (numpy); each candidate is then compared in full."""
    by_key: dict[int, list[bytes]] = {}
    for needle in needles:
        if len(needle) < KEY_BYTES:
            raise ValueError(
                f"needle {needle!r} is shorter than {KEY_BYTES} bytes; it would match by chance"
            )
        by_key.setdefault(int.from_bytes(needle[:KEY_BYTES], "little"), []).append(needle)
    if not by_key:
        return []
    keys = np.fromiter(by_key, dtype=np.uint64, count=len(by_key))
    data = bytes(haystack)
    hits: list[tuple[int, Any]] = []
    for shift in range(KEY_BYTES):
        count = (len(data) - shift) // KEY_BYTES
        if count <= 0:
            continue
        words = np.frombuffer(data, dtype="<u8", count=count, offset=shift)
        for i in np.flatnonzero(np.isin(words, keys)):
            at = shift + KEY_BYTES * int(i)
            for needle in by_key[int(words[i])]:
                if data[at : at + len(needle)] == needle:
                    hits.append((at, needles[needle]))
    return sorted(hits, key=lambda h: h[0])
