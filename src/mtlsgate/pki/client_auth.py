"""The client-certificate verdict of one TLS connection and the ``cf.tls_client_auth.*`` fields.

The edge records OpenSSL's verdict on the client certificate in a :class:`Verdict` (the handshake
never fails because of it; rules decide). :class:`ClientCertFacts` turns the certificate, the
chain the client sent and the verdict into Cloudflare's 21 ``cf.tls_client_auth.*`` values,
computing each only when a rule or header asks for it. :func:`managed_headers` renders the
``cf-cert-*`` headers of Cloudflare's "Add TLS client auth headers" managed transform.

Formats follow what the ``openssl x509`` command prints, which is what Cloudflare shows:

* ``cert_serial`` / ``cert_issuer_serial``: ``openssl x509 -serial`` (``i2a_ASN1_INTEGER``):
  uppercase hex, two digits per byte of the magnitude, no leading ``00`` even when the top bit is
  set (``80AA01``), ``01`` for serial 1, ``-`` before a negative serial. OpenSSL wraps serials
  longer than 35 bytes onto several lines; a header value cannot, so no wrapping here.
* ``cert_not_before`` / ``cert_not_after``: ``ASN1_TIME_print`` (``Mar  1 13:35:00 2022 GMT``,
  day padded with a space), with English month names whatever the locale.
* ``cert_ski`` / ``cert_issuer_ski``: uppercase hex of the SubjectKeyIdentifier and of the
  AuthorityKeyIdentifier's keyIdentifier (what ``openssl x509 -ext`` prints, without colons).
* ``cert_rfc9440``: ``:BASE64(DER):``. The 10 KiB / 16 KiB limits apply to the rendered field
  value (what would travel in a ``Client-Cert`` / ``Client-Cert-Chain`` header).
* ``cert_chain_rfc9440``: the RFC 8941 list serialisation RFC 9440 prescribes for
  ``Client-Cert-Chain``: items joined by ``", "`` (comma and a space).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtlsgate.pki import names

PREFIX = "cf.tls_client_auth."

# In the order of the reference (cloudflare-api.md section 8.8).
FIELD_NAMES: tuple[str, ...] = tuple(
    PREFIX + short
    for short in (
        "cert_presented",
        "cert_verified",
        "cert_revoked",
        "cert_issuer_dn",
        "cert_subject_dn",
        "cert_issuer_dn_rfc2253",
        "cert_subject_dn_rfc2253",
        "cert_issuer_dn_legacy",
        "cert_subject_dn_legacy",
        "cert_serial",
        "cert_issuer_serial",
        "cert_fingerprint_sha256",
        "cert_fingerprint_sha1",
        "cert_not_before",
        "cert_not_after",
        "cert_ski",
        "cert_issuer_ski",
        "cert_rfc9440",
        "cert_rfc9440_too_large",
        "cert_chain_rfc9440",
        "cert_chain_rfc9440_too_large",
    )
)

_BOOLEAN_FIELDS = frozenset(
    PREFIX + short
    for short in (
        "cert_presented",
        "cert_verified",
        "cert_revoked",
        "cert_rfc9440_too_large",
        "cert_chain_rfc9440_too_large",
    )
)

# Cloudflare's field reference: the leaf's RFC 9440 value is dropped above 10 KiB, the chain's
# above 16 KiB (origins and proxies commonly cap a header line near these sizes).
RFC9440_LEAF_LIMIT = 10 * 1024
RFC9440_CHAIN_LIMIT = 16 * 1024

# -- OpenSSL verification codes (include/openssl/x509_vfy.h) --------------------------------------

X509_V_OK = 0
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT = 2
X509_V_ERR_UNABLE_TO_GET_CRL = 3
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
X509_V_ERR_CERT_REVOKED = 23
X509_V_ERR_CERT_UNTRUSTED = 27

# "No path to a trusted anchor" in its various guises: the client is simply not one of ours.
_UNTRUSTED_CODES = frozenset(
    {
        X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
        X509_V_ERR_UNABLE_TO_GET_CRL,
        X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
        X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
        X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        X509_V_ERR_CERT_UNTRUSTED,
    }
)

# The strings of OpenSSL 3.x/4.x (crypto/x509/x509_txt.c) for the codes a client certificate
# commonly produces; used only when libcrypto's own table cannot be reached.
_ERROR_STRINGS: dict[int, str] = {
    0: "ok",
    1: "unspecified certificate verification error",
    2: "unable to get issuer certificate",
    3: "unable to get certificate CRL",
    4: "unable to decrypt certificate's signature",
    6: "unable to decode issuer public key",
    7: "certificate signature failure",
    9: "certificate is not yet valid or the system clock is incorrect",
    10: "certificate has expired",
    13: "format error in certificate's notBefore field",
    14: "format error in certificate's notAfter field",
    17: "out of memory",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "issuer certificate doesn't have a public key",
    25: "path length constraint exceeded",
    26: "unsuitable certificate purpose",
    27: "certificate not trusted",
    28: "certificate rejected",
    32: "key usage does not include certificate signing",
    34: "unhandled critical extension",
    37: "invalid non-CA certificate (has CA markings)",
    47: "permitted subtree violation",
    48: "excluded subtree violation",
    50: "application verification failure",
    66: "EE certificate key too weak",
    67: "CA certificate key too weak",
    68: "CA signature digest algorithm too weak",
    79: "invalid CA certificate",
}
_UNKNOWN_ERROR = "unknown certificate verification error"


def _library_error_string(code: int) -> str | None:
    """OpenSSL's own ``X509_verify_cert_error_string``, or None if it cannot be reached."""
    try:
        from OpenSSL._util import ffi, lib  # private, hence the guard
    except Exception:
        return None
    function = getattr(lib, "X509_verify_cert_error_string", None)
    if function is None:
        return None
    try:
        pointer = function(code)
    except (OverflowError, TypeError):  # outside C long
        return None
    if pointer == ffi.NULL:
        return None
    return str(ffi.string(pointer).decode("utf-8", "replace"))


