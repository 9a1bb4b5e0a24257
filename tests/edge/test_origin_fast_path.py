"""Which origin responses the edge relays without httptools (origin.py, the first branch of
`OriginConnection.data_received`):
exactly one complete, simple HTTP/1.1 response per read. Every other shape must be left to
httptools, which parses strictly and rebuilds the head (tests/edge/test_response_framing.py
covers what the client then receives, on a real edge)."""

from __future__ import annotations

from typing import Any

import httptools
import pytest

from mtlsgate.edge.runtime import origin as origin_module
from mtlsgate.edge.runtime.origin import OriginConnection


class _ClientReq:
    keep_alive = True
    version = "1.1"
    status = 0
    origin_seconds: float | None = None


class _Client:
    closing = False
    deadline = 0.0

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.finished: list[Any] = []

    def origin_response(self, req: Any, data: bytes) -> None:
        self.out.append(data)

    def finish(self, req: Any) -> None:
        self.finished.append(req)

    def flush(self) -> None:
        pass


class _Req:
    head_only = False
    got_bytes = False

    def __init__(self, version: str = "1.1", keep_alive: bool = True) -> None:
        self.client_req = _ClientReq()
        self.client_req.version = version
        self.client_req.keep_alive = keep_alive
        self.client = _Client()
        self.sent_at = 0.0
        self.ended = True  # the whole request (head and body) has gone to the origin


class _Loop:
    def time(self) -> float:
        return 0.0


class _Pool:
    loop = _Loop()
    response_timeout = 60.0

    def __init__(self) -> None:
        self.released: list[Any] = []

    def release(self, conn: Any) -> None:
        self.released.append(conn)


class _Parser:
    """Stands in for httptools: records what the fast path left to it."""

    def __init__(self) -> None:
        self.fed: list[bytes] = []

    def feed_data(self, data: bytes) -> None:
        self.fed.append(data)


def _origin() -> OriginConnection:
    conn = OriginConnection.__new__(OriginConnection)
    conn.pool = _Pool()  # type: ignore[assignment]
    conn.parser = _Parser()  # type: ignore[assignment]
    conn.closed = False
    conn.request = None
    conn.transport = None
    conn.in_message = False
    return conn


SIMPLE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"


@pytest.mark.parametrize(
    ("version", "keep_alive", "connection"),
    [("1.1", True, b""), ("1.0", True, b"Connection: keep-alive\r\n"),
     ("1.1", False, b"Connection: close\r\n")],
)  # fmt: skip
def test_a_simple_response_is_relayed_with_the_client_connection_header(
    version: str, keep_alive: bool, connection: bytes
) -> None:
    origin, req = _origin(), _Req(version, keep_alive)
    origin.request = req  # type: ignore[assignment]
    origin.data_received(SIMPLE)
    head, body = SIMPLE.split(b"\r\n\r\n")
    assert req.client.out == [head + b"\r\n" + connection + b"\r\n" + body]
    assert req.client_req.status == 200 and req.client.finished == [req.client_req]
    assert origin.pool.released == [origin]  # type: ignore[attr-defined]
    assert origin.parser.fed == [] and origin.request is None  # type: ignore[attr-defined]


# What origins send on keep-alive connections (nginx; Apache and Node.js add Keep-Alive).
KEEP_ALIVE_HEADS = [
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 16:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nconnection:Keep-Alive \r\nKeep-Alive: timeout=5, max=100\r\n"
    b"Content-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 404 Not Found\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi",
]


def _parsed_path_answer(
    response: bytes, version: str, keep_alive: bool, monkeypatch: pytest.MonkeyPatch
) -> list[bytes]:
    """What the client gets when httptools reads `response` (the fast path switched off)."""
    origin, req = _origin(), _Req(version, keep_alive)
    origin.parser = httptools.HttpResponseParser(origin)
    origin.reason, origin.headers = b"", []
    origin.chunk_out = origin.until_close = origin.interim = False
    origin.request = req  # type: ignore[assignment]
    with monkeypatch.context() as m:
        m.setattr(origin_module, "_judge_head", lambda head: ())
        m.setattr(origin_module, "_SIMPLE_HEADS", {})
        origin.data_received(response)
    assert req.client.finished == [req.client_req]
    return [b"".join(req.client.out)]


