"""Origin side: pooled keep-alive connections and the relay of one request and its response.

The response is relayed to the client byte for byte as it arrives; httptools only finds where it
ends, so the connection can go back to the pool (LIFO: the warmest connection first).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import httptools

from mtlsgate.edge.runtime.connection_options import named_fields, without_named
from mtlsgate.edge.snapshot import Origin
from mtlsgate.edge.timeouts import EdgeTimeouts

if TYPE_CHECKING:
    from mtlsgate.edge.runtime.server import ClientConnection, Request

MAX_IDLE_PER_ORIGIN = 32
# Request body bytes held for an origin that is still connecting before the client is paused.
MAX_PENDING_BODY = 256 * 1024
# Requests without a body that may be sent again when a pooled connection turns out stale.
RETRYABLE = frozenset({b"GET", b"HEAD", b"OPTIONS"})


class _HeadDone(Exception):
    """Stops the parser after the head of a response to HEAD (it carries no body)."""


# Response headers that describe one hop: the edge decides the client side's own.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
     b"trailer", b"upgrade"}
)  # fmt: skip
_NO_BODY_STATUSES = frozenset({204, 304})
# What the origin fast path accepts without httptools (anything else goes to httptools).
_SIMPLE_HEAD = re.compile(
    rb"HTTP/1\.1 [2-9][0-9][0-9] [^\x00-\x08\x0a-\x1f\x7f]*"
    rb"(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\x00-\x08\x0a-\x1f\x7f]*)*"
)
_HOP_BY_HOP_LINE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-connection|transfer-encoding|te|trailer|upgrade)[ \t]*:",
    re.IGNORECASE,
)
# The hop-by-hop lines most origins send on a keep-alive connection (nginx, Apache, Node.js:
# `Connection: keep-alive`, often with `Keep-Alive: timeout=5`): the fast path drops them and
# writes the client side's own, as the parsed path does. Any other hop-by-hop line (close, a
# token list naming headers to drop, Transfer-Encoding...) still goes to httptools.
_KEEP_ALIVE_LINES = re.compile(
    rb"\r\n(?:connection[ \t]*:[ \t]*keep-alive[ \t]*|keep-alive[ \t]*:[^\r\n]*)(?=\r\n|$)",
    re.IGNORECASE,
)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:([^\r\n]*)", re.IGNORECASE)
_NO_BODY = (b"204", b"304")


# A relayable head's verdict: (status, Content-Length, and the head the client gets when it is
# HTTP/1.1 keep-alive, HTTP/1.0 keep-alive, or its last request), each head None when it is the
# origin's unchanged; () when the response needs httptools.
SimpleHead = tuple[int, int, bytes | None, bytes | None, bytes] | tuple[()]
_SIMPLE_HEADS: dict[bytes, SimpleHead] = {}
_SIMPLE_HEADS_MAX = 256
_CACHED_HEAD_MAX = 2048


def _remember_head(head: bytes) -> SimpleHead:
    """_judge_head's verdict, remembered for the next response with the same head."""
    simple = _judge_head(head)
    if len(head) <= _CACHED_HEAD_MAX:  # (bounds the cache's memory)
        if len(_SIMPLE_HEADS) >= _SIMPLE_HEADS_MAX:
            _SIMPLE_HEADS.clear()
        _SIMPLE_HEADS[head] = simple
    return simple


def _judge_head(head: bytes) -> SimpleHead:
    """The verdict on a response head (without its blank line): relayable as it is, apart from
    its keep-alive lines, or () when it needs httptools. One pass each: the head's shape
    (status line, token names, no bare CR or LF, no NUL, no obs-fold), no other hop-by-hop
    header, exactly one Content-Length, a status that carries a body."""
    if _SIMPLE_HEAD.fullmatch(head) is None:
        return ()
    base = _KEEP_ALIVE_LINES.sub(b"", head)
    if _HOP_BY_HOP_LINE.search(base) is not None:
        return ()
    lengths = _CONTENT_LENGTH.findall(base)
    if len(lengths) != 1:
        return ()
    length = lengths[0].strip(b" \t")
    code = base[9:12]
    if not length.isdigit() or len(length) > 18 or code in _NO_BODY:
        return ()
    http10 = base + b"\r\nConnection: keep-alive"
    return (
        int(code),
        int(length),
        None if base == head else base,
        None if http10 == head else http10,
        base + b"\r\nConnection: close",
    )


