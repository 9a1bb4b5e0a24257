"""The client side's framing is the edge's: an HTTP/1.0 keep-alive client (like `ab -k`) is told
`Connection: keep-alive` and can send its next request on the same connection."""

from __future__ import annotations

from tests.edge.conftest import Edge, read_response, tls_socket


def test_http10_keep_alive_forwarded_and_blocked(edge: Edge) -> None:
    with tls_socket(edge, "open.example.com") as sock:
        for path in (b"/a", b"/b"):
            sock.sendall(
                b"GET " + path + b" HTTP/1.0\r\nHost: open.example.com\r\n"
                b"Connection: keep-alive\r\n\r\n"
            )
            status, headers, body = read_response(sock)
            assert status == 200
            assert headers["connection"].lower() == "keep-alive"
            assert path.decode() in body.decode()
    # The edge's own answer (a block by the seed rule, no certificate) keeps it open too.
    with tls_socket(edge, "api.example.com") as sock:
        for _ in range(2):
            sock.sendall(
                b"GET / HTTP/1.0\r\nHost: api.example.com\r\nConnection: keep-alive\r\n\r\n"
            )
            status, headers, _ = read_response(sock)
            assert status == 403
            assert headers["connection"].lower() == "keep-alive"


def test_http10_without_keep_alive_is_closed(edge: Edge) -> None:
    with tls_socket(edge, "open.example.com") as sock:
        sock.sendall(b"GET /c HTTP/1.0\r\nHost: open.example.com\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200
        assert headers["connection"].lower() == "close"
        sock.settimeout(5)
        assert sock.recv(1) == b""
