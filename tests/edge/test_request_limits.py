"""Limits and framing that must hold on every request of a keep-alive connection, not only on
its first: the 431 bound on heads and trailers, pipelined requests behind a request the edge
answers before its body, and an origin connection that has sent more than it was asked for.

A real EdgeWorker and ClientConnection with an in-memory TLS client (tests/edge/
test_request_garbage.py's harness); each `_send` is one read holding all its bytes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL

from mtlsgate.edge.runtime.origin import OriginConnection
from mtlsgate.edge.runtime.server import MAX_HEADER_BYTES
from tests.edge.test_request_garbage import RESPONSE, _connect, _edge, _out, _Transport

HEAD = b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"


class Edge:
    def __init__(self) -> None:
        self.loop, self.worker, profile, cctx, _ = _edge()
        self.conn, self.client, self.transport = _connect(self.worker, cctx)
        self.origin_out = _Transport()
        self.origin = OriginConnection(self.worker.pool, profile.origin.pool_key)
        self.origin.connection_made(self.origin_out)  # type: ignore[arg-type]
        self.worker.pool.release(self.origin)

    def send(self, data: bytes) -> None:
        self.client.sendall(data)
        self.conn.data_received(_out(self.client))

    def received(self) -> bytes:
        data = self.transport.take()
        if not data:
            return b""
        self.client.bio_write(data)
        out = b""
        with contextlib.suppress(SSL.Error):
            while True:
                out += self.client.recv(65536)
        return out

    def first_request(self) -> None:
        self.send(HEAD)
        assert self.origin_out.take().startswith(b"GET / HTTP/1.1")
        self.origin.data_received(RESPONSE)
        assert self.received().startswith(b"HTTP/1.1 200")

    def __enter__(self) -> Edge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # (Origin connects a test started but never ran: cancelled, not left unawaited.)
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        if tasks:
            _in_own_thread(
                lambda: self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            )
        self.worker.close()
        self.loop.close()


def _in_own_thread(fn: Callable[[], object]) -> None:
    """Run an event loop's work in a thread of its own: a test earlier in the session may have
    left a loop marked as running in this thread, and asyncio refuses to run another there."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # re-raised in the test's thread
            failure.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _headers(size: int, tag: bytes) -> bytes:
    """Complete header lines of about `size` bytes."""
    return b"".join(b"X-%s-%d: %s\r\n" % (tag, i, b"a" * 990) for i in range(size // 1000 + 1))


def test_a_later_request_with_an_oversized_head_in_two_reads_gets_431() -> None:
    with Edge() as edge:
        edge.first_request()
        edge.send(b"GET /big HTTP/1.1\r\nHost: api.example.com\r\n" + _headers(31000, b"A"))
        edge.send(_headers(31000, b"B") + b"\r\n")
        assert edge.origin_out.take() == b""
        assert edge.received().startswith(b"HTTP/1.1 431")


def test_a_later_request_with_a_huge_unterminated_header_line_gets_431() -> None:
    with Edge() as edge:
        edge.first_request()
        edge.send(b"GET /b HTTP/1.1\r\nHost: api.example.com\r\nX-Long: " + b"a" * 200_000)
        assert edge.conn.closing
        assert edge.origin_out.take() == b""
        assert edge.received().startswith(b"HTTP/1.1 431")


def test_trailers_count_against_the_head_limit() -> None:
    with Edge() as edge:
        edge.first_request()
        edge.send(b"POST /up HTTP/1.1\r\nHost: api.example.com\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")  # fmt: skip
        reads = 0
        while not edge.conn.closing and reads < 10:  # up to 160 KB of complete trailer lines
            edge.send(_headers(16000, b"T%d" % reads))
            reads += 1
        assert edge.conn.closing and reads <= MAX_HEADER_BYTES // 16000 + 1, reads


def test_a_small_head_pipelined_behind_an_upload_is_not_431() -> None:
    with Edge() as edge:
        body = b"x" * 20000
        upload = b"POST /a HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 20000\r\n\r\n"
        edge.send(upload + body + b"GET /b HTTP/1.1\r\nHost: api.example.com\r\n")
        edge.send(_headers(13000, b"B") + b"\r\n")  # the second head: 14 KB in all
        assert not edge.conn.closing, edge.received()[:80]


def test_requests_behind_one_answered_before_its_body_never_reach_the_origin() -> None:
    # The first is answered (421: another hostname) before its body arrives, so the connection
    # closes; the second, in the same read, must not be started.
    with Edge() as edge:
        first = b"POST /a HTTP/1.1\r\nHost: other.example.com\r\nContent-Length: 5\r\n\r\nhello"
        second = b"POST /b HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\n\r\n"
        edge.send(first + second)
        assert edge.conn.closing
        assert edge.origin_out.take() == b""
        assert edge.received().startswith(b"HTTP/1.1 421")


def test_an_origin_that_sends_more_than_one_response_is_not_pooled() -> None:
    # A whole response and the start of another in one read: the next request must not get
    # this connection (it would read the stale message as its answer).
    with Edge() as edge:
        edge.send(HEAD)
        edge.origin_out.take()
        edge.origin.data_received(RESPONSE + b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\nST")
        assert edge.received().startswith(b"HTTP/1.1 200")
        # Closed (the pool skips closed connections; connection_lost then drops it).
        assert edge.origin.closed


def test_a_connect_that_fails_after_the_request_was_answered_answers_nothing() -> None:
    # The response timeout answered 504 and aborted the request while its origin connection
    # was still being opened; the connect's own failure later must not answer again (the
    # client's next request would get it).
    from mtlsgate.edge.runtime.origin import OriginRequest

    answered: list[int] = []

    class Client:
        closing = False

        def origin_failed(self, req: Any, status: int) -> None:
            answered.append(status)

    class Pool:
        connect_timeout = 0.05

        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop = loop
            self.idle: dict[Any, Any] = {}

        async def connect(self, origin: Any) -> Any:
            await asyncio.sleep(10)

    class Req:
        chunked = False
        method = b"GET"

    class Origin:
        pool_key = ("x",)

    def scenario() -> None:
        loop = asyncio.new_event_loop()
        try:
            req = OriginRequest(Pool(loop), Origin(), b"GET / HTTP/1.1\r\n\r\n",  # type: ignore[arg-type]
                                Client(), Req())  # type: ignore[arg-type]  # fmt: skip
            req.abort()
            loop.run_until_complete(asyncio.sleep(0.2))
        finally:
            loop.close()

    _in_own_thread(scenario)
    assert answered == []


def test_a_trailer_line_that_never_ends_is_bounded() -> None:
    # httptools holds a partial trailer line until it ends: it must not grow without limit.
    with Edge() as edge:
        edge.first_request()
        edge.send(b"POST /up HTTP/1.1\r\nHost: api.example.com\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: ")  # fmt: skip
        reads = 0
        while not edge.conn.closing and reads < 40:  # up to 640 KB of one trailer line
            edge.send(b"a" * 16000)
            reads += 1
        assert edge.conn.closing and reads <= MAX_HEADER_BYTES // 16000 + 2, reads


def test_an_upload_in_tiny_chunks_is_not_431() -> None:
    # Chunk framing is many times the data here, but every read delivers body bytes.
    with Edge() as edge:
        edge.send(b"POST /up HTTP/1.1\r\nHost: api.example.com\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        for _ in range(40):  # 40 reads of 4,000 one-byte chunks: 960 KB of framing
            edge.send(b"1\r\nx\r\n" * 4000)
        edge.send(b"0\r\n\r\n")
        assert not edge.conn.closing
        assert edge.origin_out.take().startswith(b"POST /up HTTP/1.1")


def test_a_malformed_request_behind_one_at_the_origin_is_answered_in_its_turn() -> None:
    # The first request's answer comes first, then the error, then the close: the first
    # request's client never reads the error as its own answer.
    with Edge() as edge:
        bad = (
            b"GET /b HTTP/1.1\r\nHost: api.example.com\r\n"
            b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        edge.send(HEAD + bad)
        assert edge.origin_out.take().startswith(b"GET / HTTP/1.1")
        assert edge.received() == b"" and not edge.conn.closing
        edge.origin.data_received(RESPONSE)
        out = edge.received()
        assert out.startswith(b"HTTP/1.1 200"), out[:80]
        assert out.count(b"HTTP/1.1 400") == 1 and out.index(b"HTTP/1.1 400") > 0, out
        assert edge.conn.closing
        assert edge.origin_out.take() == b""  # the malformed request never reached the origin


def _small_headers(n: int) -> bytes:
    """n header lines of 15 counted bytes (19 raw) each."""
    return b"".join(b"X%04d: %s\r\n" % (i, b"v" * 10) for i in range(n))


def test_a_chunked_head_under_the_limit_alone_in_its_read_is_not_431() -> None:
    # 1,900 headers: under 32 KiB counted, over it raw. A chunked request must pass as the same
    # head with Content-Length does (the raw bound inside a body must not count the head).
    for framing in (b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"):
        with Edge() as edge:
            edge.send(b"POST /up HTTP/1.1\r\nHost: api.example.com\r\n" + framing
                      + _small_headers(1900) + b"\r\n")  # fmt: skip
            assert not edge.conn.closing, (framing, edge.received()[:60])
            assert edge.origin_out.take().startswith(b"POST /up HTTP/1.1")


class _Reading:
    """Records the client transport's pause_reading/resume_reading."""

    def __init__(self, edge: Edge) -> None:
        self.paused = False
        edge.transport.pause_reading = self.pause  # type: ignore[method-assign]
        edge.transport.resume_reading = self.resume  # type: ignore[method-assign]

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


def test_origin_backpressure_does_not_resume_reading_while_an_error_waits() -> None:
    with Edge() as edge:
        reading = _Reading(edge)
        edge.send(b"POST /a HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n\r\nhello")
        assert edge.origin_out.take().startswith(b"POST /a")
        edge.origin.pause_writing()  # the origin's socket is full: the client is paused
        # A pipelined head over the raw bound, unfinished: its 431 waits for /a's answer.
        edge.send(b"GET /c HTTP/1.1\r\nHost: api.example.com\r\n" + _small_headers(1900))
        assert edge.conn.rejected is not None and reading.paused
        edge.origin.resume_writing()  # the origin drained: the client must stay paused
        assert reading.paused
        edge.send(b"\r\n")  # (had it been read) the rest of /c: never parsed
        edge.origin.data_received(RESPONSE)
        out = edge.received()
        assert out.startswith(b"HTTP/1.1 200") and out.count(b"HTTP/1.1 431") == 1, out[-200:]
        assert edge.origin_out.take() == b"" and edge.conn.closing


def test_a_waiting_error_is_not_replaced_by_later_bytes() -> None:
    with Edge() as edge:
        bad = b"GET /b HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: gzip\r\n\r\n"
        edge.send(HEAD + bad)
        first = edge.conn.rejected
        assert first is not None and first.startswith(b"HTTP/1.1 501")
        edge.send(b"GET /c HTTP/1.1\r\n")
        assert edge.conn.rejected is first


def test_a_complete_queued_request_is_answered_before_an_error_after_it() -> None:
    # /b is complete and queued behind / when a flood of blank lines draws a 431: both are
    # answered, in order, then the 431.
    with Edge() as edge:
        edge.send(HEAD + b"GET /b HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        edge.origin_out.take()
        edge.send(b"\r\n" * 20000)
        edge.origin.data_received(RESPONSE)
        first = edge.received()
        assert first.startswith(b"HTTP/1.1 200") and b"431" not in first
        # /b was started, not dropped (it waits for an origin connection of its own here).
        b = edge.conn.active
        assert b is not None and b.url == b"/b" and b.origin is not None
        b.origin.abort()
        edge.conn.origin_failed(b, 502)
        rest = edge.received()
        assert rest.startswith(b"HTTP/1.1 502") and rest.count(b"HTTP/1.1 431") == 1, rest
        assert edge.conn.closing


def test_a_chunked_upload_in_many_small_reads_is_not_431() -> None:
    with Edge() as edge:
        edge.send(
            b"POST /up HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(3000):  # framing alone, data alone, CRLF alone; with a chunk extension
            edge.send(b"3;name=value\r\n")
            edge.send(b"abc")
            edge.send(b"\r\n")
        edge.send(b"0\r\n")
        edge.send(b"\r\n")
        assert not edge.conn.closing and edge.conn.current.done


def test_bytes_after_a_last_request_do_not_replace_its_answer() -> None:
    # A request with Connection: close, then more bytes while it is at the origin (llhttp
    # refuses bytes after a last request): the answer still comes, then the connection closes.
    with Edge() as edge:
        edge.first_request()
        edge.send(b"GET /c HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
        assert edge.origin_out.take().startswith(b"GET /c")
        edge.send(b"GET /d HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        assert edge.received() == b""
        assert edge.origin_out.take() == b""
        edge.origin.data_received(RESPONSE)
        answer = edge.received()
        assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1, answer
        assert edge.conn.closing
