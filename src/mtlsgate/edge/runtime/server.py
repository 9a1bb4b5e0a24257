"""The edge worker's connections: TLS on memory BIOs, strict HTTP/1.1, rules, origin relay.

Everything per connection and per request is driven by asyncio Protocol callbacks (no task or
stream per request), HTTP framing is parsed by httptools (llhttp), and TLS is pyOpenSSL on memory
BIOs. One worker process runs one event loop; several workers share the port (SO_REUSEPORT).

Requests on a connection are answered in order: while one is at the origin, later pipelined
requests wait in a queue with their bodies buffered (bounded: reading pauses past the limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import httptools
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

from mtlsgate.edge.facts import RequestFacts
from mtlsgate.edge.runtime.observe import Observer
from mtlsgate.edge.runtime.origin import OriginPool, OriginRequest
from mtlsgate.edge.snapshot import HostProfile, Origin, Snapshot
from mtlsgate.edge.tls import HandshakeState, verify_callback
from mtlsgate.pki.client_auth import ClientCertFacts, Verdict

log = logging.getLogger("mtlsgate.edge")

# One TLS record's worth: pyOpenSSL allocates (and zeroes) a buffer of this size per call.
READ_CHUNK = 16384
MAX_QUEUED_BODY = 1024 * 1024
MAX_HEADER_BYTES = 32 * 1024
IDLE_TIMEOUT = 60.0
HEADER_TIMEOUT = 15.0

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
SPOOFABLE_PREFIXES = (b"cf-", b"client-cert", b"x-forwarded-")
SPOOFABLE = frozenset({b"client-cert", b"client-cert-chain", b"x-real-ip", b"forwarded"})

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
    """One parsed request on a client connection."""

    __slots__ = (
        "action",
        "body",
        "chunked",
        "done",
        "facts",
        "has_body",
        "headers",
        "host",
        "keep_alive",
        "method",
        "origin",
        "origin_seconds",
        "rule_id",
        "started",
        "status",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method: bytes = b""
        self.version: str = "1.1"
        self.host: bytes = b""
        self.keep_alive: bool = True
        self.chunked: bool = False
        self.has_body: bool = False
        self.body: list[bytes] = []
        self.done = False
        self.origin: OriginRequest | None = None
        self.facts: RequestFacts | None = None
        self.started = time.monotonic()
        self.status = 0
        self.rule_id = ""
        self.action = ""
        self.origin_seconds: float | None = None


class EdgeWorker:
    """Per-process state: the current snapshot, the origin pool, counters."""

    def __init__(
        self, snapshot: Snapshot, loop: asyncio.AbstractEventLoop, observer: Observer | None = None
    ) -> None:
        self.snapshot = snapshot
        self.observer = observer or Observer(None, "local")
        self.loop = loop
        self.pool = OriginPool(loop)
        self.connections: set[ClientConnection] = set()
        self.reject_context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._ray = int(time.time() * 1000) & 0xFFFFFFFF

    def install(self, snapshot: Snapshot) -> None:
        """Swap the configuration: new handshakes and the next request of every open
        connection see it (a removed association must not keep authorising a connection)."""
        self.snapshot = snapshot

    def next_ray(self) -> str:
        self._ray = (self._ray + 1) & 0xFFFFFFFFFFFF
        return f"{self._ray:012x}"

    def on_sni(self, conn: SSL.Connection) -> None:
        """Pick the host profile for the name the client asked for; unknown names fail the
        handshake (nothing of an unknown hostname reaches any origin)."""
        state: HandshakeState = conn.get_app_data()
        raw = conn.get_servername()
        name = raw.decode("ascii", "replace") if raw else None
        profile = self.snapshot.lookup(name)
        if profile is None:
            # A context without a certificate: the handshake fails with handshake_failure.
            # (Raising here would only print a traceback from inside cffi.)
            conn.set_context(self.reject_context)
            return
        state.profile = profile
        state.sni = name
        conn.set_context(profile.context)
        # set_context switches certificate and trust store but not the verify mode.
        if profile.mtls:
            conn.set_verify(SSL.VERIFY_PEER, verify_callback)
        else:
            conn.set_verify(SSL.VERIFY_NONE)

    def protocol_factory(self) -> ClientConnection:
        return ClientConnection(self)


class ClientConnection(asyncio.Protocol):
    def __init__(self, worker: EdgeWorker) -> None:
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.tls: SSL.Connection | None = None
        self.state = HandshakeState()
        self.handshaken = False
        self.closing = False
        self.parser: httptools.HttpRequestParser | None = None
        self.current: Request | None = None
        self.queue: deque[Request] = deque()
        self.active: Request | None = None
        self.cert_facts: ClientCertFacts | None = None
        self.peer_ip: Any = None
        self.local_ip: Any = None
        self.local_port: int = 0
        self.header_bytes = 0
        # Between the end of one request and the end of the next one's head; raw bytes of it.
        self.in_head = True
        self.head_raw = 0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.deadline = 0.0
        self.cert_block: bytes | None = None
        self.cert_block_version = -1
        self.verdict_version = -1
        self.anchor: bytes | None = None
        self.tls_version: str = ""
        self.tls_cipher: str = ""

    # --- transport events ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer_ip = ipaddress.ip_address(peer[0]) if peer else ipaddress.ip_address("0.0.0.0")
        if sock:
            self.local_ip = ipaddress.ip_address(sock[0])
            self.local_port = int(sock[1])
        snapshot = self.worker.snapshot
        initial = snapshot.default or next(iter(snapshot.exact.values()), None)
        if initial is None:
            transport.close()
            return
        self.state.profile = initial
        tls = SSL.Connection(initial.context, None)
        tls.set_accept_state()
        tls.set_app_data(self.state)
        self.tls = tls
        self.worker.connections.add(self)
        self._arm(HEADER_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.worker.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        if self.active is not None and self.active.origin is not None:
            self.active.origin.abort()

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        if tls is None or self.closing:
            return
        tls.bio_write(data)
        if not self.handshaken and not self._handshake():
            return
        while True:
            try:
                plain = tls.recv(READ_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._close()
                return
            except SSL.Error:
                self._close()
                return
            if not plain:
                break
            self._feed(plain)
            if self.closing:
                return
        self._flush()

    def _handshake(self) -> bool:
        tls = self.tls
        assert tls is not None
        try:
            tls.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error:
            # A malformed ClientHello, an unknown hostname, a garbage record: this
            # connection only.
            self._flush()
            self._close()
            return False
        self.handshaken = True
        profile = self.state.profile
        assert profile is not None
        self.tls_version = tls.get_protocol_version_name()
        self.tls_cipher = tls.get_cipher_name() or ""
        if profile.mtls:
            leaf = tls.get_peer_certificate(as_cryptography=True)
            chain = tls.get_peer_cert_chain(as_cryptography=True) or []
            verified = leaf is not None and self.state.called and self.state.error == 0
            verdict = (
                Verdict(presented=True, verified=True)
                if verified
                else Verdict.failed(self.state.error or 20, self.state.depth)
                if leaf is not None
                else Verdict(presented=False, verified=False)
            )
            self.cert_facts = ClientCertFacts(leaf, chain, verdict)
            if verified:
                # Remember which anchor vouched for the client: if a later configuration no
                # longer trusts it, this connection stops being verified (see _recheck).
                path = tls.get_verified_chain(as_cryptography=True) or []
                if path:
                    self.anchor = path[-1].fingerprint(hashes.SHA256())
        self.verdict_version = self.worker.snapshot.version
        self.worker.observer.handshake(
            profile.hostname, self.cert_facts.verdict.status if self.cert_facts else "none"
        )
        self.parser = httptools.HttpRequestParser(self)
        self._arm(IDLE_TIMEOUT)
        return True

    # --- HTTP parsing (httptools callbacks) ----------------------------------------------

    def _feed(self, plain: bytes) -> None:
        parser = self.parser
        assert parser is not None
        waiting = self.in_head
        try:
            parser.feed_data(plain)
        except httptools.HttpParserUpgrade:
            self._reject(400, b"protocol upgrades are not supported\n")
            return
        except httptools.HttpParserError as e:
            # httptools wraps an exception raised in a callback in HttpParserCallbackError
            # (the original is its __context__): a _Reject never arrives here as itself.
            cause = e.__context__ or e.__cause__
            if isinstance(cause, _Reject):
                self._reject(cause.status, cause.body)
            else:
                self._reject(400, b"malformed request\n")
            return
        except _Reject as r:
            self._reject(r.status, r.body)
            return
        # A head still arriving is bounded before any header completes (httptools buffers a
        # partial header line without limit). A chunk that began in the head and left it
        # unfinished is counted from the next chunk on: the bound is the limit plus one read.
        if waiting and self.in_head:
            self.head_raw += len(plain)
            if self.head_raw > MAX_HEADER_BYTES + 1024:
                self._reject(431, b"request header fields too large\n")

    def on_message_begin(self) -> None:
        self.current = Request()
        self.header_bytes = 0
        self.in_head = True
        self._arm(HEADER_TIMEOUT)

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431, b"request header fields too large\n")

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.current
        assert req is not None
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _Reject(431, b"request header fields too large\n")
        lname = name.lower()
        if lname == b"host":
            if req.host:
                raise _Reject(400, b"more than one Host header\n")
            req.host = value
        elif lname == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                raise _Reject(501, b"only the chunked transfer coding is supported\n")
            req.chunked = True
        req.headers.append((lname, value))

    def on_headers_complete(self) -> None:
        req = self.current
        parser = self.parser
        assert req is not None and parser is not None
        self.in_head = False
        self.head_raw = 0
        req.version = parser.get_http_version()
        if req.version not in ("1.1", "1.0"):
            raise _Reject(400, b"unsupported HTTP version\n")
        if req.version == "1.1" and not req.host:
            raise _Reject(400, b"missing Host header\n")
        if req.version == "1.0" and req.chunked:
            raise _Reject(400, b"chunked transfer coding in an HTTP/1.0 request\n")
        req.method = parser.get_method()
        req.keep_alive = parser.should_keep_alive()
        # llhttp has validated Content-Length by now (one, decimal): a bodiless request
        # answered at its head (a block) leaves the connection usable.
        req.has_body = req.chunked or any(
            n == b"content-length" and v.strip() not in (b"0", b"") for n, v in req.headers
        )
        self._arm(IDLE_TIMEOUT)
        if self.active is None and not self.queue:
            self._start(req)
        else:
            self.queue.append(req)

    def on_body(self, body: bytes) -> None:
        req = self.current
        assert req is not None
        if req is self.active and req.origin is not None:
            req.origin.send_body(body)
            return
        req.body.append(body)
        if sum(len(b) for b in req.body) > MAX_QUEUED_BODY and self.transport is not None:
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        req = self.current
        assert req is not None
        req.done = True
        self.in_head = True
        self.head_raw = 0
        if req is self.active and req.origin is not None:
            req.origin.end_body()

    # --- requests ------------------------------------------------------------------------

    def _start(self, req: Request) -> None:
        self.active = req
        snapshot = self.worker.snapshot
        sni_profile = self.state.profile
        assert sni_profile is not None
        host = req.host.split(b":", 1)[0].decode("ascii", "replace").lower().rstrip(".")
        # The profile is looked up again in the current snapshot: a change made while the
        # connection is open applies to its next request.
        profile = snapshot.lookup(self.state.sni or sni_profile.hostname)
        if profile is None:
            self._respond(req, simple_response(421, b"this hostname is no longer served\n"))
            return
        if host and host != profile.hostname and profile.mtls:
            # Another hostname's CA set must not be reachable through this handshake.
            self._respond(req, simple_response(421, b"Host does not match the TLS server name\n"))
            return
        target = snapshot.lookup(host) if host and host != profile.hostname else profile
        if target is None:
            self._respond(req, simple_response(421, b"unknown hostname\n"))
            return
        if target is not profile and target.mtls:
            # A handshake that never asked for (or judged against this host's CAs) a client
            # certificate must not reach an mTLS hostname.
            self._respond(req, simple_response(421, b"Host does not match the TLS server name\n"))
            return
        if self.cert_facts is not None and self.verdict_version != snapshot.version:
            self._recheck(target, snapshot.version)
        facts = RequestFacts(self, req, target)
        req.facts = facts
        if target.log_rules is not None:
            logged = target.log_rules(facts)
            if logged >= 0:
                req.rule_id, req.action = target.log_rule_ids[logged], "log"
        if target.firewall is not None:
            index = target.firewall(facts)
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
        if not req.done and any(
            n == b"expect" and v.lower() == b"100-continue" for n, v in req.headers
        ):
            # The edge accepts the body itself; the origin gets it without the Expect dance.
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
        origin = target.origin
        if target.origin_rules is not None:
            # Origin rules: the first matching route rule chooses host, port, Host header, SNI.
            route = target.origin_rules(facts)
            if route >= 0:
                origin = target.origin_routes[route]
        head = self._origin_head(req, target, origin)
        req.origin = self.worker.pool.request(origin, head, self, req)
        for chunk in req.body:
            req.origin.send_body(chunk)
        req.body.clear()
        if req.done:
            req.origin.end_body()
        if self.transport is not None:
            self.transport.resume_reading()

    def _recheck(self, target: HostProfile, version: int) -> None:
        """The configuration changed since the handshake: a certificate verified against a CA
        that is no longer associated with the hostname is not verified any more, on this open
        connection too. (A CA added later does not verify an open connection: it takes a new
        handshake.)"""
        self.verdict_version = version
        facts = self.cert_facts
        assert facts is not None
        if not target.mtls:
            # The hostname no longer asks for certificates: the fields take their defaults.
            self.cert_facts = None
        elif facts.verdict.verified and self.anchor not in target.trust_fingerprints:
            self.cert_facts = ClientCertFacts(facts.leaf, facts.chain, Verdict.failed(20, 0))
        self.cert_block = None

    def _cert_header_block(self) -> bytes:
        """The encoded cf-cert-* headers: the same for every request of a connection under one
        configuration, so built once per connection and snapshot version."""
        version = self.worker.snapshot.version
        if self.cert_block is None or self.cert_block_version != version:
            from mtlsgate.pki.client_auth import managed_headers

            assert self.cert_facts is not None
            parts: list[bytes] = []
            for name_s, value_s in managed_headers(self.cert_facts):
                value = _CONTROL.sub(_escape_control, value_s.encode("latin-1", "replace"))
                parts += [name_s.encode(), b": ", value, b"\r\n"]
            self.cert_block = b"".join(parts)
            self.cert_block_version = version
        return self.cert_block

    def _origin_head(self, req: Request, profile: HostProfile, origin: Origin) -> bytes:
        # An HTTP/1.0 request may come without Host: the origin still gets one.
        host = (
            origin.host_header.encode("latin-1")
            if origin.host_header
            else req.host or profile.hostname.encode("ascii")
        )
        out = [req.method, b" ", req.url, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
        # Late-transform rules: the net effect of every matching rule, per header name (None
        # when no rule matched). They act on the headers as forwarded, i.e. after the client's
        # copies of the edge's own headers are gone, so a rule may set Client-Cert.
        ops = None
        if profile.late_transform is not None and req.facts is not None:
            ops = profile.late_transform(req.facts) or None
        forwarded: list[bytes] = []
        for name, value in req.headers:
            if name in HOP_BY_HOP or name in SPOOFABLE or name.startswith(SPOOFABLE_PREFIXES):
                if name == b"x-forwarded-for" and value.strip():
                    forwarded.append(value.strip())
                continue
            if ops is not None and name in ops:
                continue
            out += [name, b": ", value, b"\r\n"]
        client_ip = str(self.peer_ip).encode()
        # Documented: a client's X-Forwarded-For (all of them, in order) is kept and the
        # client's address appended; origins that trust it must trust only the last entry.
        xff = b", ".join([*forwarded, client_ip])
        if ops is None:
            out += [
                b"X-Forwarded-For: ",
                xff,
                b"\r\n",
                b"X-Forwarded-Proto: https\r\n",
                b"CF-Connecting-IP: ",
                client_ip,
                b"\r\n",
                b"CF-Ray: ",
                self.worker.next_ray().encode(),
                b"\r\n",
            ]
        else:
            # Of the edge's own headers a rule may replace X-Forwarded-Proto and remove
            # CF-Connecting-IP (builder.py drops operations on the others).
            out += [b"X-Forwarded-For: ", xff, b"\r\n"]
            if b"x-forwarded-proto" not in ops:
                out.append(b"X-Forwarded-Proto: https\r\n")
            if b"cf-connecting-ip" not in ops:
                out += [b"CF-Connecting-IP: ", client_ip, b"\r\n"]
            out += [b"CF-Ray: ", self.worker.next_ray().encode(), b"\r\n"]
        if profile.managed_cert_headers and self.cert_facts is not None:
            out.append(self._cert_header_block())
        elif profile.managed_cert_headers:
            out.append(
                b"cf-cert-presented: false\r\ncf-cert-verified: false\r\ncf-cert-revoked: false\r\n"
            )
        if profile.client_cert_forwarding and self.cert_facts is not None:
            # Access forwarding: only the connection's first request that reaches the origin.
            out.append(profile.forwarding_headers(self, self.cert_facts))
        if ops is not None:
            for op in ops.values():
                if op is not None:
                    # Computed values may hold CR, LF or NUL: escaped as in the cf-cert-* headers.
                    out += [op[0], b": ", _CONTROL.sub(_escape_control, op[1]), b"\r\n"]
        if req.chunked:
            out.append(b"Transfer-Encoding: chunked\r\n")
        else:
            cl = next((v for n, v in req.headers if n == b"content-length"), None)
            if cl is not None:
                out += [b"Content-Length: ", cl, b"\r\n"]
        out.append(b"\r\n")
        return b"".join(out)

    def origin_response(self, req: Request, data: bytes) -> None:
        """Bytes of the origin's response, relayed as they arrive."""
        if self.closing or self.tls is None:
            return
        self.tls.sendall(data)
        self._flush()

    def origin_done(self, req: Request, ok: bool, close: bool) -> None:
        """The origin's response is complete and relayed."""
        if close:
            req.keep_alive = False
        self._finish(req)

    def origin_failed(self, req: Request, status: int) -> None:
        """The origin failed before any byte of a response: answer for it."""
        body = b"origin timed out\n" if status == 504 else b"origin unreachable\n"
        self._respond(req, simple_response(status, body))

    def origin_broken(self, req: Request) -> None:
        """The origin failed in the middle of a response: the client cannot be told cleanly."""
        self._close()

    def _send(self, payload: bytes) -> None:
        if self.tls is not None and not self.closing:
            self.tls.sendall(payload)
            self._flush()

    def _respond(self, req: Request, payload: bytes) -> None:
        if self.tls is None or self.closing:
            return
        req.status = int(payload[9:12])  # "HTTP/1.1 NNN": the edge's own answers
        if req.version == "1.0" and req.keep_alive:
            # An HTTP/1.0 client keeps the connection only when told so.
            payload = payload.replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1)
        self._send(payload)
        self._finish(req)

    def _finish(self, req: Request) -> None:
        self.active = None
        self.worker.observer.request_done(self, req)
        if not req.keep_alive:
            self._close()
            return
        if not req.done and req.has_body:
            # Answered before its body arrived (a block): the rest of the body would be read
            # as the next request, so this connection ends here.
            self._close()
            return
        if self.queue:
            self._start(self.queue.popleft())

    def _reject(self, status: int, body: bytes) -> None:
        """A framing error: one answer, then the connection closes."""
        if self.tls is not None and not self.closing:
            self.tls.sendall(simple_response(status, body, close=True))
            self._flush()
        self._close()

    # --- plumbing ------------------------------------------------------------------------

    def _flush(self) -> None:
        tls, transport = self.tls, self.transport
        if tls is None or transport is None:
            return
        while True:
            try:
                out = tls.bio_read(READ_CHUNK)
            except SSL.WantReadError:
                return
            if not out:
                return
            transport.write(out)

    def _close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.tls is not None:
            with contextlib.suppress(SSL.Error):
                self.tls.shutdown()
            self._flush()
        if self.transport is not None:
            self.transport.close()

    def _arm(self, seconds: float) -> None:
        """Move the connection's deadline. A later deadline only updates a float (the timer,
        when it fires, sleeps the rest); only an earlier one needs a new timer."""
        loop = self.worker.loop
        self.deadline = loop.time() + seconds
        if self.timer is None or self.deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = self.deadline
            self.timer = loop.call_at(self.deadline, self._timeout)

    def _timeout(self) -> None:
        self.timer = None
        now = self.worker.loop.time()
        if now < self.deadline:
            self.timer_at = self.deadline
            self.timer = self.worker.loop.call_at(self.deadline, self._timeout)
        elif self.active is None:
            self._close()
        else:
            self._arm(IDLE_TIMEOUT)


# A certificate's names may hold CR, LF or NUL (RFC 4514 rendering leaves them raw): written
# into a header they would inject headers or requests into the origin connection.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _escape_control(m: re.Match[bytes]) -> bytes:
    return b"\\%02X" % m.group()[0]


class _Reject(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


ProtocolFactory = Callable[[], ClientConnection]
