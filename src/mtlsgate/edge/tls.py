"""OpenSSL contexts for the edge and the client-certificate verdict as data.

The handshake always completes (the verify callback returns True whatever it is told); what
OpenSSL concluded is recorded in the connection's VerifyRecord and becomes the
`cf.tls_client_auth.*` fields. Contexts are immutable once built (pyOpenSSL refuses mutation
after first use): a configuration change builds new ones.

Decisions (docs/edge.md): SHA-1 signatures in a client chain are accepted, because the seed's
allowed CA algorithms include SHA-1 (OpenSSL's security level would otherwise reject them with
error 68); RSA keys under 2048 bits (errors 66, 67) and a leaf whose extended key usage lacks
clientAuth (26) are not verified. An uploaded intermediate is a trust anchor (PARTIAL_CHAIN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto

# X509_V_ERR_CA_MD_TOO_WEAK: a SHA-1 signature under security level 1.
FORGIVEN_ERRORS = frozenset({68})


class HandshakeState:
    """One connection's handshake: the profile the SNI chose, and what the verify callback saw."""

    __slots__ = ("called", "depth", "error", "profile", "sni", "version")

    def __init__(self) -> None:
        self.called = False
        self.error = 0
        self.depth = 0
        self.profile: Any = None
        self.sni: str | None = None
        self.version = -1  # the config version the profile (and so the trust set) came from


def verify_callback(
    conn: SSL.Connection, _cert: crypto.X509, errno: int, depth: int, ok: int
) -> bool:
    # Accepts (the handshake completes whatever the client sends; rules decide) and records.
    # Should recording fail, the handshake fails instead: never a "verified" nobody checked.
    try:
        record = conn.get_app_data()
        if isinstance(record, HandshakeState):
            record.called = True
            if not ok and errno not in FORGIVEN_ERRORS and record.error == 0:
                record.error, record.depth = errno, depth
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class ServerIdentity:
    certificate_chain_pem: str  # leaf first
    private_key_pem: str


def build_context(
    identity: ServerIdentity,
    *,
    trust_anchors: Sequence[x509.Certificate] = (),
    advertise: Sequence[x509.Certificate] = (),
    request_client_cert: bool = False,
    on_sni: Callable[[SSL.Connection], None] | None = None,
) -> SSL.Context:
    """A server context for one host profile. With `request_client_cert`, the handshake asks for
    a certificate, checks it against exactly `trust_anchors`, and names `advertise` (in order) in
    the CertificateRequest."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    # No session resumption (docs/edge.md): a resumed session skips certificate verification,
    # so a client would keep the verdict of a CA since removed. Without tickets (OP_NO_TICKET
    # makes TLS 1.3 ones stateful) and without a session cache, every connection is a full
    # handshake, verified against the configuration of the moment.
    ctx.set_options(
        SSL.OP_NO_COMPRESSION
        | SSL.OP_CIPHER_SERVER_PREFERENCE
        | SSL.OP_NO_RENEGOTIATION
        | SSL.OP_NO_TICKET
    )
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_alpn_select_callback(_select_alpn)
    blocks = [
        b for b in identity.certificate_chain_pem.split("-----END CERTIFICATE-----") if b.strip()
    ]
    certs = [
        x509.load_pem_x509_certificate((b + "-----END CERTIFICATE-----\n").encode()) for b in blocks
    ]
    ctx.use_certificate(certs[0])
    for extra in certs[1:]:
        ctx.add_extra_chain_cert(extra)
    key = serialization.load_pem_private_key(identity.private_key_pem.encode(), password=None)
    ctx.use_privatekey(key)  # type: ignore[arg-type]
    ctx.check_privatekey()
    if request_client_cert:
        store = ctx.get_cert_store()
        assert store is not None
        for anchor in trust_anchors:
            store.add_cert(crypto.X509.from_cryptography(anchor))
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        for name in advertise:
            ctx.add_client_ca(name)
        ctx.set_verify(SSL.VERIFY_PEER, verify_callback)
        if len(certs) == 1:
            _complete_chain(ctx, store, certs[0], trust_anchors)
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    if on_sni is not None:
        # Every profile's context carries the SNI callback: a connection starts on the default
        # profile's context and switches when the client names another host.
        ctx.set_tlsext_servername_callback(on_sni)
    return ctx


def _complete_chain(
    ctx: SSL.Context,
    store: crypto.X509Store,
    leaf: x509.Certificate,
    anchors: Sequence[x509.Certificate],
) -> None:
    """Give a leaf-only identity, once, the chain OpenSSL would otherwise build on every handshake.

    A context without extra chain certificates makes OpenSSL complete the server's chain on each
    handshake from the context's certificate store: here the client trust anchors. It runs
    X509_verify_cert on the server's own certificate, and for a leaf issued by one of those anchors
    (a private CA that signs both sides) that is a signature verification per handshake, about 15%
    of the edge's CPU for a full mTLS handshake. The store is fixed for the context's life, so the
    chain is too: it is built here by OpenSSL itself and configured as extra chain certificates,
    which OpenSSL sends as they are. Clients see the same certificates as before.

    Only the plain case is taken (one anchor by the issuer's name, its signature on the leaf
    checked first, the chain ending there); anything else keeps OpenSSL's per-handshake building,
    which is cheap when no issuer is found. The checks before OpenSSL's also keep a bad signature
    from leaving an entry in OpenSSL's error queue.
    """
    issuers = {a for a in anchors if a.subject == leaf.issuer}
    if len(issuers) != 1:
        return
    issuer = issuers.pop()
    try:
        leaf.verify_directly_issued_by(issuer)
    except (InvalidSignature, TypeError, ValueError):
        return
    if issuer.issuer != issuer.subject and any(a.subject == issuer.issuer for a in anchors):
        return  # the chain would go on through the anchors (and their signatures)
    try:
        chain = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf))
        built = chain.get_verified_chain()
    except crypto.X509StoreContextError:
        return  # (expired, not yet valid, not a CA ...): OpenSSL keeps building it per handshake
    for cert in built[1:]:
        ctx.add_extra_chain_cert(cert.to_cryptography())


def _select_alpn(_conn: SSL.Connection, offered: list[bytes]) -> bytes:
    # HTTP/1.1 only; a client offering nothing else still gets a handshake (no ALPN chosen
    # is not an option in pyOpenSSL's callback, so answer http/1.1 when offered, else the first).
    return b"http/1.1" if b"http/1.1" in offered else SSL.NO_OVERLAPPING_PROTOCOLS  # type: ignore[return-value]
