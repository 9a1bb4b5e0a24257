"""Replay a client certificate chain into a host profile's own TLS context: OpenSSL's verdict
exactly as the edge would record it, without the client's private key.

The edge verifies a client chain inside the handshake (`ssl_verify_cert_chain`), with settings a
bare X509_STORE_CTX lacks: purpose ssl_client, the context's security level as the auth level
(short keys, SHA-1 signatures), PARTIAL_CHAIN and exactly the profile's trust store, and the
verify callback of edge/tls.py (first failure not in FORGIVEN_ERRORS). Rather than imitate these,
the probe runs the handshake itself against the profile's context: a real client sends a TLS 1.2
ClientHello, the context answers up to its CertificateRequest, and a Certificate message holding
the chain is fed in, in a plaintext record as TLS 1.2 sends it. OpenSSL verifies it on arrival
(before any proof of the private key, which the probe cannot give), the callback records the
verdict, and the handshake is then abandoned. TLS 1.3 runs the same verification on the same
message; it only encrypts it, which the probe has no need for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from mtlsgate.edge.tls import HandshakeState
from mtlsgate.pki.client_auth import Verdict

_HANDSHAKE = 22  # TLS record content type
_CERTIFICATE = 11  # handshake message type
_TLS12 = b"\x03\x03"
_MAX_FRAGMENT = 16384


class ProbeError(Exception):
    """The probe could not reach the point where OpenSSL verifies the chain."""


class ChainRefused(ProbeError):
    """OpenSSL failed the handshake on the Certificate message itself, before verifying it (a
    certificate its parser refuses): the edge would fail this client's handshake."""


@dataclass(frozen=True)
class ProbeResult:
    verdict: Verdict
    # The chain OpenSSL built, leaf first, ending at the trust anchor it used (empty when none
    # was built): its last element is the verifying anchor when the verdict says verified.
    verified_chain: tuple[x509.Certificate, ...]


def certificate_record(chain: Sequence[x509.Certificate]) -> bytes:
    """A TLS 1.2 Certificate handshake message holding `chain`, in plaintext records."""
    body = b"".join(
        len(der).to_bytes(3, "big") + der for der in (c.public_bytes(Encoding.DER) for c in chain)
    )
    body = len(body).to_bytes(3, "big") + body
    message = bytes([_CERTIFICATE]) + len(body).to_bytes(3, "big") + body
    records = []
    for start in range(0, len(message), _MAX_FRAGMENT):
        fragment = message[start : start + _MAX_FRAGMENT]
        records.append(bytes([_HANDSHAKE]) + _TLS12 + len(fragment).to_bytes(2, "big") + fragment)
    return b"".join(records)


def _pump(src: SSL.Connection, dst: SSL.Connection) -> None:
    while True:
        try:
            data = src.bio_read(65536)
        except SSL.WantReadError:
            return
        if not data:
            return
        dst.bio_write(data)


def probe(context: SSL.Context, hostname: str, chain: Sequence[x509.Certificate]) -> ProbeResult:
    """The verdict `context` (a host profile's, requesting client certificates) records for a
    client sending `chain` (leaf first; empty: no certificate)."""
    if not chain:
        return ProbeResult(Verdict(presented=False, verified=False), ())
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    client_ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    client_ctx.set_verify(SSL.VERIFY_NONE)
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    with contextlib.suppress(ValueError):  # an IP address or an odd name: no SNI, as curl does
        client.set_tlsext_host_name(hostname.encode("idna"))
    server = SSL.Connection(context, None)
    server.set_accept_state()
    state = HandshakeState()
    server.set_app_data(state)
    with contextlib.suppress(SSL.WantReadError):
        client.do_handshake()  # the ClientHello
    _pump(client, server)
    try:
        server.do_handshake()  # ServerHello .. CertificateRequest, ServerHelloDone
    except SSL.WantReadError:
        pass
    except SSL.Error as e:
        raise ProbeError(f"the host's TLS context refused a TLS 1.2 handshake: {e}") from None
    # The client's answer to ServerHelloDone is not needed: its Certificate message is replaced.
    server.bio_write(certificate_record(chain))
    # Verification runs on the Certificate message; the handshake then waits for the client's
    # key exchange (or fails on a chain OpenSSL cannot parse, as the edge's would).
    with contextlib.suppress(SSL.WantReadError, SSL.Error):
        server.do_handshake()
    if not state.called:
        raise ChainRefused("OpenSSL refused the Certificate message before verifying it")
    # As the edge's public TLS path concludes (runtime/tls_engine.py PublicSession.verdict).
    verdict = (
        Verdict(presented=True, verified=True)
        if state.error == 0
        else Verdict.failed(state.error, state.depth)
    )
    verified = server.get_verified_chain(as_cryptography=True) or []
    return ProbeResult(verdict, tuple(verified))
