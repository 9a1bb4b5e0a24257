"""Requests leave no reference cycles behind: everything a request creates is freed by
reference counting when it ends, so the cyclic GC has nothing to do per request (it was a
visible share of a worker's CPU when a request and its facts referred to each other).

A real EdgeWorker and ClientConnection, an in-memory TLS client and a canned origin answer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from mtlsgate.edge.runtime.observe import Observer
from mtlsgate.edge.runtime.origin import OriginConnection
from mtlsgate.edge.runtime.server import EdgeWorker
from mtlsgate.edge.runtime.tls_engine import select_engine
from mtlsgate.edge.runtime.tls_selftest import make_certificate
from mtlsgate.edge.snapshot import FirewallRule, HostProfile, Origin, Snapshot
from mtlsgate.edge.tls import ServerIdentity, build_context
from mtlsgate.rules import compile_expression
from mtlsgate.rules.compiler import compile_first_match

HOST = "api.example.com"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"


class _Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _out(client: SSL.Connection) -> bytes:
    data = b""
    while True:
        try:
            data += client.bio_read(65536)
        except SSL.WantReadError:
            return data


def _edge() -> tuple[asyncio.AbstractEventLoop, EdgeWorker, HostProfile, SSL.Context, Observer]:
    """An mTLS hostname on a real EdgeWorker, and a client context with a valid certificate."""
    loop = asyncio.new_event_loop()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_certificate("CA", ca_key, None, None, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_certificate("client", key, ca, ca_key, False, HOST)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    server = make_certificate(HOST, key, ca, ca_key, False, HOST).public_bytes(
        serialization.Encoding.PEM
    )
    worker: EdgeWorker | None = None

    def on_sni(conn: Any) -> None:
        assert worker is not None
        worker.on_sni(conn)

    ctx = build_context(ServerIdentity(server.decode(), pem), trust_anchors=[ca],
                        request_client_cert=True, on_sni=on_sni)  # fmt: skip
    rule = compile_first_match([compile_expression("not cf.tls_client_auth.cert_verified")])
    profile = HostProfile(HOST, "z", ctx, True, Origin("127.0.0.1", 9), rule,
                          (FirewallRule("r1", "block"),), managed_cert_headers=True)  # fmt: skip
    observer = Observer(None, "test", out=open("/dev/null", "w"))  # noqa: SIM115
    worker = EdgeWorker(Snapshot(1, {HOST: profile}, default=profile), loop, observer,
                        select_engine(choice="fast"))  # fmt: skip
    cctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    cctx.use_certificate(leaf)
    cctx.use_privatekey(key)
    return loop, worker, profile, cctx, observer


def _connect(worker: EdgeWorker, cctx: SSL.Context) -> tuple[Any, SSL.Connection, _Transport]:
    """A full mTLS handshake with the edge's ClientConnection, in memory."""
    client = SSL.Connection(cctx, None)
    client.set_connect_state()
    client.set_tlsext_host_name(HOST.encode())
    transport = _Transport()
    conn = worker.protocol_factory()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for _ in range(6):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        conn.data_received(_out(client))
        back = transport.take()
        if back:
            client.bio_write(back)
        if conn.handshaken:
            break
    client.do_handshake()
    return conn, client, transport


def test_closed_connections_leave_no_cycles_for_the_gc() -> None:
    # A connection, its pyOpenSSL Connection and OpenSSL's buffers are freed when it closes,
    # not at the collector's next pass (which, under a handshake load, kept thousands of them).
    loop, worker, _, cctx, _ = _edge()
    try:
        conn, client, transport = _connect(worker, cctx)
        conn.connection_lost(None)
        del conn, client, transport
        gc.collect()
        gc.disable()
        for _ in range(30):
            conn, client, transport = _connect(worker, cctx)
            conn.connection_lost(None)
            del conn, client, transport
        found = gc.collect()
    finally:
        gc.enable()
        worker.close()
        loop.close()
    assert found == 0, f"{found} objects in cycles after 30 closed connections"


def test_requests_leave_no_cycles_for_the_gc() -> None:
    loop, worker, profile, cctx, observer = _edge()
    conn, client, transport = _connect(worker, cctx)
    origin_transport = _Transport()
    origin = OriginConnection(worker.pool, profile.origin.pool_key)
    origin.connection_made(origin_transport)  # type: ignore[arg-type]
    worker.pool.release(origin)

    def one_request() -> None:
        client.sendall(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        conn.data_received(_out(client))
        assert origin_transport.take().startswith(b"GET / HTTP/1.1\r\n")
        origin.data_received(RESPONSE)
        client.bio_write(transport.take())
        assert client.recv(65536).startswith(b"HTTP/1.1 200 OK")

    for _ in range(20):  # the connection's own one-time objects (certificate facts, ...)
        one_request()
    observer.flush_log()
    gc.collect()
    gc.disable()
    try:
        for _ in range(500):
            one_request()
        observer.flush_log()
        found = gc.collect()
    finally:
        gc.enable()
        worker.close()
        loop.close()
    # Zero per request; a handful of one-off objects (caches warming) is not a leak per request.
    assert found < 50, f"{found} objects in cycles after 500 requests"
