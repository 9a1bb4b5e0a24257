"""Certificate revocation lists for uploaded CAs: parse, check against the CA, order (pure).

What is accepted (docs/revocation.md):
- a CRL as PEM (`-----BEGIN X509 CRL-----`) or as DER, given raw or base64-encoded;
- issued by the uploaded CA itself: the CRL's issuer name equals the CA's subject and its
  signature verifies with the CA's public key (a CRL signed by any other key is refused);
- carrying a CRL number (RFC 5280 5.2.3: conforming issuers MUST include it). Without one the
  replacement rule ("only a higher number replaces") would have nothing to compare, so such a
  CRL is refused with a message saying so, rather than ordered by a guess;
- a complete CRL: delta CRLs are refused (the edge would need the base CRL as well).

Serial numbers are kept as integers: the edge compares them with the leaf's serial.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

PEM_MARKER = "-----BEGIN X509 CRL-----"
# A CRL dated a little in the future is clock skew between the CA and us, not an error.
CLOCK_SKEW = timedelta(minutes=5)
_B64 = re.compile(r"[A-Za-z0-9+/=\s]+")


class CrlError(ValueError):
    """A CRL was refused; the message says why, in words a user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ParsedCrl:
    der: bytes
    issuer: str  # RFC 4514, as the uploaded certificate's `issuer` is shown
    crl_number: int
    this_update: datetime
    next_update: datetime | None
    revoked_serials: frozenset[int]


def decode_crl(data: str | bytes) -> bytes:
    """The DER bytes of a CRL given as PEM, base64 DER (str) or raw DER / PEM (bytes)."""
    if isinstance(data, bytes):
        if data.lstrip().startswith(PEM_MARKER.encode()):
            return _pem_to_der(data.decode("ascii", errors="replace"))
        return data
    text = data.strip()
    if not text:
        raise CrlError("crl is empty: give the CRL as PEM (-----BEGIN X509 CRL-----) or base64 DER")
    if "-----BEGIN" in text:
        return _pem_to_der(text)
    if not _B64.fullmatch(text):
        raise CrlError("crl is neither PEM (-----BEGIN X509 CRL-----) nor base64-encoded DER")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CrlError("crl is not valid base64 (expected base64-encoded DER or PEM)") from None


def _pem_to_der(text: str) -> bytes:
    if PEM_MARKER not in text:
        label = text.split("-----BEGIN", 1)[1].split("-----", 1)[0].strip()
        raise CrlError(f"expected a PEM block X509 CRL, got {label or 'an unknown block'}")
    try:
        crl = x509.load_pem_x509_crl(text.encode())
    except ValueError:
        raise CrlError("the PEM block X509 CRL could not be parsed") from None
    return crl.public_bytes(Encoding.DER)


def _load(der: bytes) -> x509.CertificateRevocationList:
    try:
        return x509.load_der_x509_crl(der)
    except ValueError:
        raise CrlError("the data is not a DER-encoded X.509 CRL") from None


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def parse_crl(data: str | bytes, ca: x509.Certificate, *, now: datetime) -> ParsedCrl:
    """Check a CRL against the CA that must have issued it; refuse it with a clear CrlError."""
    der = decode_crl(data)
    crl = _load(der)
    if crl.issuer != ca.subject:
        raise CrlError(
            f"the CRL's issuer ({crl.issuer.rfc4514_string()}) is not this CA "
            f"({ca.subject.rfc4514_string()}): upload the CRL that this CA issued"
        )
    _check_ca_may_sign_crls(ca)
    try:
        valid = crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (UnsupportedAlgorithm, TypeError, ValueError):
        valid = False
    if not valid:
        raise CrlError(
            "the CRL's signature does not verify with this CA's public key: it was signed by "
            "another key"
        )
    number = crl_number(crl)
    if number is None:
        raise CrlError(
            "the CRL has no CRL number extension; mtlsgate needs it to order CRLs (a newer CRL "
            "replaces the stored one only if its number is higher). `openssl ca -gencrl` adds "
            "one when the CA's config sets `crlnumber`"
        )
    try:
        crl.extensions.get_extension_for_oid(ExtensionOID.DELTA_CRL_INDICATOR)
    except x509.ExtensionNotFound:
        pass
    else:
        raise CrlError("delta CRLs are not supported: upload the complete CRL")
    this_update = crl.last_update_utc
    next_update = crl.next_update_utc
    if this_update > now + CLOCK_SKEW:
        raise CrlError(f"the CRL's thisUpdate ({_iso(this_update)}) is in the future")
    if next_update is not None and next_update < this_update:
        raise CrlError("the CRL's nextUpdate is before its thisUpdate")
    return ParsedCrl(
        der=der,
        issuer=crl.issuer.rfc4514_string(),
        crl_number=number,
        this_update=this_update,
        next_update=next_update,
        revoked_serials=frozenset(r.serial_number for r in crl),
    )


def _check_ca_may_sign_crls(ca: x509.Certificate) -> None:
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return  # no Key Usage: every use is allowed (RFC 5280 4.2.1.3)
    if not usage.crl_sign:
        raise CrlError("this CA's Key Usage does not include cRLSign: it cannot issue CRLs")


def check_replacement(stored: int | None, new: int, *, same_bytes: bool) -> bool:
    """Whether a CRL numbered `new` replaces the stored one (None: nothing stored).

    True: store it. False: it is the stored CRL itself (an idempotent re-upload or a re-fetch
    of unchanged bytes), nothing to do. CrlError: an older or conflicting CRL."""
    if stored is None or new > stored:
        return True
    if new == stored and same_bytes:
        return False
    if new == stored:
        raise CrlError(
            f"a different CRL with the same CRL number ({new}) is already stored: a replacement "
            "must have a higher CRL number"
        )
    raise CrlError(
        f"the CRL number {new} is lower than the stored CRL's ({stored}): a replacement must "
        "have a higher CRL number"
    )


def is_stale(next_update: datetime | None, now: datetime) -> bool:
    """Past its nextUpdate. A CRL without nextUpdate never goes stale (RFC 5280 allows that
    only for CAs that will never publish again)."""
    return next_update is not None and now >= next_update


def distribution_points(ca: x509.Certificate) -> list[str]:
    """The http:// URLs of the CA certificate's CRL Distribution Points extension.

    For a self-signed root these name the CRL the root itself issues, which is what a fetch
    wants; for an intermediate they name its parent's CRL, which parse_crl then refuses with a
    clear issuer message (set an explicit fetch URL instead). Only http:// (as CRLs are
    published: the CRL is signed, so TLS adds nothing, and https would need a trust store)."""
    try:
        points = ca.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls: list[str] = []
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                "http://"
            ):
                urls.append(name.value)
    return urls


def serial_hex(serial: int) -> str:
    """Lowercase hex, two digits per byte, as `openssl x509 -noout -serial` prints it."""
    text = f"{serial:x}"
    return text if len(text) % 2 == 0 else "0" + text


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
