"""edge/probe.py (explain's verification) against real handshakes, in memory.

For each chain, a real TLS client holding the key completes a handshake with the same host
context through the edge's TLS engine (the fast path and the public one), and the verdict it
records must be the probe's, which never sees the key: same presented/verified, same OpenSSL
error and depth, same verifying anchor. Certificates from the openssl CLI (tests/edge/conftest.py)
and from cryptography's builders (a CA key too weak, a chain larger than one TLS record)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL

from mtlsgate.edge.probe import ProbeError, certificate_record, probe
from mtlsgate.edge.runtime.tls_engine import DONE, FAILED, Engine, select_engine
from mtlsgate.edge.tls import HandshakeState, ServerIdentity, build_context
from mtlsgate.pki.client_auth import Verdict
from tests.edge.conftest import Pki

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
NOW = datetime.now(UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make(
    cn: str,
    issuer: tuple[x509.Certificate, Key] | None,
    *,
    ca: bool,
    key: Key | None = None,
    sans: int = 0,
) -> tuple[x509.Certificate, Key]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    if sans:
        names = [x509.DNSName(f"host-{i:05d}.devices.example.com") for i in range(sans)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256()), key


@pytest.fixture(scope="module")
def server_identity(pki: Pki) -> ServerIdentity:
    return ServerIdentity(pki.edge.cert_pem + pki.edge_ca.cert_pem, pki.edge.key_pem)


def _context(identity: ServerIdentity, anchors: Sequence[x509.Certificate]) -> SSL.Context:
    return build_context(
        identity, trust_anchors=anchors, advertise=anchors, request_client_cert=True
    )


def handshake(
    engine: Engine, context: SSL.Context, chain: Sequence[x509.Certificate], key: Key | None
) -> tuple[Verdict, bytes | None]:
    """A real client holding `key` against `context` through the edge's TLS engine: the
    verdict the edge records and the SHA-256 of the verified chain's top."""
    engine.prepare_context(context, True)
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")  # send weak certificates too
    client_ctx.set_verify(SSL.VERIFY_NONE)
    if chain:
        assert key is not None
        client_ctx.use_certificate(chain[0])
        for extra in chain[1:]:
            client_ctx.add_extra_chain_cert(extra)
        client_ctx.use_privatekey(key)
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    client.set_tlsext_host_name(b"api.example.com")
    state = HandshakeState()
    session = engine.new_session(context, state)
    to_server = b""
    for _ in range(20):
        with contextlib.suppress(SSL.WantReadError):
            client.do_handshake()
        with contextlib.suppress(SSL.WantReadError):
            to_server = client.bio_read(1 << 20)
        status = session.handshake(to_server)
        assert status != FAILED
        out = session.drain()
        if out:
            client.bio_write(out)
        if status == DONE:
            break
    else:
        raise AssertionError("the handshake did not complete")
    verdict = session.verdict()
    path = session.conn.get_verified_chain(as_cryptography=True) or []
    top = path[-1].fingerprint(hashes.SHA256()) if path and verdict.verified else None
    session.forget()
    return verdict, top


def _probe_top(
    context: SSL.Context, chain: Sequence[x509.Certificate]
) -> tuple[Verdict, bytes | None]:
    result = probe(context, "api.example.com", chain)
    path = result.verified_chain
    top = path[-1].fingerprint(hashes.SHA256()) if path and result.verdict.verified else None
    return result.verdict, top


ENGINES = ("fast", "public")


@pytest.mark.parametrize("engine_name", ENGINES)
def test_probe_agrees_with_handshakes(
    engine_name: str, pki: Pki, server_identity: ServerIdentity, tmp_path: Path
) -> None:
    engine = select_engine(choice=engine_name)
    assert engine.name == engine_name
    load = x509.load_pem_x509_certificates
    client_ca = load(pki.client_ca.cert_pem.encode())[0]
    root = make("Root", None, ca=True)
    weak_inter = make("Weak Intermediate", root, ca=True, key=rsa.generate_private_key(65537, 1024))
    inter = make("Intermediate", root, ca=True)
    under_weak = make("under weak", weak_inter, ca=False)
    under_inter = make("under intermediate", inter, ca=False)
    big = make("big", inter, ca=False, sans=900)
    # Two contexts built alike: the engine gives the edge's one its own verify callback.
    edge_context = _context(server_identity, [client_ca, root[0]])
    context = _context(server_identity, [client_ca, root[0]])

    def from_files(name: str) -> tuple[list[x509.Certificate], Key]:
        files = getattr(pki, name)
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        key = load_pem_private_key(files.key_pem.encode(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        return load(files.cert_pem.encode()), key

    cases: dict[str, tuple[Sequence[x509.Certificate], Key | None, int]] = {}
    for name, code in (
        ("good", 0),
        ("other_ca_leaf", 20),
        ("expired", 10),
        ("sha1", 0),
        ("rsa1024", 66),
        ("no_client_eku", 26),
    ):
        chain, key = from_files(name)
        cases[name] = (chain, key, code)
    cases["ca key too weak"] = ([under_weak[0], weak_inter[0]], under_weak[1], 67)
    cases["missing intermediate"] = ([under_inter[0]], under_inter[1], 20)
    cases["with intermediate"] = ([under_inter[0], inter[0]], under_inter[1], 0)
    # A trusted root presenting itself: no key usage or EKU to object to, so verified.
    cases["trusted root as leaf"] = ([root[0]], root[1], 0)
    cases["larger than a record"] = ([big[0], inter[0]], big[1], 0)
    cases["none"] = ((), None, 0)

    assert len(certificate_record(cases["larger than a record"][0])) > 16384
    for name, (chain, key, code) in cases.items():
        live = handshake(engine, edge_context, chain, key)
        explained = _probe_top(context, chain)
        assert explained == live, name
        assert explained[0].error == code, (name, explained)
        assert explained[0].presented is bool(chain)
        if code == 0 and chain:
            assert explained[1] is not None


def test_probe_needs_a_context_that_asks(server_identity: ServerIdentity, pki: Pki) -> None:
    plain = build_context(server_identity)
    leaf = x509.load_pem_x509_certificates(pki.good.cert_pem.encode())
    with pytest.raises(ProbeError):
        probe(plain, "api.example.com", leaf)