@pytest.mark.parametrize("response", KEEP_ALIVE_HEADS)
@pytest.mark.parametrize(
    ("version", "keep_alive"), [("1.1", True), ("1.0", True), ("1.1", False), ("1.0", False)]
)
def test_an_origin_keep_alive_head_is_relayed_with_the_client_side_connection_header(
    response: bytes, version: str, keep_alive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The origin's Connection: keep-alive and Keep-Alive lines describe its own hop: the client
    # gets the edge's Connection header in their place, as the parsed path writes it, without
    # httptools (most real origins send these lines; before, all of them went to httptools).
    expected = _parsed_path_answer(response, version, keep_alive, monkeypatch)
    origin, req = _origin(), _Req(version, keep_alive)
    origin.request = req  # type: ignore[assignment]
    origin.data_received(response)
    assert origin.parser.fed == []  # type: ignore[attr-defined]
    assert req.client.out == expected
    out = expected[0].lower()
    assert b"keep-alive:" not in out and out.count(b"\r\nconnection:") == (
        version == "1.0" or not keep_alive
    )
    assert req.client_req.status == int(response[9:12]) and req.client.finished == [req.client_req]
    assert origin.pool.released == [origin]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "response",
    [
        # framing the edge must rebuild or that httptools must judge
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: x\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi",  # more to come
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nhi",  # a byte too many
        b"HTTP/1.1 200 OK\r\n\r\nhi",  # delimited by close
        # hop-by-hop headers belong to each hop
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n"
        b"Content-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n"
        b"Content-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nUPGRADE: h2c\r\nContent-Length: 2\r\n\r\nhi",
        # shapes that could split or confuse the client's head
        b"HTTP/1.1 200 OK\r\nX: a\nY: b\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nX: a\rY: b\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 2\r\n\r\nhi",
        # statuses without a body, interim ones, other versions
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Le",  # a partial head
    ],
)
def test_anything_else_goes_to_httptools(response: bytes) -> None:
    origin, req = _origin(), _Req()
    origin.request = req  # type: ignore[assignment]
    origin.data_received(response)
    assert origin.parser.fed == [response]  # type: ignore[attr-defined]
    assert req.client.out == [] and req.client.finished == []


def test_an_answer_before_the_whole_body_is_sent_retires_the_origin_connection() -> None:
    # The origin answered (say 413) while the client's body was still arriving: it still
    # expects the rest, so the connection must not serve another request (the next one would
    # be read as the end of this body: a desync an attacker could steer).
    origin, req = _origin(), _Req()
    req.ended = False
    origin.request = req  # type: ignore[assignment]
    origin.data_received(SIMPLE)
    assert req.client.out and req.client.finished == [req.client_req]
    assert origin.pool.released == [] and origin.closed  # type: ignore[attr-defined]


def test_an_origin_that_answers_twice_loses_its_connection() -> None:
    # Two responses to one request (a broken or hostile origin): the second must never become
    # the answer to the client's next request, so the connection is closed, not pooled.
    origin, req = _origin(), _Req()
    origin.parser = httptools.HttpResponseParser(origin)
    origin.reason, origin.headers = b"", []
    origin.chunk_out = origin.until_close = False
    origin.request = req  # type: ignore[assignment]
    origin.data_received(SIMPLE + SIMPLE)
    assert req.client.finished == [req.client_req]
    assert b"".join(req.client.out).count(b"HTTP/1.1 200") == 1
    assert origin.pool.released == [origin] and origin.closed  # type: ignore[attr-defined]


@pytest.mark.parametrize("split", [False, True])
def test_an_interim_response_is_not_the_answer(split: bool) -> None:
    # 103 Early Hints (or 102) before the final response: dropped, as nginx does; the final
    # response answers the request, in the same read or a later one.
    origin, req = _origin(), _Req()
    origin.parser = httptools.HttpResponseParser(origin)
    origin.reason, origin.headers = b"", []
    origin.chunk_out = origin.until_close = origin.interim = False
    origin.request = req  # type: ignore[assignment]
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    if split:
        origin.data_received(interim)
        assert req.client.out == [] and req.client.finished == [] and not origin.closed
        origin.data_received(SIMPLE)
    else:
        origin.data_received(interim + SIMPLE)
    out = b"".join(req.client.out)
    assert out.startswith(b"HTTP/1.1 200 OK") and b"103" not in out
    assert req.client.finished == [req.client_req] and req.client_req.status == 200
    assert origin.pool.released == [origin] and not origin.closed  # type: ignore[attr-defined]
