"""Header fields a Connection header names are not forwarded (RFC 9110 §7.6.1), in either
direction, and naming cannot remove what the edge adds (runtime/connection_options.py).

Requests go through a real EdgeWorker and ClientConnection with an in-memory TLS client
(test_request_limits.Edge); the origin's answers are fed to its real OriginConnection."""

from __future__ import annotations

import pytest

from mtlsgate.edge.runtime.connection_options import named_fields
from tests.edge.test_request_garbage import RESPONSE
from tests.edge.test_request_limits import Edge


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (b"keep-alive", None),
        (b"Close", None),
        (b"close, X-Trace", {b"close", b"x-trace"}),
        (b" X-A ,x-b,,\tX-C ", {b"x-a", b"x-b", b"x-c"}),
        (b"Keep-Alive, TE", {b"keep-alive", b"te"}),
    ],
)
def test_named_fields(value: bytes, names: set[bytes] | None) -> None:
    assert named_fields(value) == names


def test_named_fields_accumulate_over_several_connection_headers() -> None:
    got = named_fields(b"x-b", named_fields(b"X-A"))
    assert got == {b"x-a", b"x-b"}
    assert named_fields(b"keep-alive", got) is got


def _forward(edge: Edge, head: bytes, response: bytes = RESPONSE) -> tuple[bytes, bytes]:
    """(the head the origin got, what the client got)."""
    edge.send(head)
    sent = edge.origin_out.take()
    assert sent, edge.received()
    edge.origin.data_received(response)
    return sent, edge.received()


def _names(head: bytes) -> list[bytes]:
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return [line.split(b":", 1)[0].lower() for line in lines]


def test_request_fields_named_by_connection_are_not_forwarded() -> None:
    with Edge() as edge:
        sent, got = _forward(
            edge,
            b"GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Hop: 1\r\n"
            b"Connection: keep-alive, X-Hop, x-other\r\nX-Other: 2\r\nX-Keep: 3\r\n"
            b"Connection: X-Second\r\nX-Second: 4\r\n\r\n",
        )
        assert got.startswith(b"HTTP/1.1 200")
        names = _names(sent)
        assert b"x-keep" in names
        assert not {b"x-hop", b"x-other", b"x-second", b"connection"} & set(names)
        # The connection stays usable, and a request without options forwards its fields.
        sent, got = _forward(edge, b"GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Hop: 1\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200")
        assert b"x-hop" in _names(sent)


def test_naming_the_edges_own_headers_removes_only_the_clients_copies() -> None:
    with Edge() as edge:
        sent, _ = _forward(
            edge,
            b"GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 203.0.113.9\r\n"
            b"Connection: X-Forwarded-For, CF-Connecting-IP, X-Forwarded-Proto, CF-Ray, "
            b"cf-cert-verified, Host\r\n\r\n",
        )
        assert sent.startswith(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n")
        # The client's X-Forwarded-For was named away: the edge's holds only the client address.
        assert b"\r\nX-Forwarded-For: 127.0.0.1\r\n" in sent
        assert b"203.0.113.9" not in sent
        for line in (b"CF-Connecting-IP: 127.0.0.1", b"X-Forwarded-Proto: https", b"CF-Ray: ",
                     b"cf-cert-verified: true"):  # fmt: skip
            assert b"\r\n" + line in sent, line


def test_response_fields_named_by_connection_are_not_relayed() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\n"
        b"X-Hop: secret\r\nX-Keep: 1\r\nContent-Length: 2\r\n\r\nhi"
    )
    with Edge() as edge:
        _, got = _forward(edge, b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n", response)
        assert got.startswith(b"HTTP/1.1 200")
        assert got.endswith(b"\r\n\r\nhi")
        names = _names(got)
        assert b"x-keep" in names and b"content-length" in names
        assert b"x-hop" not in names
        # The origin connection went back to the pool: the next request is answered on it.
        _, got = _forward(edge, b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200")


def test_a_response_cannot_name_its_framing_away() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nConnection: Content-Length, Transfer-Encoding\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    with Edge() as edge:
        _, got = _forward(edge, b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n", response)
        assert got.startswith(b"HTTP/1.1 200")
        assert b"\r\nContent-Length: 5\r\n" in got
        assert got.endswith(b"\r\n\r\nhello")
