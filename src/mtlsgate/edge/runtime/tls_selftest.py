"""Start-up self-test of a TLS engine: real handshakes in memory against pyOpenSSL's client.

Three clients (a certificate from the trusted CA, none, one from another CA) each complete a
TLS 1.3 handshake with a server session of the engine, exchange data both ways and close; the
verdicts must be verified / absent / untrusted (error 20). Costs a few milliseconds per worker.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL

from mtlsgate.edge.tls import HandshakeState, ServerIdentity, build_context


def make_certificate(
    cn: str,
    key: Any,
    issuer: x509.Certificate | None,
    issuer_key: Any,
    ca: bool,
    dns_name: str | None = None,
) -> x509.Certificate:
    """A short-lived certificate for in-memory handshakes (self-signed when `issuer` is None);
    a leaf may serve as client and as server (`dns_name` as its SAN). Also used by the
    in-process request-path bench and tests."""
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
    if dns_name is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False
        )
    return builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: Any) -> str:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def _client(cert: x509.Certificate | None, key: Any) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    if cert is not None:
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    return conn


def _client_out(conn: SSL.Connection) -> bytes:
    out = b""
    while True:
        try:
            chunk = conn.bio_read(65536)
        except SSL.WantReadError:
            return out
        if not chunk:
            return out
        out += chunk


def _exchange(engine: Any, context: SSL.Context, client: SSL.Connection) -> tuple[str, Any]:
    from mtlsgate.edge.runtime.tls_engine import DONE, FAILED

    session = engine.new_session(context, HandshakeState())
    status = 0
    for _ in range(10):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        status = session.handshake(_client_out(client))
        out = session.drain()
        if out:
            client.bio_write(out)
        if status in (DONE, FAILED):
            break
    if status != DONE:
        return f"handshake ended with {status}", None
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()
    client.sendall(b"ping" * 1000)
    got = session.decrypt(_client_out(client))
    if got != b"ping" * 1000 or session.eof:
        return f"server read {len(got)} bytes, eof {session.eof}", None
    # (More ciphertext than one BIO_read of the fast path's buffer takes: 320,000 > 256 KiB.)
    client.bio_write(session.encrypt(b"pong" * 80000))
    received = b""
    while True:
        try:
            received += client.recv(65536)
        except SSL.WantReadError:
            break
    if received != b"pong" * 80000:
        return f"client read {len(received)} bytes of 320000", None
    verdict = session.verdict()
    client.shutdown()
    session.decrypt(_client_out(client))
    if not session.eof:
        return "close_notify not seen", None
    session.forget()
    return "", verdict


def run_self_test(engine: Any) -> str | None:
    """None if the engine behaves; else what went wrong."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_certificate("mtlsgate self-test CA", ca_key, None, None, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = make_certificate("mtlsgate self-test other CA", other_key, None, None, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_certificate("mtlsgate self-test client", key, ca, ca_key, ca=False)
    stranger = make_certificate("mtlsgate self-test stranger", key, other, other_key, ca=False)
    server = make_certificate("localhost", key, None, None, ca=False)
    context = build_context(
        ServerIdentity(_pem(server), _key_pem(key)), trust_anchors=[ca], request_client_cert=True
    )
    engine.prepare_context(context, True)
    cases = (
        ("trusted", leaf, (True, True, 0)),
        ("absent", None, (False, False, 0)),
        ("untrusted", stranger, (True, False, 20)),
    )
    for label, cert, expected in cases:
        problem, verdict = _exchange(engine, context, _client(cert, key))
        if problem:
            return f"self-test ({label} client): {problem}"
        got = (verdict.presented, verdict.verified, verdict.error)
        if got != expected:
            return f"self-test ({label} client): verdict {got}, expected {expected}"
    return None
