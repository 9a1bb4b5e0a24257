"""The edge's per-request and per-handshake work in-process, without sockets or a peer.

A real EdgeWorker and ClientConnection (the same objects `mtlsgate serve` runs) are driven by
an in-memory pyOpenSSL client and a canned origin response through stand-in transports, and
only the edge's calls are timed (process CPU time). No kernel, no load generator, no other
process: the figure moves only when the edge's own Python and OpenSSL work moves, so it shows
the effect of a change to the request path within a few percent even on a busy machine (where
edge_vs_nginx.py's ratios swing by 20-30%). It does not replace edge_vs_nginx.py: syscalls and
the event loop are what that bench adds.

    .venv/bin/python bench/edge_path_bench.py [--requests N] [--handshakes N] [--tls public]

Workload: the bench's mTLS hostname (the seed's rule, the managed cf-cert-* headers, request
log on), `GET /` keep-alive HTTP/1.0 as `ab -k` sends it, and an origin answer like the echo
origin's (JSON, Content-Length).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


from mtlsgate.edge.facts import CONNECTION_FIELDS
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
SEED_RULE = f'(http.host in {{"{HOST}"}} and not cf.tls_client_auth.cert_verified)'
REQUEST = (
    f"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: {HOST}\r\n"
    "User-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n"
).encode()
BODY = b'{"method": "GET", "url": "/", "headers": [' + b'["x", "y"], ' * 60 + b'["a", "b"]]}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class Transport:
    """Collects what the edge writes."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def take(self) -> bytes:
        data = b"".join(self.out)
        self.out.clear()
        return data

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _pump_client(client: SSL.Connection) -> bytes:
    out = b""
    while True:
        try:
            out += client.bio_read(262144)
        except SSL.WantReadError:
            return out


def _client_read(client: SSL.Connection, data: bytes) -> bytes:
    client.bio_write(data)
    got = b""
    while True:
        try:
            got += client.recv(65536)
        except SSL.WantReadError:
            return got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--handshakes", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tls", choices=("auto", "fast", "public"), default="auto")
    a = p.parse_args()
    os.environ["MTLSGATE_EDGE_TLS"] = a.tls

    loop = asyncio.new_event_loop()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_certificate("bench CA", ca_key, None, None, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_certificate("bench client", key, ca, ca_key, False, HOST)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    # The server's certificate comes from a CA of its own, with its chain, as the edge CA's do
    # (a bare leaf issued by the client CA would make OpenSSL rebuild the server's chain from
    # the client trust store on every handshake: a cost the real edge does not pay).
    edge_ca_key = ec.generate_private_key(ec.SECP256R1())
    edge_ca = make_certificate("bench edge CA", edge_ca_key, None, None, True)
    ident = ServerIdentity("".join(
        c.public_bytes(serialization.Encoding.PEM).decode()
        for c in (make_certificate(HOST, key, edge_ca, edge_ca_key, False, HOST), edge_ca)
    ), key_pem)  # fmt: skip
    worker: EdgeWorker | None = None

    def on_sni(conn: Any) -> None:
        assert worker is not None
        worker.on_sni(conn)

    ctx = build_context(ident, trust_anchors=[ca], advertise=[ca], request_client_cert=True,
                        on_sni=on_sni)  # fmt: skip
    rule = compile_expression(SEED_RULE)
    profile = HostProfile(
        HOST, "z", ctx, True, Origin("127.0.0.1", 9), compile_first_match([rule]),
        (FirewallRule("r1", "block"),), managed_cert_headers=True,
        # As edge/builder.py decides it for this rule.
        connection_rules=rule.fields <= CONNECTION_FIELDS,
    )  # fmt: skip
    log = io.StringIO()
    observer = Observer(None, "bench", out=log)
    worker = EdgeWorker(Snapshot(1, {HOST: profile}, default=profile), loop, observer,
                        select_engine())  # fmt: skip
    print(f"TLS path: {worker.engine.name}")

    cctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    cctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    cctx.use_certificate(crypto.X509.from_cryptography(leaf))
    cctx.use_privatekey(crypto.PKey.from_cryptography_key(key))

    def connect() -> tuple[Any, SSL.Connection, Transport, float]:
        """One full handshake; returns the edge connection and the edge's CPU time for it."""
        client = SSL.Connection(cctx, None)
        client.set_connect_state()
        client.set_tlsext_host_name(HOST.encode())
        t = Transport()
        spent = 0.0
        c0 = time.process_time()
        conn = worker.protocol_factory()
        conn.connection_made(t)
        spent += time.process_time() - c0
        for _ in range(6):
            with contextlib.suppress(SSL.WantReadError):
                client.do_handshake()
            data = _pump_client(client)
            if data:
                c0 = time.process_time()
                conn.data_received(data)
                spent += time.process_time() - c0
            back = t.take()
            if back:
                client.bio_write(back)
            if conn.handshaken:
                break
        client.do_handshake()
        return conn, client, t, spent

    # Handshakes: the edge's CPU per full mTLS handshake (the client's work is not counted).
    hs_rounds = []
    for _ in range(a.rounds):
        total = 0.0
        for _ in range(a.handshakes):
            conn, client, t, spent = connect()
            total += spent
            conn.connection_lost(None)
        hs_rounds.append(total / a.handshakes * 1e6)

    # Requests on one keep-alive connection; the origin connection is a stand-in.
    conn, client, t, _ = connect()
    origin_t = Transport()
    oc = OriginConnection(worker.pool, profile.origin.pool_key)
    oc.connection_made(origin_t)  # type: ignore[arg-type]
    worker.pool.release(oc)
    req_rounds = []
    for _ in range(a.rounds):
        spent = 0.0
        for i in range(a.requests):
            client.sendall(REQUEST)  # the client's work is not timed
            wire = _pump_client(client)
            c0 = time.process_time()
            conn.data_received(wire)
            oc.data_received(RESPONSE)
            spent += time.process_time() - c0
            sent = origin_t.take()
            reply = t.take()
            plain = _client_read(client, reply)
            if i == 0:
                assert sent.startswith(b"GET / HTTP/1.1"), (sent[:100], conn.closing)
                assert plain.startswith(b"HTTP/1.1 200"), plain[:200]
            if i % 200 == 0:
                c0 = time.process_time()
                observer.flush_log()  # the worker does this every 200 ms: its work counts
                spent += time.process_time() - c0
                log.seek(0)
                log.truncate()
        req_rounds.append(spent / a.requests * 1e6)
    print(f"full mTLS handshake, edge CPU: median {statistics.median(hs_rounds):.0f} µs "
          f"(rounds {', '.join(f'{x:.0f}' for x in hs_rounds)})")  # fmt: skip
    print(f"keep-alive proxied request, edge CPU without syscalls: median "
          f"{statistics.median(req_rounds):.1f} µs "
          f"(rounds {', '.join(f'{x:.1f}' for x in req_rounds)})")  # fmt: skip


if __name__ == "__main__":
    main()