# Indirection so tests can exercise the table fallback without uninstalling pyOpenSSL.
_error_string_source: Callable[[int], str | None] = _library_error_string


def openssl_error_string(code: int) -> str:
    """The text OpenSSL gives for verification error ``code`` (Cloudflare's ``FAILED:<reason>``).

    Asks the OpenSSL that performs the handshakes (via pyOpenSSL) so the wording matches its
    version; falls back to a built-in table of the common codes.
    """
    text = _error_string_source(code)
    if text is not None:
        return text
    return _ERROR_STRINGS.get(code, _UNKNOWN_ERROR)


@dataclass(frozen=True)
class Verdict:
    """What the TLS handshake concluded about the client certificate.

    ``error``/``depth`` are the first failure the verify callback saw (pyOpenSSL resets the store
    error once the callback returns True, so the callback must record it). ``revoked`` comes from
    mtlsgate's own revocation list and, as at Cloudflare, leaves ``verified`` as it is.
    """

    presented: bool
    verified: bool
    error: int = X509_V_OK
    depth: int = 0
    revoked: bool = False
    reason: str = ""

    @classmethod
    def failed(cls, error: int, depth: int = 0) -> Verdict:
        """A presented certificate that OpenSSL rejected with ``error`` at ``depth``."""
        return cls(True, False, error, depth, reason=openssl_error_string(error))

    @property
    def status(self) -> str:
        """One word for logs and metrics.

        "absent", "ok", "revoked", "expired", "notyetvalid", "untrusted" or "invalid". A failed
        verification with OpenSSL's own CERT_REVOKED (a CRL said so) is "revoked" too.
        """
        if not self.presented:
            return "absent"
        if self.verified:
            return "revoked" if self.revoked else "ok"
        if self.error == X509_V_ERR_CERT_HAS_EXPIRED:
            return "expired"
        if self.error == X509_V_ERR_CERT_NOT_YET_VALID:
            return "notyetvalid"
        if self.error in _UNTRUSTED_CODES:
            return "untrusted"
        if self.error == X509_V_ERR_CERT_REVOKED:
            return "revoked"
        return "invalid"


# -- field formats --------------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def openssl_time(moment: datetime) -> str:
    """``ASN1_TIME_print`` format of a UTC time: ``Mar  1 13:35:00 2022 GMT``."""
    # strftime's %b and %e depend on locale and platform; build it by hand.
    return (
        f"{_MONTHS[moment.month - 1]} {moment.day:2d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {moment.year} GMT"
    )


def openssl_serial(serial: int) -> str:
    """``i2a_ASN1_INTEGER`` format: uppercase hex of the magnitude in whole bytes, ``-`` if < 0."""
    magnitude = abs(serial)
    digits = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "big").hex().upper()
    return ("-" if serial < 0 else "") + digits


