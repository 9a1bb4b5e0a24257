"""HTTP/1.1 strictness, keep-alive, pipelining, bodies, spoofed headers, origin failures, all over
real TLS connections to a separate edge process."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path

import pytest

from tests.edge.conftest import (
    _CLIENT_EXT,
    Edge,
    curl,
    issue,
    raw_exchange,
    read_response,
    tls_socket,
)

H = b"Host: open.example.com\r\n"


def statuses(raw: bytes) -> list[int]:
    # Pipelined responses follow each other's bodies directly, not at line starts.
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


MALFORMED = {
    "cl+te": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "duplicate cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nContent-Length: 4\r\n\r\n"
    b"abcd",
    "cl plus": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +4\r\n\r\nabcd",
    "cl negative": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nabcd",
    "cl hex": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x4\r\n\r\nabcd",
    "te space before colon": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n"
    b"0\r\n\r\n",
    "two te": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nabcd\r\n0\r\n\r\n",
    "overflowing chunk size": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"fffffffffffffffffff\r\nabcd\r\n0\r\n\r\n",
    "bare lf": b"GET / HTTP/1.1\n" + b"Host: open.example.com\n\n",
    "bare lf in header": b"GET / HTTP/1.1\r\nHost: open.example.com\nX-A: b\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n  b\r\n\r\n",
    "nul in header name": b"GET / HTTP/1.1\r\n" + H + b"X-A\x00b: c\r\n\r\n",
    "space in header name": b"GET / HTTP/1.1\r\n" + H + b"X A: c\r\n\r\n",
    "no host": b"GET / HTTP/1.1\r\n\r\n",
    "two hosts": b"GET / HTTP/1.1\r\n" + H + H + b"\r\n",
    "http/0.9": b"GET /\r\n\r\n",
    "chunked on http/1.0": b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "http/2.0 version": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_gets_one_400_and_close(edge: Edge, name: str) -> None:
    out = raw_exchange(edge, MALFORMED[name])
    assert statuses(out) == [400], out
    assert b"Connection: close" in out


def test_te_gzip_chunked_is_501(edge: Edge) -> None:
    req = b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    out = raw_exchange(edge, req)
    assert statuses(out) == [501], out


def test_headers_over_32k_are_431(edge: Edge) -> None:
    big = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(40))
    out = raw_exchange(edge, b"GET / HTTP/1.1\r\n" + H + big + b"\r\n")
    assert statuses(out) == [431], out


def test_one_huge_unterminated_header_is_431(edge: Edge) -> None:
    # The limit holds while a single header is still arriving (not only when it completes).
    with tls_socket(edge) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + H + b"X-Big: ")
        for _ in range(40):
            try:
                sock.sendall(b"a" * 4096)
            except OSError:
                break
        sock.settimeout(5)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
    assert statuses(out) == [431], out


def test_smuggled_second_request_never_reaches_origin(edge: Edge) -> None:
    # CL+TE with a request hidden in the body: one 400, nothing else.
    hidden = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
    req = (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"0\r\n\r\n" + hidden
    )
    out = raw_exchange(edge, req)
    assert statuses(out) == [400]
    assert b"/smuggled" not in out


def test_keep_alive_several_requests(edge: Edge) -> None:
    with tls_socket(edge) as sock:
        for i in range(3):
            sock.sendall(b"GET /k%d HTTP/1.1\r\n%s\r\n" % (i, H))
            status, _, body = read_response(sock)
            assert status == 200
            assert json.loads(body)["url"] == f"/k{i}"


def test_keep_alive_after_a_block(edge: Edge) -> None:
    # A 403 for a bodiless request does not end the connection.
    with tls_socket(edge, "api.example.com") as sock:
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            status, _, _ = read_response(sock)
            assert status == 403


def test_http10_keep_alive(edge: Edge) -> None:
    with tls_socket(edge) as sock:
        for i in range(2):
            sock.sendall(b"GET /ten%d HTTP/1.0\r\n%sConnection: keep-alive\r\n\r\n" % (i, H))
            status, _, body = read_response(sock)
            assert status == 200
            assert json.loads(body)["url"] == f"/ten{i}"


def test_http10_without_host(edge: Edge) -> None:
    out = raw_exchange(edge, b"GET /old HTTP/1.0\r\n\r\n")
    assert statuses(out) == [200]
    body = json.loads(out.partition(b"\r\n\r\n")[2])
    assert dict(body["headers"])["Host"] == "open.example.com"


def test_pipelined_requests_answered_in_order(edge: Edge) -> None:
    reqs = b"".join(b"GET /p%d HTTP/1.1\r\n%s\r\n" % (i, H) for i in range(5))
    reqs += b"POST /p5 HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nxyz"
    reqs += b"GET /p6 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    out = raw_exchange(edge, reqs)
    urls = [json.loads(part)["url"] for part in _bodies(out)]
    assert urls == [f"/p{i}" for i in range(7)]
    assert statuses(out) == [200] * 7


def _bodies(raw: bytes) -> list[bytes]:
    bodies = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        bodies.append(rest[:length])
        raw = rest[length:]
    return bodies


def test_large_chunked_body_streamed_intact(edge: Edge) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    with tls_socket(edge) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(payload), 100_000):
            piece = payload[i : i + 100_000]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        status, _, body = read_response(sock)
    info = json.loads(body)
    assert status == 200
    assert info["body_length"] == len(payload)
    assert info["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_content_length_body_via_curl(edge: Edge, tmp_path: Path) -> None:
    data = "a=1&b=" + "x" * 200_000
    (tmp_path / "body").write_text(data)
    r = curl(edge, host="open.example.com", extra=("--data-binary", f"@{tmp_path / 'body'}"))
    info = json.loads(r.body)
    assert info["body_length"] == len(data)
    assert info["body_sha256"] == hashlib.sha256(data.encode()).hexdigest()


def test_expect_100_continue(edge: Edge) -> None:
    with tls_socket(edge) as sock:
        sock.sendall(
            b"POST /e HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.settimeout(5)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
        assert rest == b""
        sock.sendall(b"hello")
        status, _, body = read_response(sock)
    assert status == 200
    info = json.loads(body)
    assert info["body_length"] == 5
    assert "expect" not in {k.lower() for k, _ in info["headers"]}


def test_expect_100_continue_curl(edge: Edge, tmp_path: Path) -> None:
    data = "y" * 300_000
    (tmp_path / "body").write_text(data)
    r = curl(
        edge, host="open.example.com", headers=("Expect: 100-continue",),
        extra=("--data-binary", f"@{tmp_path / 'body'}"),
    )  # fmt: skip
    assert r.status == 200
    assert json.loads(r.body)["body_length"] == len(data)


def test_head_request_keeps_connection(edge: Edge) -> None:
    with tls_socket(edge) as sock:
        sock.sendall(b"HEAD /h HTTP/1.1\r\n" + H + b"\r\n")
        sock.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /after-head HTTP/1.1\r\n" + H + b"\r\n")
        status, _, body = read_response(sock)
    assert status == 200
    assert json.loads(body)["url"] == "/after-head"


# --- headers the edge owns -----------------------------------------------------------------------


def test_spoofed_headers_never_reach_origin(edge: Edge) -> None:
    spoof = (
        "cf-cert-verified: true",
        "cf-cert-presented: true",
        "cf-cert-subject-dn: CN=admin",
        "cf-connecting-ip: 6.6.6.6",
        "client-cert: :AAAA:",
        "client-cert-chain: :AAAA:",
        "cf-ray: deadbeef",
        "X-Forwarded-For: 10.0.0.1",
        "X-Forwarded-Proto: http",
        "X-Real-IP: 6.6.6.6",
        "Forwarded: for=6.6.6.6",
        "True-Client-IP: 6.6.6.6",
        "X-CF-Worker: spoofed",
    )
    r = curl(edge, cert=edge.pki.good, headers=spoof)
    assert r.status == 200
    headers = json.loads(r.body)["headers"]
    names = [k.lower() for k, _ in headers]
    seen = {k.lower(): v for k, v in headers}
    for once in ("cf-connecting-ip", "cf-ray", "x-forwarded-for", "x-forwarded-proto"):
        assert names.count(once) == 1, once
    assert seen["cf-connecting-ip"] == "127.0.0.1"
    assert seen["cf-ray"] != "deadbeef"
    # Documented: a client's X-Forwarded-For is kept and the client's address appended.
    assert seen["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["cf-cert-subject-dn"] != "CN=admin"
    for gone in (
        "client-cert", "client-cert-chain", "x-real-ip", "forwarded", "true-client-ip",
        "x-cf-worker",
    ):  # fmt: skip
        assert gone not in names


def test_fields_named_by_connection_are_not_forwarded(edge: Edge) -> None:
    # RFC 9110 §7.6.1 (runtime/connection_options.py): the named fields are the client's for
    # this hop; naming the edge's own headers removes only the client's copies of them.
    named = "Connection: keep-alive, X-Hop, X-Forwarded-For, CF-Connecting-IP, cf-cert-verified"
    r = curl(
        edge, cert=edge.pki.good,
        headers=(named, "X-Hop: secret", "X-Keep: kept", "X-Forwarded-For: 10.0.0.1"),
    )  # fmt: skip
    assert r.status == 200
    seen = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    assert "x-hop" not in seen
    assert seen["x-keep"] == "kept"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["cf-connecting-ip"] == "127.0.0.1"
    assert seen["cf-cert-verified"] == "true"


def test_spoofed_verified_header_without_cert_still_blocked(edge: Edge) -> None:
    r = curl(edge, headers=("cf-cert-verified: true", "cf-cert-presented: true"))
    assert r.status == 403


def test_spoofed_headers_on_open_host(edge: Edge) -> None:
    r = curl(
        edge, host="open.example.com",
        headers=("cf-cert-verified: true", "client-cert: :AAAA:", "cf-connecting-ip: 1.2.3.4"),
    )  # fmt: skip
    names = {k.lower() for k, _ in json.loads(r.body)["headers"]}
    assert "cf-cert-verified" not in names
    assert "client-cert" not in names
    seen = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    assert seen["cf-connecting-ip"] == "127.0.0.1"


def test_host_mismatch_on_mtls_host_is_421(edge: Edge) -> None:
    r = curl(edge, cert=edge.pki.good, headers=("Host: open.example.com",))
    assert r.status == 421
    with tls_socket(edge, "api.example.com", cert=edge.pki.good) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET / HTTP/1.1\r\nHost: other.example.org\r\n\r\n")
        assert read_response(sock)[0] == 421


def test_host_header_naming_mtls_host_from_open_sni_is_421(edge: Edge) -> None:
    # A handshake on open.example.com must not reach api.example.com's origin unchecked.
    r = curl(edge, host="open.example.com", headers=("Host: api.example.com",))
    assert r.status in (403, 421)


# --- origin failures ----------------------------------------------------------------------------


def test_origin_down_is_502(edge: Edge) -> None:
    assert curl(edge, host="down.example.com").status == 502


def test_origin_silent_is_504(edge: Edge) -> None:
    started = time.monotonic()
    assert curl(edge, host="slow.example.com").status == 504
    assert time.monotonic() - started < 5


# --- garbage on the wire ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x00\x05hello",  # a handshake record that is no ClientHello
        b"\x16\x03\x01\xff\xff" + b"\x00" * 100,  # a record length past the data
        b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",  # plaintext HTTP
        os.urandom(2048),
    ],
)
def test_garbage_tls_closes_only_that_connection(edge: Edge, garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
    assert b"HTTP/1.1" not in out
    assert edge.alive()
    assert curl(edge, cert=edge.pki.good).status == 200


def test_malformed_after_valid_pipelined_request(edge: Edge) -> None:
    # The valid request's answer comes first, even while it is still at the origin when the
    # malformed one is parsed; then exactly one 400 and the close.
    out = raw_exchange(edge, b"GET /first HTTP/1.1\r\n" + H + b"\r\n" + MALFORMED["cl+te"])
    assert statuses(out) == [200, 400], out


def test_control_characters_in_cert_names_cannot_inject_headers(edge: Edge, tmp_path: Path) -> None:
    evil = issue(
        tmp_path,
        edge.pki.client_ca,
        cn="evil\r\nX-Injected: yes",
        extensions=_CLIENT_EXT.format(eku="clientAuth"),
    )
    r = curl(edge, cert=evil)
    assert r.status == 200
    headers = json.loads(r.body)["headers"]
    assert "x-injected" not in {k.lower() for k, _ in headers}
    assert all("\r" not in v and "\n" not in v for _, v in headers)
    # The name still reaches the origin, its control characters escaped.
    seen = {k.lower(): v for k, v in headers}
    assert "evil\\0D\\0AX-Injected: yes" in seen["cf-cert-subject-dn"]


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_slow_reader_is_not_buffered_in_the_worker(edge: Edge) -> None:
    # A 32 MiB response to a client that reads slowly: the edge stops reading the origin while
    # the client's socket is full (backpressure), so the worker's memory does not take the
    # response; and the client still gets every byte.
    from tests.edge.conftest import BIG_BODY

    with tls_socket(edge, "big.example.com") as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: big.example.com\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        head, _, got = head.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        # Not reading for a while (under the test edge's 1 s origin timeout): the origin could
        # have sent it all by now.
        time.sleep(0.7)
        grown = _rss_kib(edge.proc.pid)
        received = len(got)
        while received < BIG_BODY:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed after {received} bytes"
            received += len(chunk)
        assert received == BIG_BODY
    baseline = _rss_kib(edge.proc.pid)
    # Without backpressure the worker held most of the 32 MiB while the client slept.
    assert grown - baseline < 12 * 1024, (grown, baseline)


def test_a_slow_origin_does_not_make_the_worker_hold_an_upload(edge: Edge) -> None:
    # A 32 MiB upload to an origin that reads slowly: the edge stops reading the client while
    # the origin's socket is full (backpressure), so the body waits in the client's socket,
    # not in the worker; once the origin reads fast, every byte arrives.
    from tests.edge.conftest import BIG_BODY, SINKS

    sink = SINKS[-1]
    sink.fast.clear()
    baseline = _rss_kib(edge.proc.pid)
    with tls_socket(edge, "sink.example.com") as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: sink.example.com\r\nContent-Length: %d\r\n\r\n" % BIG_BODY
        )
        sent = {"n": 0}

        def upload() -> None:
            chunk = b"u" * (1 << 20)
            for _ in range(BIG_BODY // len(chunk)):
                sock.sendall(chunk)
                sent["n"] += len(chunk)

        import threading

        t = threading.Thread(target=upload, daemon=True)
        t.start()
        time.sleep(0.8)  # the origin has read ~1 MiB; the client wants to send 32
        during = _rss_kib(edge.proc.pid)
        sink.fast.set()
        t.join(30)
        status, _, body = read_response(sock)
    assert status == 200 and int(body) == BIG_BODY
    assert during - baseline < 12 * 1024, (during, baseline, sent["n"])