class OriginConnection(asyncio.Protocol):
    """One keep-alive connection to an origin. The response head is rebuilt for the client
    (its framing and hop-by-hop headers are the edge's, so an HTTP/1.0 keep-alive client gets
    `Connection: keep-alive` and never a chunked body); the body is relayed as it arrives."""

    def __init__(self, pool: OriginPool, key: tuple[Any, ...]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.request: OriginRequest | None = None
        self.closed = False
        self.used = False
        self.reason = b""
        self.headers: list[bytes] = []
        self.chunk_out = False  # re-chunk the body for an HTTP/1.1 client
        self.until_close = False  # the body ends when the origin closes
        self.interim = False  # the message being parsed is a 1xx (see on_headers_complete)
        self.in_message = False  # httptools holds part of a response
        self.paused_client: ClientConnection | None = None  # see pause_writing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        req = self.request
        if req is None:
            self.close()  # bytes nobody asked for: this connection is out of step
            return
        req.got_bytes = True
        client = req.client
        if not self.in_message and not req.head_only:
            # The common case without httptools: one read holding one complete response whose
            # head needs no rewriting (HTTP/1.1, one Content-Length, no hop-by-hop header),
            # relayed with the client's Connection header added. Anything else (chunked, 1xx,
            # 204/304, no length, a partial or extra byte, an unusual head) goes to httptools,
            # which is strict and rebuilds the head. (Inline: this is the per-request path.)
            end = data.find(b"\r\n\r\n")
            if end >= 12:
                head = data[:end]
                # An origin sends the same few heads over and over (only Date changes, once a
                # second): the verdict on a head is a pure function of its bytes, so remembered.
                simple = _SIMPLE_HEADS.get(head)
                if simple is None:
                    simple = _remember_head(head)
                if simple and simple[1] == len(data) - end - 4:
                    client_req = req.client_req
                    client_req.status = simple[0]
                    if not client.closing:
                        # The client side's Connection header, in place of the origin's.
                        if not client_req.keep_alive:
                            data = simple[4] + data[end:]
                        elif client_req.version == "1.0":
                            if simple[3] is not None:
                                data = simple[3] + data[end:]
                        elif simple[2] is not None:
                            data = simple[2] + data[end:]
                        client.out.append(data)
                    # _complete(req, keep_alive=True), inline: the client's request is finished,
                    # then this connection goes back to the pool.
                    self.request = None
                    client_req.origin_seconds = time.monotonic() - req.sent_at
                    client.finish(client_req)
                    if req.ended and not self.closed:
                        self.pool.release(self)
                    else:
                        self.close()
                    client.flush()
                    return
        # The origin timeout runs between reads, as nginx's proxy_read_timeout: a long response
        # that keeps coming is not cut. (A whole response leaves the client's deadline to it.)
        client.deadline = self.pool.loop.time() + self.pool.response_timeout
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            # httptools wraps a callback's exception (kept as __context__).
            if isinstance(e.__context__, _HeadDone):
                self.parser = httptools.HttpResponseParser(self)
                self._complete(self.request, keep_alive=True)
            else:
                self.close()
        else:
            if self.in_message and self.request is None:
                # The response was complete and more came after it in this read: a response
                # to no request. The connection is out of step; it must not serve another.
                self.close()
        # What this read produced for the client goes out in one TLS write and one send.
        client.flush()

    def pause_writing(self) -> None:
        """The origin reads a request body slower than the client sends it: stop reading the
        client, so the body waits in the client's socket, not in the worker's memory."""
        req = self.request
        client = req.client if req is not None else None
        if client is not None and not client.closing and client.transport is not None:
            client.transport.pause_reading()
            self.paused_client = client

    def resume_writing(self) -> None:
        client = self.paused_client
        self.paused_client = None
        if client is not None:
            client.resume_reading()

    def on_message_begin(self) -> None:
        self.in_message = True
        self.reason = b""
        self.headers = []
        self.chunk_out = self.until_close = self.interim = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers += [name, value]

    def on_headers_complete(self) -> None:
        req = self.request
        if req is None:
            return
        client_req = req.client_req
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            # An interim response (102, 103 ...; the edge sends no Expect and no Upgrade): not
            # the answer, which follows on this connection. Dropped, as nginx does.
            self.interim = True
            return
        client_req.status = status
        out = [b"HTTP/1.1 %d %s\r\n" % (status, self.reason)]
        length = None
        chunked = False
        named: set[bytes] | None = None
        headers = self.headers
        for i in range(0, len(headers), 2):
            name, value = headers[i], headers[i + 1]
            lname = name.lower()
            if lname in _HOP_BY_HOP:
                chunked = chunked or lname == b"transfer-encoding"
                if lname == b"connection":
                    named = named_fields(value, named)
                continue
            if lname == b"content-length":
                length = value
            out += [name, b": ", value, b"\r\n"]
        if named is not None:
            # Fields the origin's Connection header names were for the edge's hop only (RFC 9110
            # §7.6.1, runtime/connection_options.py); never Content-Length, which frames what
            # the client gets (the others that frame it are hop-by-hop already).
            named.discard(b"content-length")
            out = without_named(out, named, first=1)  # (after the status line)
        bodiless = req.head_only or status in _NO_BODY_STATUSES  # (1xx returned above)
        keep = client_req.keep_alive
        if not bodiless and length is None:
            if chunked and client_req.version == "1.1":
                self.chunk_out = True
                out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                # An HTTP/1.0 client cannot read chunks; a body without a length ends with
                # the connection: either way the end of the body is the end of the connection.
                keep = False
                self.until_close = not chunked
        if not keep:
            client_req.keep_alive = False
            out.append(b"Connection: close\r\n")
        elif client_req.version == "1.0":
            out.append(b"Connection: keep-alive\r\n")
        out.append(b"\r\n")
        req.client.origin_response(client_req, b"".join(out))
        if req.head_only:
            raise _HeadDone

    def on_body(self, body: bytes) -> None:
        req = self.request
        if req is None:
            return
        if self.chunk_out:
            body = b"%x\r\n%s\r\n" % (len(body), body)
        req.client.origin_response(req.client_req, body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = self.in_message = False
            return
        req = self.request
        if req is not None and self.chunk_out:
            req.client.origin_response(req.client_req, b"0\r\n\r\n")
        self._complete(
            self.request, keep_alive=self.parser.should_keep_alive() and not self.until_close
        )

    def _complete(self, req: OriginRequest | None, keep_alive: bool) -> None:
        """The response is relayed: the client's request is finished, then the connection goes
        back to the pool. (In that order: a pipelined request the client starts in finish()
        must not get this connection while httptools may still hold bytes of this read; an
        origin that sent more than one response gets its connection closed instead.)"""
        self.request = None
        self.in_message = False
        if req is not None:
            client_req = req.client_req
            client_req.origin_seconds = time.monotonic() - req.sent_at
            req.client.finish(client_req)
        # Back to the pool only when the origin has had the whole request: one answered before
        # its body was all sent still waits for the rest, which must never be another
        # client's request.
        if keep_alive and not self.closed and req is not None and req.ended:
            self.pool.release(self)
        else:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        req = self.request
        if req is not None and self.until_close and req.got_bytes:
            self._complete(req, keep_alive=False)  # a body delimited by the end of the connection
            return
        self.request = None
        if req is not None:
            req.lost()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class OriginRequest:
    """One client request on its way to the origin. Creating one sends it: on a warm pooled
    connection (LIFO: the warmest first) the head goes out in this event; otherwise a
    connection is opened and the head (and any body that arrives meanwhile) waits for it."""

    # Most requests keep these class-level defaults: creating one sets only what differs.
    chunked = False
    head_only = False
    paused = False  # the client's reading, stopped while the origin connects
    ended = False
    got_bytes = False
    retried = False
    aborted = False
    pending: list[bytes] | tuple[()] = ()  # what waits for a connection being opened

    def __init__(
        self,
        pool: OriginPool,
        origin: Origin,
        head: bytes,
        client: ClientConnection,
        client_req: Request,
    ) -> None:
        self.pool = pool
        self.origin = origin
        self.head = head
        self.client = client
        self.client_req = client_req
        if client_req.chunked:
            self.chunked = True
        if client_req.method == b"HEAD":
            self.head_only = True
        self.sent_at = time.monotonic()
        self.conn: OriginConnection | None
        # The pool's idle stack for this origin, read here (the per-request path).
        stack = pool.idle.get(origin.pool_key)
        while stack:
            conn = stack.pop()
            if not conn.closed:
                conn.used = True
                self.conn = conn
                conn.request = self
                conn.transport.write(head)  # type: ignore[union-attr]
                return
        self.conn = None
        self.pending = [head]
        pool.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            conn = await asyncio.wait_for(self.pool.connect(self.origin), self.pool.connect_timeout)
        except TimeoutError:
            if not self.aborted:  # (already answered, e.g. 504 by the response timeout)
                self._fail(504)
            return
        except (OSError, ssl.SSLError):
            if not self.aborted:
                self._fail(502)
            return
        if self.aborted:
            conn.close()
            return
        self._attach(conn)

    def _attach(self, conn: OriginConnection) -> None:
        self.conn = conn
        conn.request = self
        assert conn.transport is not None
        if self.paused:
            # (Before the write: a full origin socket pauses the client again, in pause_writing.)
            self.paused = False
            self._client_reading(True)
        conn.transport.write(b"".join(self.pending))
        self.pending = ()

    def send_body(self, data: bytes) -> None:
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self._write(data)

    def end_body(self) -> None:
        self.ended = True
        if self.chunked:
            self._write(b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.write(data)
        else:
            pending = self.pending
            if not isinstance(pending, list):
                pending = self.pending = list(pending)
            pending.append(data)
            # A body arriving while the origin connects waits here: bounded, as it is by the
            # origin socket's backpressure once connected.
            if not self.paused and sum(map(len, pending)) > MAX_PENDING_BODY:
                self.paused = True
                self._client_reading(False)

    def _client_reading(self, on: bool) -> None:
        client = self.client
        if on:
            client.resume_reading()
        elif not client.closing and client.transport is not None:
            client.transport.pause_reading()

    def lost(self) -> None:
        """The origin connection went away before the response was complete."""
        if self.aborted:
            return
        # A pooled connection the origin had closed meanwhile: retry once on a fresh one when
        # the request can be repeated safely and its body is still at hand.
        stale = not self.got_bytes and not self.retried and self.conn is not None and self.conn.used
        repeatable = (
            self.client_req.method in RETRYABLE
            and not self.chunked
            and not any(n == b"content-length" for n, _ in self.client_req.headers)
        )
        if stale and repeatable:
            self.retried = True
            self.conn = None
            self.pending = [self.head]
            self.pool.loop.create_task(self._connect())
            return
        self._fail(502)

    def _fail(self, status: int) -> None:
        if self.got_bytes:
            self.client.origin_broken(self.client_req)
        else:
            self.client.origin_failed(self.client_req, status)

    def timed_out(self) -> None:
        """No complete response within the response timeout (the client connection's deadline,
        checked by the worker's sweep)."""
        self.abort()
        if self.got_bytes:
            self.client.origin_broken(self.client_req)
        else:
            self.client.origin_failed(self.client_req, 504)

    def abort(self) -> None:
        self.aborted = True
        if self.conn is not None:
            self.conn.request = None
            self.conn.close()


class OriginPool:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeouts: EdgeTimeouts) -> None:
        self.loop = loop
        self.idle: dict[tuple[Any, ...], list[OriginConnection]] = {}
        self._tls: dict[bool, ssl.SSLContext] = {}
        self.response_timeout = timeouts.origin_response
        self.connect_timeout = timeouts.origin_connect

    def release(self, conn: OriginConnection) -> None:
        stack = self.idle.get(conn.key)
        if stack is None:
            stack = self.idle[conn.key] = []
        if len(stack) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
        else:
            stack.append(conn)

    def forget(self, conn: OriginConnection) -> None:
        stack = self.idle.get(conn.key)
        if stack and conn in stack:
            stack.remove(conn)

    async def connect(self, origin: Origin) -> OriginConnection:
        key = origin.pool_key
        factory: Callable[[], OriginConnection] = lambda: OriginConnection(self, key)  # noqa: E731
        if origin.tls:
            _, proto = await self.loop.create_connection(
                factory,
                origin.host,
                origin.port,
                ssl=self._tls_context(origin.verify),
                server_hostname=origin.sni or origin.host if origin.verify else origin.sni,
            )
        else:
            _, proto = await self.loop.create_connection(factory, origin.host, origin.port)
        return proto

    def _tls_context(self, verify: bool) -> ssl.SSLContext:
        ctx = self._tls.get(verify)
        if ctx is None:
            ctx = ssl.create_default_context()
            if not verify:
                # "full" mode: encrypted, not authenticated (Cloudflare's meaning of the setting).
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._tls[verify] = ctx
        return ctx

    def close_all(self) -> None:
        for stack in self.idle.values():
            for conn in stack:
                conn.close()
        self.idle.clear()