def rfc9440_item(cert: x509.Certificate) -> str:
    """RFC 9440 / RFC 8941 byte sequence of a certificate: ``:BASE64(DER):``."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return ":" + base64.b64encode(der).decode("ascii") + ":"


def _names(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """(issuer DER, subject DER), read from the TBS so undecodable names still render."""
    return names.name_der_from_tbs(cert.tbs_certificate_bytes)


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        # Malformed or duplicated extensions: the field is unknowable, so it is left empty
        # rather than failing the request (the verdict already says whether to trust it).
        return None


class ClientCertFacts:
    """The 21 ``cf.tls_client_auth.*`` values for one connection, computed lazily and cached.

    Each field is computed at most once, on first use: most requests match rules that read two
    or three of them, and DN rendering and hashing are not free. Meant for one connection on one
    event loop (no locking).

    ``leaf`` is the client's certificate (None if none was sent) and ``chain`` the other
    certificates as the client sent them (leaf excluded). Without a leaf every field holds its
    default (False / ""), whatever the verdict says.
    """

    def __init__(
        self, leaf: x509.Certificate | None, chain: Sequence[x509.Certificate], verdict: Verdict
    ) -> None:
        self.leaf = leaf
        self.chain = tuple(chain)
        self.verdict = verdict
        self._cache: dict[str, object] = {}

    def get(self, field: str) -> object:
        """The value of ``field`` (a full name such as ``cf.tls_client_auth.cert_serial``)."""
        try:
            return self._cache[field]
        except KeyError:
            pass
        if field not in _COMPUTE:
            raise KeyError(field)
        value = self._compute(field)
        self._cache[field] = value
        return value

    def as_dict(self) -> dict[str, object]:
        """Every field, in :data:`FIELD_NAMES` order (computes whatever is not cached yet)."""
        return {field: self.get(field) for field in FIELD_NAMES}

    def _compute(self, field: str) -> object:
        if self.leaf is None:
            return False if field in _BOOLEAN_FIELDS else ""
        return _COMPUTE[field](self, self.leaf)

    # -- shared intermediate results (cached: several fields derive from each) --

    @functools.cached_property
    def _leaf_names(self) -> tuple[bytes, bytes]:
        assert self.leaf is not None
        return _names(self.leaf)

    @functools.cached_property
    def _leaf_rfc9440(self) -> str:
        assert self.leaf is not None
        return rfc9440_item(self.leaf)

    @functools.cached_property
    def _chain_rfc9440(self) -> str:
        items = []
        for cert in self.chain:
            issuer, subject = _names(cert)
            # A self-signed root adds nothing the origin could use (it must already trust it
            # or reject the client), and Cloudflare leaves it out.
            if issuer != subject:
                items.append(rfc9440_item(cert))
        return ", ".join(items)

    # -- one method per field --

    def _presented(self, leaf: x509.Certificate) -> object:
        return self.verdict.presented

    def _verified(self, leaf: x509.Certificate) -> object:
        return self.verdict.verified

    def _revoked(self, leaf: x509.Certificate) -> object:
        return self.verdict.revoked

    def _issuer_dn(self, leaf: x509.Certificate) -> object:
        return names.rfc4514(self._leaf_names[0])

    def _subject_dn(self, leaf: x509.Certificate) -> object:
        return names.rfc4514(self._leaf_names[1])

    def _issuer_dn_rfc2253(self, leaf: x509.Certificate) -> object:
        return names.rfc2253(self._leaf_names[0])

    def _subject_dn_rfc2253(self, leaf: x509.Certificate) -> object:
        return names.rfc2253(self._leaf_names[1])

    def _issuer_dn_legacy(self, leaf: x509.Certificate) -> object:
        return names.legacy(self._leaf_names[0])

    def _subject_dn_legacy(self, leaf: x509.Certificate) -> object:
        return names.legacy(self._leaf_names[1])

    def _serial(self, leaf: x509.Certificate) -> object:
        return openssl_serial(leaf.serial_number)

    def _issuer_serial(self, leaf: x509.Certificate) -> object:
        issuer = self._leaf_names[0]
        for cert in self.chain:
            if _names(cert)[1] == issuer:
                return openssl_serial(cert.serial_number)
        return ""

    def _fingerprint_sha256(self, leaf: x509.Certificate) -> object:
        return leaf.fingerprint(hashes.SHA256()).hex()

    def _fingerprint_sha1(self, leaf: x509.Certificate) -> object:
        return leaf.fingerprint(hashes.SHA1()).hex()

    def _not_before(self, leaf: x509.Certificate) -> object:
        return openssl_time(leaf.not_valid_before_utc)

    def _not_after(self, leaf: x509.Certificate) -> object:
        return openssl_time(leaf.not_valid_after_utc)

    def _ski(self, leaf: x509.Certificate) -> object:
        ski = _extension(leaf, x509.SubjectKeyIdentifier)
        return ski.digest.hex().upper() if isinstance(ski, x509.SubjectKeyIdentifier) else ""

    def _issuer_ski(self, leaf: x509.Certificate) -> object:
        aki = _extension(leaf, x509.AuthorityKeyIdentifier)
        if isinstance(aki, x509.AuthorityKeyIdentifier) and aki.key_identifier is not None:
            return aki.key_identifier.hex().upper()
        return ""

    def _rfc9440(self, leaf: x509.Certificate) -> object:
        value = self._leaf_rfc9440
        return "" if len(value) > RFC9440_LEAF_LIMIT else value

    def _rfc9440_too_large(self, leaf: x509.Certificate) -> object:
        return len(self._leaf_rfc9440) > RFC9440_LEAF_LIMIT

    def _chain_rfc9440_value(self, leaf: x509.Certificate) -> object:
        value = self._chain_rfc9440
        return "" if len(value) > RFC9440_CHAIN_LIMIT else value

    def _chain_rfc9440_too_large(self, leaf: x509.Certificate) -> object:
        return len(self._chain_rfc9440) > RFC9440_CHAIN_LIMIT


_Compute = Callable[[ClientCertFacts, x509.Certificate], object]

_COMPUTE: dict[str, _Compute] = dict(
    zip(
        FIELD_NAMES,
        (
            ClientCertFacts._presented,
            ClientCertFacts._verified,
            ClientCertFacts._revoked,
            ClientCertFacts._issuer_dn,
            ClientCertFacts._subject_dn,
            ClientCertFacts._issuer_dn_rfc2253,
            ClientCertFacts._subject_dn_rfc2253,
            ClientCertFacts._issuer_dn_legacy,
            ClientCertFacts._subject_dn_legacy,
            ClientCertFacts._serial,
            ClientCertFacts._issuer_serial,
            ClientCertFacts._fingerprint_sha256,
            ClientCertFacts._fingerprint_sha1,
            ClientCertFacts._not_before,
            ClientCertFacts._not_after,
            ClientCertFacts._ski,
            ClientCertFacts._issuer_ski,
            ClientCertFacts._rfc9440,
            ClientCertFacts._rfc9440_too_large,
            ClientCertFacts._chain_rfc9440_value,
            ClientCertFacts._chain_rfc9440_too_large,
        ),
        strict=True,
    )
)

# -- the "Add TLS client auth headers" managed transform (reference section 6) --------------------

# Header names in the reference's table order. The fingerprint headers use the names observed on
# real traffic (cf-cert-sha256 / cf-cert-sha1; docs issue #31107, PR #31001) rather than the
# documented cf-cert-fingerprint-*: origins written against Cloudflare read what it really sends.
MANAGED_HEADERS: tuple[tuple[str, str], ...] = tuple(
    (header, PREFIX + field)
    for header, field in (
        ("cf-cert-revoked", "cert_revoked"),
        ("cf-cert-verified", "cert_verified"),
        ("cf-cert-presented", "cert_presented"),
        ("cf-cert-issuer-dn", "cert_issuer_dn"),
        ("cf-cert-subject-dn", "cert_subject_dn"),
        ("cf-cert-issuer-dn-rfc2253", "cert_issuer_dn_rfc2253"),
        ("cf-cert-subject-dn-rfc2253", "cert_subject_dn_rfc2253"),
        ("cf-cert-issuer-dn-legacy", "cert_issuer_dn_legacy"),
        ("cf-cert-subject-dn-legacy", "cert_subject_dn_legacy"),
        ("cf-cert-serial", "cert_serial"),
        ("cf-cert-issuer-serial", "cert_issuer_serial"),
        ("cf-cert-sha256", "cert_fingerprint_sha256"),
        ("cf-cert-sha1", "cert_fingerprint_sha1"),
        ("cf-cert-not-before", "cert_not_before"),
        ("cf-cert-not-after", "cert_not_after"),
        ("cf-cert-ski", "cert_ski"),
        ("cf-cert-issuer-ski", "cert_issuer_ski"),
    )
)


def managed_headers(facts: ClientCertFacts) -> list[tuple[str, str]]:
    """The ``cf-cert-*`` request headers for ``facts``, in the reference's order.

    Booleans are ``true``/``false`` and always sent; string headers are omitted when empty, as
    captured Cloudflare traffic without a client certificate shows only the three booleans.
    """
    headers: list[tuple[str, str]] = []
    for header, field in MANAGED_HEADERS:
        value = facts.get(field)
        if isinstance(value, bool):
            headers.append((header, "true" if value else "false"))
        elif value:
            headers.append((header, str(value)))
    return headers
