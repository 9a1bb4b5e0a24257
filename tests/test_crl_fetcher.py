"""The CRL fetch is bounded: real sockets on 127.0.0.1 that answer too much, too slowly, with a
redirect or conditionally; fetch() must stop at its limits and say why."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mtlsgate.services.crl_fetcher import FetchError, fetch
from tests.crl_tools import CrlServer


@pytest.fixture
def raw_server() -> Iterator[Callable[[bytes, float], str]]:
    """A TCP server answering every connection with fixed bytes after a delay."""
    sockets: list[socket.socket] = []

    def start(answer: bytes, delay: float) -> str:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        sockets.append(srv)

        def serve() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)
                    time.sleep(delay)
                    with contextlib.suppress(OSError):
                        conn.sendall(answer)

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{srv.getsockname()[1]}/ca.crl"

    yield start
    for s in sockets:
        s.close()


def test_too_large_declared_and_streamed(raw_server: Callable[[bytes, float], str]) -> None:
    declared = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\nxx", 0)
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        fetch(declared, max_bytes=1000)
    streamed = raw_server(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 5000, 0)
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        fetch(streamed, max_bytes=1000)


def test_slow_server_times_out(raw_server: Callable[[bytes, float], str]) -> None:
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nxx", 3)
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"TimeoutError|timed out|took longer"):
        fetch(url, timeout=0.5)
    assert time.monotonic() - started < 2


def test_redirects_are_not_followed(raw_server: Callable[[bytes, float], str]) -> None:
    url = raw_server(
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n", 0
    )
    with pytest.raises(FetchError, match=r"HTTP 302 Found \(redirects are not followed\)"):
        fetch(url)


def test_refused_connection_and_bad_scheme() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(FetchError, match="ConnectionRefusedError"):
        fetch(f"http://127.0.0.1:{port}/x.crl")
    with pytest.raises(FetchError, match="not an http:// URL"):
        fetch("https://127.0.0.1/x.crl")


def test_conditional_fetch() -> None:
    server = CrlServer()
    try:
        server.files["/a.crl"] = b"crl bytes"
        first = fetch(server.url("/a.crl"))
        assert first.status == 200 and first.body == b"crl bytes" and first.etag
        again = fetch(server.url("/a.crl"), etag=first.etag)
        assert again.status == 304 and again.etag == first.etag
        server.files["/a.crl"] = b"new crl bytes"
        assert fetch(server.url("/a.crl"), etag=first.etag).body == b"new crl bytes"
        assert server.requests == [("/a.crl", 200), ("/a.crl", 304), ("/a.crl", 200)]
    finally:
        server.close()


@pytest.fixture
def trickle_server() -> Iterator[Callable[[bytes], str]]:
    """A server that sends `head` and then one more byte of headers or body every 0.1 s,
    forever: every single read succeeds, only a limit on the whole fetch can end it."""
    sockets: list[socket.socket] = []

    def start(head: bytes) -> str:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        sockets.append(srv)

        def serve() -> None:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.recv(65536)
                conn.sendall(head)
                while True:
                    conn.sendall(b"x")
                    time.sleep(0.1)

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{srv.getsockname()[1]}/ca.crl"

    yield start
    for s in sockets:
        s.close()


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Slow: ",  # headers that never end
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n",  # a body that never ends
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",  # the same, without a length
    ],
)
def test_trickling_server_is_cut_at_the_deadline(
    trickle_server: Callable[[bytes], str], head: bytes
) -> None:
    url = trickle_server(head)
    started = time.monotonic()
    with pytest.raises(FetchError, match="the fetch took longer than 1 s"):
        fetch(url, timeout=1.0)
    assert time.monotonic() - started < 1.8
