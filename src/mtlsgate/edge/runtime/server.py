"""The edge worker's connections: TLS on memory BIOs, strict HTTP/1.1, rules, origin relay.

Everything per connection and per request is driven by asyncio Protocol callbacks (no task or
stream per request), HTTP framing is parsed by httptools (llhttp), and TLS records go through a
tls_engine session (OpenSSL called directly, or pyOpenSSL's public API as the fallback). One
worker process runs one event loop; several workers share the port (SO_REUSEPORT).

The per-request path is written for few Python calls (bench/README.md has the figures): bytes
to send are collected during one event and encrypted and written once at its end; timeouts are
deadlines a worker-wide sweep checks, not a timer per connection or request; the client
certificate is parsed only when a field, header or log line needs it, once per connection.

Requests on a connection are answered in order: while one is at the origin, later pipelined
requests wait in a queue with their bodies buffered (bounded: reading pauses past the limit).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, cast

import httptools
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from mtlsgate.edge.facts import RequestFacts
from mtlsgate.edge.runtime.connection_options import named_fields, without_named
from mtlsgate.edge.runtime.observe import NO_LOG_MEMO, LogMemo, Observer
from mtlsgate.edge.runtime.origin import OriginPool, OriginRequest
from mtlsgate.edge.runtime.simple_head import REQUEST_LINE, Fields, parse_fields
from mtlsgate.edge.runtime.tls_engine import DONE, WANT, Engine, select_engine
from mtlsgate.edge.snapshot import HeaderOps, HostProfile, Origin, Snapshot
from mtlsgate.edge.timeouts import EdgeTimeouts
from mtlsgate.edge.tls import HandshakeState
from mtlsgate.pki.client_auth import ClientCertFacts, Verdict

log = logging.getLogger("mtlsgate.edge")

MAX_QUEUED_BODY = 1024 * 1024
MAX_HEADER_BYTES = 32 * 1024
# How often the worker looks for connections past their deadline: timeouts fire up to this late.
SWEEP_INTERVAL = 0.25
# How long a closed connection may take to send what it still has before it is aborted.
CLOSE_GRACE = 10.0

# Request headers the edge sets itself: a client-sent copy never reaches the origin.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)
# (As at Cloudflare, `cf-` and `x-cf-` names belong to the edge: see edge/header_policy.py.)
SPOOFABLE_PREFIXES = (b"cf-", b"x-cf-", b"client-cert", b"x-forwarded-")
SPOOFABLE = frozenset(
    {b"client-cert", b"client-cert-chain", b"x-real-ip", b"true-client-ip", b"forwarded"}
)
# What the head of a forwarded request leaves out: the hop's own headers and the edge's.
_DROPPED = HOP_BY_HOP | SPOOFABLE
# Request headers that decide the request's framing or target: looked at as they are parsed.
_FRAMING = frozenset({b"host", b"transfer-encoding", b"content-length", b"expect"})

_REASONS = {
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    408: b"Request Timeout",
    421: b"Misdirected Request",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
_VERIFIED = "cf.tls_client_auth.cert_verified"
# The longest head _simple keeps whole for a repeat (typical heads are a few hundred bytes),
# and what it keeps of one: method, target, HTTP minor version, then the Fields.
_HEAD_SEEN_MAX = 2048
HeadRead = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]], bytes, bytes]
# (snapshot, verdict, the origin head's request and Host lines, what follows its CF-Ray line,
# origin, rule id, action): see _repeat. (The request itself is the connection's head_read.)
Plan = tuple[Snapshot, Verdict | None, bytes, bytes, Origin, str, str]
_FENCED = b"this edge cannot confirm that its configuration is current\n"
_NO_CERT_HEADERS = (
    b"cf-cert-presented: false\r\ncf-cert-verified: false\r\ncf-cert-revoked: false\r\n"
)


def simple_response(
    status: int, body: bytes, content_type: bytes = b"text/plain", close: bool = False
) -> bytes:
    reason = _REASONS.get(status, b"Error")
    head = [
        b"HTTP/1.1 %d %s\r\n" % (status, reason),
        b"Content-Type: " + content_type + b"\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Connection: close\r\n" if close else b"",
        b"\r\n",
    ]
    return b"".join(head) + body


class Request:
    """One parsed request on a client connection. Most attributes keep their class-level
    default for most requests, so creating one sets only five."""

    method: bytes
    version: str = "1.1"
    host: bytes
    keep_alive: bool = True
    chunked: bool = False
    content_length: bytes | None = None
    expect_continue = False
    has_body: bool = False
    body: list[bytes] | tuple[()] = ()  # buffered while an earlier request is at the origin
    done = False
    origin: OriginRequest | None = None
    facts: RequestFacts | None = None
    status = 0
    rule_id = ""
    action = ""
    origin_seconds: float | None = None
    plan: Plan | None = None  # the connection's plan this request was forwarded by (observe.py)

    def __init__(
        self,
        started: float,
        url: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        host: bytes = b"",
        method: bytes = b"",
    ) -> None:
        self.started = started
        self.url = url
        self.headers: list[tuple[bytes, bytes]] = [] if headers is None else headers
        self.host = host
        self.method = method


def _ray_headers(start: int) -> Iterator[bytes]:
    """CF-Ray header lines: a counter from the start time, formatted in batches (a
    per-request format call was a visible share of the request path)."""
    while True:
        yield from [b"CF-Ray: %012x\r\n" % (i & 0xFFFFFFFFFFFF) for i in range(start, start + 1024)]
        start += 1024


class EdgeWorker:
    """Per-process state: the current snapshot, the TLS engine, the origin pool, counters."""

    def __init__(
        self,
        snapshot: Snapshot,
        loop: asyncio.AbstractEventLoop,
        observer: Observer | None = None,
        engine: Engine | None = None,
        timeouts: EdgeTimeouts | None = None,
    ) -> None:
        self.timeouts = timeouts or EdgeTimeouts.with_env()
        self.idle_timeout = self.timeouts.idle
        self.header_timeout = self.timeouts.header
        self.engine = engine or select_engine()
        log.info("edge TLS path: %s (pid %d)", self.engine.name, os.getpid())
        self.observer = observer or Observer(None, "local")
        self.loop = loop
        self.pool = OriginPool(loop, self.timeouts)
        self.connections: set[ClientConnection] = set()
        self.reject_context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self.rays = _ray_headers(int(time.time() * 1000) & 0xFFFFFFFF)
        self.snapshot = snapshot
        self.install(snapshot)
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)
        # Past this loop time, requests get 503 until the configuration is confirmed current
        # again (edge/liveness.py). Never, unless a watcher sets fence_after.
        self.fence_after: float | None = None
        self.fenced_from = float("inf")

    def confirmed(self, at: float) -> None:
        """The store confirmed, as of loop time `at`, that this worker's config is current."""
        if self.fence_after is not None:
            self.fenced_from = at + self.fence_after

    def install(self, snapshot: Snapshot) -> None:
        """Swap the configuration: new handshakes and the next request of every open
        connection see it (a removed association must not keep authorising a connection)."""
        profiles = [*snapshot.exact.values(), *snapshot.wildcard.values()]
        if snapshot.default is not None:
            profiles.append(snapshot.default)
        for profile in profiles:
            self.engine.prepare_context(profile.context, profile.mtls)
        self.snapshot = snapshot

    def on_sni(self, conn: SSL.Connection) -> None:
        """Pick the host profile for the name the client asked for; unknown names fail the
        handshake (nothing of an unknown hostname reaches any origin)."""
        state: HandshakeState = conn.get_app_data()
        raw = conn.get_servername()
        name = raw.decode("ascii", "replace") if raw else None
        # Read once: the config thread may install a newer snapshot between any two bytecodes,
        # and the profile and the version recorded must come from the same one (a verdict
        # labelled with a newer version than its trust set is never re-checked).
        snapshot = self.snapshot
        profile = snapshot.lookup(name)
        if profile is None:
            # A context without a certificate: the handshake fails with handshake_failure.
            # (Raising here would only print a traceback from inside cffi.)
            conn.set_context(self.reject_context)
            return
        state.sni = name.lower().rstrip(".") if name else None
        state.version = snapshot.version
        if profile is state.profile:
            return  # the context the connection started on (no SNI, or the default's name)
        state.profile = profile
        conn.set_context(profile.context)
        # set_context switches certificate and trust store but not the verify mode.
        self.engine.set_verify(conn, profile.mtls)

    def protocol_factory(self) -> ClientConnection:
        return ClientConnection(self)

    def _sweep(self) -> None:
        """Fire the deadlines that have passed (idle, header and origin-response timeouts)."""
        now = self.loop.time()
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        for conn in [c for c in self.connections if c.deadline <= now]:
            conn.timeout(now)

    def close(self) -> None:
        self._sweeper.cancel()


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "__weakref__",
        "_anchor",
        "_cert",
        "_facts",
        "_fingerprint",
        "_paused_origin",
        "_snapshot",
        "active",
        "body_seen",
        "cert_block",
        "cert_block_version",
        "closing",
        "current",
        "deadline",
        "decided",
        "fields_parsed",
        "fields_raw",
        "fwd_tail",
        "handshaken",
        "head_raw",
        "head_read",
        "head_seen",
        "header_bytes",
        "in_head",
        "log_ident",
        "log_memo",
        "out",
        "parser",
        "peer",
        "plan",
        "profile",
        "queue",
        "rejected",
        "session",
        "state",
        "transport",
        "verdict",
        "verdict_version",
        "worker",
    )

    def __init__(self, worker: EdgeWorker) -> None:
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.session: Any = None
        self.state = HandshakeState()
        self.handshaken = False
        self.closing = False
        # (Set when the handshake is done, before any plaintext arrives.)
        self.parser: httptools.HttpRequestParser = _NO_PARSER
        # The request whose head or body the parser is in (or the last one); a placeholder
        # until the first begins, so the callbacks need no None checks.
        self.current: Request = _NO_REQUEST
        self.queue: deque[Request] | None = None
        self.rejected: bytes | None = None  # a later pipelined request's error (see _reject)
        self.active: Request | None = None
        # The client-certificate verdict; None on a hostname that does not ask for one.
        self.verdict: Verdict | None = None
        self._cert: tuple[Any, list[Any]] | None = None  # (leaf, chain), parsed on first use
        self._facts: ClientCertFacts | None = None
        self._fingerprint: str | None = None
        self._anchor: bytes | None = None
        self._paused_origin: Any = None  # the origin connection pause_writing() stopped
        # The connection's profile in the current snapshot, as its last request looked it up
        # (observe.py names it in log lines), and the snapshot it was looked up in.
        self.profile: HostProfile | None = None
        self._snapshot: Snapshot | None = None
        self.peer = ""  # the client's address as text
        self.header_bytes = 0
        self.body_seen = 0  # request body bytes parsed on this connection (see data_received)
        # Between the end of one request and the end of the next one's head; raw bytes of it.
        self.in_head = True
        self.head_raw = 0
        self.deadline = 0.0
        self.out: list[bytes] = []  # plaintext to encrypt and send at the end of this event
        # The header fields of the last head taken by _simple, raw and parsed.
        self.fields_raw = b""
        self.fields_parsed: Fields = _NO_FIELDS
        # The last simple head whole, and what it was read as: see _simple.
        self.head_seen = b""
        self.head_read: HeadRead = _NO_HEAD
        # How the last simple head's request was forwarded, for a repeat of it: see _repeat.
        self.plan: Plan | None = None
        self.log_ident: tuple[Verdict | None, str, str, str] | None = None  # see observe.py
        self.log_memo: LogMemo = NO_LOG_MEMO  # see observe.py
        self.cert_block: bytes | None = None
        self.cert_block_version = -1
        self.verdict_version = -1
        # (profile, verdict, (log rule index, firewall rule index)): see _start.
        self.decided: tuple[HostProfile | None, Verdict | None, tuple[int, int]] = _UNDECIDED
        # (client headers, cf-cert-* block, what follows CF-Ray in the origin head): see
        # _origin_head.
        self.fwd_tail: tuple[list[tuple[bytes, bytes]] | None, bytes | None, bytes] = _NO_TAIL

    # --- transport events ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        worker = self.worker
        snapshot = worker.snapshot
        initial = snapshot.default or next(iter(snapshot.exact.values()), None)
        if initial is None:
            transport.close()
            return
        self.state.profile = initial
        self.state.version = snapshot.version
        self.session = worker.engine.new_session(initial.context, self.state)
        worker.connections.add(self)
        self.deadline = worker.loop.time() + worker.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        # The parser holds this connection's callbacks (a reference cycle): dropped here, the
        # connection and its OpenSSL objects are freed now, not at the cyclic GC's next pass.
        self.parser = _NO_PARSER
        self.worker.connections.discard(self)
        if self.session is not None:
            self.session.forget()
        active = self.active
        if active is not None and active.origin is not None:
            active.origin.abort()

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self.closing or self.rejected is not None:
            return  # (rejected: reading is paused; bytes read before the pause are not parsed)
        if not self.handshaken:
            status = session.handshake(data)
            out = session.drain()
            if out:
                self.transport.write(out)  # type: ignore[union-attr]
            if status != DONE:
                if status != WANT:
                    # A malformed ClientHello, an unknown hostname, a garbage record: this
                    # connection only.
                    self._close()
                return
            self._handshake_done()
            data = b""  # records that came with the client's Finished are inside the session
        plain = session.decrypt(data)
        if plain and (self.active is not None or not self.current.done or not self._simple(plain)):
            # HTTP framing: httptools calls on_message_begin ... on_message_complete below.
            waiting = self.in_head
            body_seen = self.body_seen
            try:
                self.parser.feed_data(plain)
            except httptools.HttpParserUpgrade:
                self._reject(400, b"protocol upgrades are not supported\n")
            except httptools.HttpParserError as e:
                # httptools wraps an exception raised in a callback in HttpParserCallbackError
                # (the original is its __context__): a _Reject never arrives here as itself.
                cause = e.__context__ or e.__cause__
                if self.current.done and not self.current.keep_alive:
                    # Bytes after a request that ends the connection (llhttp refuses them): its
                    # answer is still owed; the rest is ignored, as nginx ignores it.
                    pass
                elif isinstance(cause, _Reject):
                    self._reject(cause.status, cause.body)
                else:
                    self._reject(400, b"malformed request\n")
            except _Reject as r:
                self._reject(r.status, r.body)
            else:
                # A head still arriving is bounded before any header completes (httptools
                # buffers a partial header line without limit). A chunk that began in the head
                # and left it unfinished is counted from the next chunk on: the bound is the
                # limit plus one read.
                if waiting and self.in_head:
                    self.head_raw += len(plain)
                    if self.head_raw > MAX_HEADER_BYTES + 1024:
                        self._reject(431, b"request header fields too large\n")
                elif (
                    not waiting
                    and self.current.chunked
                    and not self.in_head
                    and not self.current.done
                ):
                    # In a chunked body, a read that delivered no body went into chunk framing
                    # or a trailer line, which httptools holds until the line ends: bounded as
                    # a head is (a trailer line that never ended grew without limit).
                    if self.body_seen != body_seen:
                        self.head_raw = 0
                    else:
                        self.head_raw += len(plain)
                        if self.head_raw > MAX_HEADER_BYTES + 1024:
                            self._reject(431, b"request header fields too large\n")
        elif not session.eof:
            # Records without application data (a KeyUpdate) may need an answer.
            out = session.drain()
            if out and self.transport is not None:
                self.transport.write(out)
        if self.out:
            self.flush()
        if session.eof:
            self._close()

    def _handshake_done(self) -> None:
        self.handshaken = True
        worker = self.worker
        profile = self.state.profile
        assert profile is not None
        if profile.mtls:
            self.verdict = self.session.verdict()
            if profile.revocation is not None:  # None for most accounts: no cost then
                self._apply_revocation(profile)
        # The version the trust set came from, not the current one: a change that landed during
        # the handshake is re-checked on the first request (_recheck).
        self.verdict_version = self.state.version
        worker.observer.handshake(
            profile.hostname, self.verdict.status if self.verdict is not None else "none"
        )
        self.parser = httptools.HttpRequestParser(self)
        self.deadline = worker.loop.time() + worker.idle_timeout

    # --- what rules, headers and logs ask of the connection (computed once) -----------------

    def client_facts(self) -> ClientCertFacts | None:
        """The cf.tls_client_auth.* values; None where the hostname does not ask."""
        verdict = self.verdict
        if verdict is None:
            return None
        facts = self._facts
        if facts is None or facts.verdict is not verdict:
            cert = self._cert
            if cert is None:
                conn = self.session.conn
                leaf = conn.get_peer_certificate(as_cryptography=True)
                chain = conn.get_peer_cert_chain(as_cryptography=True) or []
                cert = self._cert = (leaf, chain)
            facts = self._facts = ClientCertFacts(cert[0], cert[1], verdict)
        return facts

    def fingerprint(self) -> str:
        fp = self._fingerprint
        if fp is None:
            facts = self.client_facts()
            fp = self._fingerprint = (
                str(facts.get("cf.tls_client_auth.cert_fingerprint_sha256"))
                if facts is not None
                else ""
            )
        return fp

    def peer_ip(self) -> Any:
        return ipaddress.ip_address(self.peer)

    def local_address(self) -> tuple[Any, int]:
        sock = self.transport.get_extra_info("sockname") if self.transport is not None else None
        if not sock:
            return ipaddress.ip_address("0.0.0.0"), 0
        return ipaddress.ip_address(sock[0]), int(sock[1])

    def tls_info(self) -> tuple[str, str]:
        conn = self.session.conn
        return conn.get_protocol_version_name(), conn.get_cipher_name() or ""

    # --- HTTP parsing ----------------------------------------------------------------------

    def _simple(self, plain: bytes) -> bool:
        """A whole keep-alive request head of the common shape, alone in its read, is taken
        here without httptools (simple_head.py); False: httptools reads `plain` as usual.
        (Called only between requests, with nothing of another head pending.)"""
        kept = True  # (plain is the head kept in head_seen)
        if plain == self.head_seen:
            # The same head as the connection's last simple one (a client polling, a load
            # generator, a health check): read as it was, and forwarded as it was when nothing
            # it was decided by has changed.
            plan = self.plan
            if plan is not None:
                if plan[0] is self.worker.snapshot and plan[1] is self.verdict:
                    if self._repeat(plan):
                        return True
                else:
                    # (Decided under another configuration or verdict: _start decides anew, and
                    # the plan would only keep the old snapshot alive.)
                    self.plan = None
            method, url, minor, headers, host, connection = self.head_read
        else:
            if plain[-4:] != b"\r\n\r\n":
                return False
            line = REQUEST_LINE.match(plain)
            if line is None:
                return False
            fields = plain[line.end() :]
            if fields != self.fields_raw:
                parsed = parse_fields(fields)
                if parsed is None:
                    return False
                self.fields_raw, self.fields_parsed = fields, parsed
            headers, host, connection = self.fields_parsed
            method, url, minor = line.groups()
            if len(plain) <= _HEAD_SEEN_MAX:  # (what an idle connection holds stays small)
                self.head_seen = plain
                self.head_read = (method, url, minor, headers, host, connection)
                self.plan = None  # (the previous head's)
            else:
                kept = False
        if minor == b"1":
            if not host or connection == b"close":
                return False  # (a 400, or a last request: the parser's, as before)
        elif connection != b"keep-alive":
            return False
        # (The fields list is shared by the connection's requests with this head: never
        # changed after parsing, as only a chunked body's trailers would add to it.)
        req = self.current = Request(time.monotonic(), url, headers, host, method)
        req.done = True
        if minor == b"0":
            req.version = "1.0"
        self._start(req, kept)
        return True

    def _repeat(self, plan: Plan) -> bool:
        """Forward a repeat of the last simple head as its first instance was forwarded (see
        _start: made only where nothing but the snapshot, the verdict and the head decides
        it). False when the configuration is fenced: _start answers."""
        worker = self.worker
        now = worker.loop.time()
        if now > worker.fenced_from:
            return False
        _, _, prefix, tail, origin, rule_id, action = plan
        method, url, minor, headers, host, _ = self.head_read  # (the head the plan was made for)
        req = self.current = self.active = Request(time.monotonic(), url, headers, host, method)
        req.done = True
        req.plan = plan
        if minor == b"0":
            req.version = "1.0"
        if rule_id:
            req.rule_id, req.action = rule_id, action
        self.deadline = now + worker.pool.response_timeout
        origin_req = req.origin = OriginRequest(
            worker.pool, origin, b"".join((prefix, next(worker.rays), tail)), self, req
        )
        origin_req.ended = True  # (end_body's whole work for a bodiless request)
        return True

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.current = Request(time.monotonic())
        self.header_bytes = 0
        self.in_head = True
        if self.active is None:
            # (While a request is at the origin, its response deadline stands.)
            self.deadline = self.worker.loop.time() + self.worker.header_timeout

    def on_url(self, url: bytes) -> None:
        self.current.url += url
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431, b"request header fields too large\n")

    def on_header(self, name: bytes, value: bytes) -> None:
        # (Trailers of a chunked body come here too: counted with the head, as nginx does.)
        req = self.current
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431, b"request header fields too large\n")
        lname = name.lower()
        if lname in _FRAMING:
            if lname == b"host":
                if req.host:
                    raise _Reject(400, b"more than one Host header\n")
                req.host = value
            elif lname == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise _Reject(501, b"only the chunked transfer coding is supported\n")
                req.chunked = True
            elif lname == b"content-length":
                req.content_length = value
            elif lname == b"expect":
                req.expect_continue = value.lower() == b"100-continue"
        req.headers.append((lname, value))

    def on_headers_complete(self) -> None:
        if self.closing:
            # Answered and closed earlier in this read (a block before the body): requests
            # pipelined behind it are not started, so none reaches the origin.
            return
        req = self.current
        parser = self.parser
        self.in_head = False
        self.head_raw = 0
        version = req.version = parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                raise _Reject(400, b"unsupported HTTP version\n")
            if req.chunked:
                raise _Reject(400, b"chunked transfer coding in an HTTP/1.0 request\n")
        elif not req.host:
            raise _Reject(400, b"missing Host header\n")
        req.method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        # llhttp has validated Content-Length by now (one, decimal): a bodiless request
        # answered at its head (a block) leaves the connection usable.
        cl = req.content_length
        if req.chunked or cl is not None:  # (has_body stays False otherwise)
            req.has_body = req.chunked or cl.strip() not in (b"0", b"")  # type: ignore[union-attr]
        if self.active is None and not self.queue:
            self._start(req)
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(req)

    def on_body(self, body: bytes) -> None:
        self.body_seen += len(body)
        req = self.current
        if req is self.active and req.origin is not None:
            req.origin.send_body(body)
            return
        if req.body:
            req.body.append(body)
        else:
            req.body = [body]
        if sum(len(b) for b in req.body) > MAX_QUEUED_BODY and self.transport is not None:
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        req = self.current
        req.done = True
        self.in_head = True
        self.head_raw = 0
        origin = req.origin
        if origin is not None and req is self.active:
            if origin.chunked:
                origin.end_body()
            else:
                origin.ended = True  # (end_body's whole work without a chunked body)

    # --- requests ------------------------------------------------------------------------

    def _start(self, req: Request, kept: bool = False) -> None:
        """Answer at the edge, or send to the origin. `kept`: the request is the connection's
        kept simple head (_simple), whose forwarding may be remembered for repeats."""
        self.active = req
        if not self.peer:
            # Asked here, not per connection: a connection without requests never needs it.
            peer = self.transport.get_extra_info("peername") if self.transport else None
            self.peer = peer[0] if peer else "0.0.0.0"
        snapshot = self.worker.snapshot
        if snapshot is self._snapshot:
            profile = self.profile
        else:
            # The profile is looked up again in the current snapshot: a change made while the
            # connection is open applies to its next request.
            state = self.state
            assert state.profile is not None
            profile = snapshot.lookup(state.sni or state.profile.hostname)
            self._snapshot, self.profile = snapshot, profile
        if profile is None:
            self._respond(req, simple_response(421, b"this hostname is no longer served\n"))
            return
        target = profile
        raw_host = req.host
        if raw_host and raw_host != profile.name_bytes:
            host = raw_host.split(b":", 1)[0].decode("ascii", "replace").lower().rstrip(".")
            # The Host must name what the handshake named (the SNI; without SNI the default
            # hostname): on a wildcard profile that is the SNI, not the profile's "*." name.
            if host and host != (self.state.sni or profile.hostname):
                if profile.mtls:
                    # Another hostname's CA set must not be reachable through this handshake.
                    self._respond(
                        req, simple_response(421, b"Host does not match the TLS server name\n")
                    )
                    return
                target = snapshot.lookup(host)  # type: ignore[assignment]
                if target is None:
                    self._respond(req, simple_response(421, b"unknown hostname\n"))
                    return
                if target.mtls:
                    # A handshake that never asked for (or judged against this host's CAs) a
                    # client certificate must not reach an mTLS hostname.
                    self._respond(
                        req, simple_response(421, b"Host does not match the TLS server name\n")
                    )
                    return
        if self.verdict_version != snapshot.version:
            self._recheck(target, snapshot.version)
        worker = self.worker
        now = worker.loop.time()
        if now > worker.fenced_from:
            # The API may already report a revocation done without this worker (edge/liveness.py),
            # on any hostname: one this stale configuration serves without mTLS may have been
            # given an association since.
            self._respond(req, simple_response(503, _FENCED))
            return
        if raw_host == profile.name_bytes and target.connection_rules:  # (target is profile)
            # Rules that read only the connection's fields decide as they did for its previous
            # request, unless the configuration or the verdict changed since (new objects).
            decided = self.decided
            if decided[0] is not target or decided[1] is not self.verdict:
                decided = self.decided = (target, self.verdict, self._judge(req, target))
            logged, index = decided[2]
        else:
            logged, index = self._judge(req, target)
        if logged >= 0:
            req.rule_id, req.action = target.log_rule_ids[logged], "log"
        if index >= 0:
            rule = target.firewall_rules[index]
            req.rule_id, req.action = rule.rule_id, rule.action
            if rule.action == "block":
                resp = rule.response
                body = resp.content if resp is not None else b""
                status = resp.status if resp is not None else 403
                ctype = resp.content_type.encode() if resp is not None else b"text/plain"
                self._respond(req, simple_response(status, body, ctype))
                return
        if req.expect_continue and not req.done:
            # The edge accepts the body itself; the origin gets it without the Expect dance.
            self.out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
        origin = target.origin
        if target.origin_rules is not None:
            # Origin rules: the first matching route rule chooses host, port, Host header, SNI.
            route = target.origin_rules(req.facts)  # type: ignore[arg-type]
            if route >= 0:
                origin = target.origin_routes[route]
        head = self._origin_head(req, target, origin)
        self.deadline = now + worker.pool.response_timeout
        origin_req = req.origin = OriginRequest(worker.pool, origin, head, self, req)
        if (
            kept
            and raw_host == profile.name_bytes  # (so target is profile)
            and profile.connection_rules
            and profile.origin_rules is None
            and profile.late_transform is None
            and not profile.client_cert_forwarding
        ):
            # Everything above was decided by the snapshot, the verdict and the head alone
            # (the rules read only the connection's fields; no origin or late-transform rules;
            # a bodiless simple head): a repeat of the head is forwarded the same way, with
            # its own CF-Ray (_repeat). (The fencing check is repeated for each request.)
            self.plan = (
                snapshot, self.verdict, b"".join(self._request_lines(req, target, origin)),
                self.fwd_tail[2], origin, req.rule_id, req.action,
            )  # fmt: skip
            req.plan = self.plan
        if req.body:
            for chunk in req.body:
                origin_req.send_body(chunk)
            req.body = ()
            self.resume_reading()
        if req.done:
            origin_req.end_body()

    def _judge(self, req: Request, target: HostProfile) -> tuple[int, int]:
        """The request's facts, and the indices of the first matching log and firewall rules
        (-1: none)."""
        facts = req.facts = RequestFacts(self, req, target)
        # Two fields the request path already knows, set without a provider call: the seed's
        # rule reads exactly these.
        if req.host == target.name_bytes:
            facts["http.host"] = target.hostname
        verdict = self.verdict
        facts[_VERIFIED] = verdict is not None and verdict.verified  # (verified: presented too)
        logged = target.log_rules(facts) if target.log_rules is not None else -1
        return logged, target.firewall(facts) if target.firewall is not None else -1

    def _recheck(self, target: HostProfile, version: int) -> None:
        """The configuration changed since the handshake: a certificate verified against a CA
        that is no longer associated with the hostname is not verified any more, on this open
        connection too. (A CA added later does not verify an open connection: it takes a new
        handshake.)"""
        self.verdict_version = version
        self.cert_block = None
        verdict = self.verdict
        if verdict is None:
            return
        if not target.mtls:
            # The hostname no longer asks for certificates: the fields take their defaults.
            self.verdict = None
        elif verdict.verified and self._verifying_anchor() not in target.trust_fingerprints:
            self.verdict = Verdict.failed(20, 0)
        elif verdict.verified:
            # Revocations are re-decided from the handshake's own verdict, so a reactivation
            # un-revokes an open connection as a revocation reaches one.
            if verdict.revoked:
                self.verdict = Verdict(presented=True, verified=True)
            if target.revocation is not None:
                self._apply_revocation(target)

    def _apply_revocation(self, profile: HostProfile) -> None:
        """A verified certificate the account's revocations list stays verified and becomes
        revoked with the list's reason (cf.tls_client_auth.cert_revoked, as at Cloudflare)."""
        index = profile.revocation
        verdict = self.verdict
        if index is None or verdict is None or not verdict.verified:
            return
        # Cheap first: the peer's serial against every listed serial. The verified chain and
        # the two SHA-256 are paid only when the index may name this certificate.
        peer = self.session.conn.get_peer_certificate()
        if peer is None or not index.may_revoke(peer.get_serial_number()):
            return
        path = self.session.conn.get_verified_chain(as_cryptography=True) or []
        if not path:
            return
        leaf = path[0]
        issuer = path[1].fingerprint(hashes.SHA256()) if len(path) > 1 else None
        why = index.reason(leaf.serial_number, leaf.fingerprint(hashes.SHA256()), issuer)
        if why is not None:
            self.verdict = Verdict(presented=True, verified=True, revoked=True, reason=why)

    def _verifying_anchor(self) -> bytes | None:
        """SHA-256 of the trust anchor that verified the client (the verified chain's top)."""
        if self._anchor is None:
            path = self.session.conn.get_verified_chain(as_cryptography=True) or []
            if path:
                self._anchor = path[-1].fingerprint(hashes.SHA256())
        return self._anchor

    def _cert_header_block(self) -> bytes:
        """The encoded cf-cert-* headers: the same for every request of a connection under one
        configuration, so built once per connection and snapshot version."""
        version = self.worker.snapshot.version
        if self.cert_block is None or self.cert_block_version != version:
            from mtlsgate.pki.client_auth import managed_headers

            facts = self.client_facts()
            if facts is None:
                self.cert_block = _NO_CERT_HEADERS
            else:
                parts: list[bytes] = []
                for name_s, value_s in managed_headers(facts):
                    value = _CONTROL.sub(_escape_control, value_s.encode("latin-1", "replace"))
                    parts += [name_s.encode(), b": ", value, b"\r\n"]
                self.cert_block = b"".join(parts)
            self.cert_block_version = version
        return self.cert_block

    def _forwarded(self, headers: list[tuple[bytes, bytes]], ops: HeaderOps | None) -> bytes:
        """The client's headers as forwarded (without the hop's and the edge's own, and without
        those its Connection headers name), then the edge's X-Forwarded-For, X-Forwarded-Proto
        and CF-Connecting-IP."""
        out: list[bytes] = []
        forwarded: list[bytes] = []
        named: set[bytes] | None = None
        for name, value in headers:
            if name in _DROPPED or name.startswith(SPOOFABLE_PREFIXES):
                if name == b"x-forwarded-for" and value.strip():
                    forwarded.append(value.strip())
                elif name == b"connection":
                    named = named_fields(value, named)
                continue
            if ops is not None and name in ops:
                continue
            out += [name, b": ", value, b"\r\n"]
        if named is not None:
            # Fields the client's Connection header names were for this hop only (RFC 9110
            # §7.6.1, runtime/connection_options.py). Only the client's own fields go: the
            # edge's are added below, whatever the client names.
            out = without_named(out, named)
            if b"x-forwarded-for" in named:
                forwarded = []
        client_ip = self.peer.encode()
        # Documented: a client's X-Forwarded-For (all of them, in order) is kept and the
        # client's address appended; origins that trust it must trust only the last entry.
        xff = b", ".join([*forwarded, client_ip]) if forwarded else client_ip
        out += [b"X-Forwarded-For: ", xff, b"\r\n"]
        # Of the edge's own headers a rule may replace X-Forwarded-Proto and remove
        # CF-Connecting-IP (builder.py drops operations on the others).
        if ops is None or b"x-forwarded-proto" not in ops:
            out.append(b"X-Forwarded-Proto: https\r\n")
        if ops is None or b"cf-connecting-ip" not in ops:
            out += [b"CF-Connecting-IP: ", client_ip, b"\r\n"]
        return b"".join(out)

    @staticmethod
    def _request_lines(
        req: Request, profile: HostProfile, origin: Origin
    ) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
        """The origin head's request line and Host line (what precedes CF-Ray)."""
        # An HTTP/1.0 request may come without Host: the origin still gets one.
        host = (
            origin.host_header.encode("latin-1")
            if origin.host_header
            else req.host or profile.hostname.encode("ascii")
        )
        return (req.method, b" ", req.url, b" HTTP/1.1\r\nHost: ", host, b"\r\n")

    def _origin_head(self, req: Request, profile: HostProfile, origin: Origin) -> bytes:
        # Late-transform rules: the net effect of every matching rule, per header name (None
        # when no rule matched). They act on the headers as forwarded, i.e. after the client's
        # copies of the edge's own headers are gone, so a rule may set Client-Cert.
        ops = None
        if profile.late_transform is not None and req.facts is not None:
            ops = profile.late_transform(req.facts) or None
        line = self._request_lines(req, profile, origin)
        ray = next(self.worker.rays)
        cert = self._cert_header_block() if profile.managed_cert_headers else b""
        headers = req.headers
        if (
            ops is None
            and not profile.client_cert_forwarding
            and req.content_length is None
            and not req.chunked
        ):
            # A keep-alive client tends to send the same headers on every request: all that
            # follows CF-Ray (the forwarded headers, the edge's address and certificate headers)
            # is kept for the next one. (Identity first: the simple-head path shares the list.)
            # (Bodiless: no chunked trailers will be added to this request's headers.)
            tail = self.fwd_tail
            if headers is not tail[0] or cert is not tail[1]:
                if cert is tail[1] and headers == tail[0]:
                    block = tail[2]
                else:
                    block = b"".join((self._forwarded(headers, None), cert, b"\r\n"))
                tail = self.fwd_tail = (headers, cert, block)
            return b"".join((*line, ray, tail[2]))
        out = [*line, ray, self._forwarded(headers, ops), cert]
        if profile.client_cert_forwarding:
            facts = self.client_facts()
            if facts is not None:
                # Access forwarding: only the connection's first request that reaches the origin.
                out.append(profile.forwarding_headers(self, facts))
        if ops is not None:
            for op in ops.values():
                if op is not None:
                    # Computed values may hold CR, LF or NUL: escaped as in the cf-cert-* headers.
                    out += [op[0], b": ", _CONTROL.sub(_escape_control, op[1]), b"\r\n"]
        if req.chunked:
            out.append(b"Transfer-Encoding: chunked\r\n\r\n")
        elif req.content_length is not None:
            out += [b"Content-Length: ", req.content_length, b"\r\n\r\n"]
        else:
            out.append(b"\r\n")
        return b"".join(out)

    # --- the origin's side (called by origin.py; bytes are sent at the end of the event) ----

    def origin_response(self, req: Request, data: bytes) -> None:
        """Bytes of the origin's response, relayed as they arrive."""
        if not self.closing:
            self.out.append(data)

    def origin_failed(self, req: Request, status: int) -> None:
        """The origin failed before any byte of a response: answer for it."""
        body = b"origin timed out\n" if status == 504 else b"origin unreachable\n"
        self._respond(req, simple_response(status, body))
        self.flush()

    def origin_broken(self, req: Request) -> None:
        """The origin failed in the middle of a response: the client cannot be told cleanly."""
        self.flush()
        self._close()

    def flush(self) -> None:
        """Encrypt and write what this event produced, in one TLS write and one send."""
        out = self.out
        if not out or self.closing:
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        cipher = self.session.encrypt(data)
        if cipher and self.transport is not None:
            self.transport.write(cipher)

    def _respond(self, req: Request, payload: bytes) -> None:
        if self.closing:
            return
        req.status = int(payload[9:12])  # "HTTP/1.1 NNN": the edge's own answers
        if req.version == "1.0" and req.keep_alive:
            # An HTTP/1.0 client keeps the connection only when told so.
            payload = payload.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1)
        self.out.append(payload)
        self.finish(req)

    def finish(self, req: Request) -> None:
        """The request is answered (by the edge, or relayed whole from the origin)."""
        self.active = None
        worker = self.worker
        worker.observer.request_done(self, req)
        if req.body:
            # Answered at the edge with its body still buffered (reading may be paused for it).
            req.body = ()
            self.resume_reading()
        # Break the request's reference cycles (facts ↔ request, origin request ↔ request) so
        # reference counting frees it now: left to the cyclic GC, per-request garbage made the
        # collector a visible share of a worker's CPU.
        req.facts = None
        req.origin = None
        if not req.keep_alive or (not req.done and req.has_body):
            # Answered before its body arrived (a block): the rest of the body would be read
            # as the next request, so this connection ends here.
            self.flush()
            self._close()
            return
        # Waiting for the next request: its head has a shorter deadline once it has begun.
        following = self.current is not req and self.in_head
        self.deadline = worker.loop.time() + (
            worker.header_timeout if following else worker.idle_timeout
        )
        if self.queue:
            self._start(self.queue.popleft())
        elif self.rejected is not None:
            # The error of a later pipelined request, in its turn (see _reject).
            self.out.append(self.rejected)
            self.flush()
            self._close()

    def _reject(self, status: int, body: bytes) -> None:
        """A framing error: one answer, then the connection closes. An error in a request
        pipelined behind one still being answered is answered in its turn: the requests before
        it first (reading stops meanwhile; the parser is past use), then the error, then the
        close, so no earlier request's client reads the error as its own answer."""
        active = self.active
        if not self.closing and active is not None and self.current is not active:
            if self.queue and self.queue[-1] is self.current and not self.current.done:
                self.queue.pop()  # (its body was what failed: it is answered by the error)
            self.rejected = simple_response(status, body, close=True)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        if not self.closing:
            self.out.append(simple_response(status, body, close=True))
            self.flush()
        self._close()

    # --- plumbing ------------------------------------------------------------------------

    def resume_reading(self) -> None:
        """Read from the client again (after a buffered body or origin backpressure), unless
        the connection is closing or an error waits for its turn (see _reject)."""
        if not self.closing and self.rejected is None and self.transport is not None:
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        """The client reads slower than the origin answers (its socket buffer is full): stop
        reading the origin, so a response waits in the origin's socket, not in the worker."""
        active = self.active
        origin = active.origin.conn if active is not None and active.origin is not None else None
        if origin is not None and origin.transport is not None and not origin.closed:
            origin.transport.pause_reading()
            self._paused_origin = origin

    def resume_writing(self) -> None:
        origin = self._paused_origin
        self._paused_origin = None
        if self.active is not None:
            # The client is reading again: progress, as an origin read is.
            self.deadline = self.worker.loop.time() + self.worker.pool.response_timeout
        if origin is not None and origin.transport is not None and not origin.closed:
            origin.transport.resume_reading()

    def _close(self) -> None:
        if self.closing:
            return
        if self.out:
            self.flush()
        self.closing = True
        # A peer that never reads would keep the transport (and its unsent bytes) forever:
        # the sweep aborts it after CLOSE_GRACE.
        self.deadline = self.worker.loop.time() + CLOSE_GRACE
        transport = self.transport
        if self.session is not None and transport is not None:
            out = self.session.shutdown()
            if out:
                transport.write(out)
        if transport is not None:
            transport.close()

    def timeout(self, now: float) -> None:
        """The deadline passed: an idle or slow client is closed; a request waiting for its
        origin gets 504 (or, mid-response, the connection closes)."""
        active = self.active
        if self.closing:
            self.worker.connections.discard(self)
            if self.transport is not None:
                self.transport.abort()
        elif active is None:
            self._close()
        elif active.origin is not None:
            self.deadline = now + self.worker.idle_timeout
            active.origin.timed_out()
        else:
            self.deadline = now + self.worker.idle_timeout


# A certificate's names may hold CR, LF or NUL (RFC 4514 rendering leaves them raw): written
# into a header they would inject headers or requests into the origin connection.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _escape_control(m: re.Match[bytes]) -> bytes:
    return b"\\%02X" % m.group()[0]


# Placeholders for ClientConnection's attributes before there is a value (see __init__).
_NO_REQUEST = Request(0.0)
_NO_REQUEST.done = True  # (between requests: nothing of a head pending)
_NO_PARSER = cast(httptools.HttpRequestParser, None)
_UNDECIDED = (None, None, (-1, -1))
_NO_TAIL = (None, None, b"")
_NO_FIELDS: Fields = ([], b"", b"")
_NO_HEAD: HeadRead = (b"", b"", b"", [], b"", b"")


class _Reject(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


ProtocolFactory = Callable[[], ClientConnection]
