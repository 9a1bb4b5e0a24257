"""Validate and inspect an uploaded mTLS certificate (or bundle) and its optional private key.

This module is pure: it takes the strings a client sent to ``POST /accounts/{id}/mtls_certificates``
and either returns an :class:`InspectedUpload` or raises :class:`~mtlsgate.errors.UploadError`
with a message a person can act on. It touches no database and knows nothing about HTTP.

What a bundle means
-------------------
``certificates`` may hold one or more ``CERTIFICATE`` PEM blocks.

* The FIRST certificate is the uploaded certificate. Every reported field (issuer, serial,
  signature, validity, fingerprint) describes it. With ``ca=True`` it is the trust anchor that
  clients' certificates must chain to; it does not have to be a self-signed root, an
  intermediate is fine.
* Any FOLLOWING certificates must be the first certificate's issuer chain, in order:
  certificate ``i + 1`` must be the issuer of certificate ``i`` (its subject equals certificate
  ``i``'s issuer and its public key verifies certificate ``i``'s signature). They are kept so the
  chain can be served or shown, not to add more trust anchors.
* Unrelated CAs in one bundle are refused (``BUNDLE_NOT_A_CHAIN``): a client would otherwise
  believe all of them are trusted while only the first one is; each must be uploaded separately.

Input forms
-----------
PEM may arrive with ``\\n`` line endings, CRLF, or the two-character sequence backslash-n:
Cloudflare's documentation tells people to replace line breaks with ``\\n`` before pasting PEM
into JSON, and many end up sending the escape literally. All three are accepted, for both
``certificates`` and ``private_key``.

Refusal codes and warning codes are defined in :mod:`mtlsgate.errors`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import SignatureAlgorithmOID

from mtlsgate.errors import (
    BUNDLE_NOT_A_CHAIN,
    FOREIGN_PEM_BLOCK,
    NOT_A_CA,
    PEM_MALFORMED,
    PRIVATE_KEY_INVALID,
    SIGNATURE_ALGORITHM_NOT_ALLOWED,
    WARN_EXPIRED,
    WARN_EXPIRING_SOON,
    WARN_NOT_YET_VALID,
    WARN_SHA1_SIGNATURE,
    WARN_WEAK_RSA_KEY,
    UploadError,
)

__all__ = [
    "ALLOWED_SIGNATURES",
    "EXPIRING_SOON_WINDOW",
    "InspectedUpload",
    "UploadWarning",
    "inspect_upload",
    "normalize_pem_text",
    "signature_name",
]


@dataclass(frozen=True)
class UploadWarning:
    """Something worth telling the uploader about that does not block the upload."""

    code: int
    message: str


@dataclass(frozen=True)
class InspectedUpload:
    """An accepted upload: the parsed bundle plus the facts the API reports about certificate 1."""

    certificates_pem: str
    certs: tuple[x509.Certificate, ...]
    issuer: str
    serial_number: str
    signature: str
    not_before: datetime
    expires_on: datetime
    fingerprint_sha256: str
    private_key_pem: str | None
    warnings: tuple[UploadWarning, ...]


# The signature algorithms Cloudflare accepts for mTLS CA uploads, named the way Go's
# crypto/x509 names them (Cloudflare reports these names in its `signature` field).
ALLOWED_SIGNATURES: frozenset[str] = frozenset(
    {
        "SHA1WithRSA",
        "SHA256WithRSA",
        "SHA384WithRSA",
        "SHA512WithRSA",
        "ECDSAWithSHA1",
        "ECDSAWithSHA256",
        "ECDSAWithSHA384",
        "ECDSAWithSHA512",
    }
)

# SHA-1 is still accepted (old private CAs use it) but collisions are practical, so we warn.
_SHA1_SIGNATURES = frozenset({"SHA1WithRSA", "ECDSAWithSHA1"})

# A certificate expiring within this window gets WARN_EXPIRING_SOON.
EXPIRING_SOON_WINDOW = timedelta(days=30)

# Below this an RSA key is factorable with serious but realistic effort (NIST deprecated it).
_MIN_RSA_BITS = 2048

# Names by OID rather than via `cert.signature_hash_algorithm`: cryptography raises
# UnsupportedAlgorithm for OIDs it cannot map to a hash, and we still want to name those in
# the refusal. Names follow Go's x509.SignatureAlgorithm.String() where Go has one.
_SIGNATURE_NAMES: dict[x509.ObjectIdentifier, str] = {
    SignatureAlgorithmOID.RSA_WITH_MD5: "MD5WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "SHA1WithRSA",
    SignatureAlgorithmOID._RSA_WITH_SHA1: "SHA1WithRSA",  # the old ISO OID; Go maps it the same
    SignatureAlgorithmOID.RSA_WITH_SHA224: "SHA224WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "SHA256WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "SHA384WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "SHA512WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA3_224: "SHA3-224WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA3_256: "SHA3-256WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA3_384: "SHA3-384WithRSA",
    SignatureAlgorithmOID.RSA_WITH_SHA3_512: "SHA3-512WithRSA",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "ECDSAWithSHA1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: "ECDSAWithSHA224",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ECDSAWithSHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ECDSAWithSHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ECDSAWithSHA512",
    SignatureAlgorithmOID.ECDSA_WITH_SHA3_224: "ECDSAWithSHA3-224",
    SignatureAlgorithmOID.ECDSA_WITH_SHA3_256: "ECDSAWithSHA3-256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA3_384: "ECDSAWithSHA3-384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA3_512: "ECDSAWithSHA3-512",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "DSAWithSHA1",
    SignatureAlgorithmOID.DSA_WITH_SHA224: "DSAWithSHA224",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "DSAWithSHA256",
    SignatureAlgorithmOID.DSA_WITH_SHA384: "DSAWithSHA384",
    SignatureAlgorithmOID.DSA_WITH_SHA512: "DSAWithSHA512",
    SignatureAlgorithmOID.ED25519: "PureEd25519",
    SignatureAlgorithmOID.ED448: "Ed448",
    SignatureAlgorithmOID.ML_DSA_44: "ML-DSA-44",
    SignatureAlgorithmOID.ML_DSA_65: "ML-DSA-65",
    SignatureAlgorithmOID.ML_DSA_87: "ML-DSA-87",
    SignatureAlgorithmOID.GOSTR3411_94_WITH_3410_2001: "GOST-R-34.10-2001",
    SignatureAlgorithmOID.GOSTR3410_2012_WITH_3411_2012_256: "GOST-R-34.10-2012-256",
    SignatureAlgorithmOID.GOSTR3410_2012_WITH_3411_2012_512: "GOST-R-34.10-2012-512",
    # MD2 has no constant in cryptography any more but old roots still carry it.
    x509.ObjectIdentifier("1.2.840.113549.1.1.2"): "MD2WithRSA",
}

# Go names RSA-PSS by the hash in the PSS parameters; the OID alone does not say which.
_PSS_NAMES_BY_HASH = {
    "sha256": "SHA256WithRSAPSS",
    "sha384": "SHA384WithRSAPSS",
    "sha512": "SHA512WithRSAPSS",
}

# A PEM block: BEGIN label, body, END label. Labels are captured separately so a mismatched
# END can be reported rather than silently swallowed.
_PEM_BLOCK_RE = re.compile(
    r"-----BEGIN (?P<begin>[^-\n]*)-----(?P<body>.*?)-----END (?P<end>[^-\n]*)-----",
    re.DOTALL,
)

_CSR_LABELS = frozenset({"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"})

# `openssl ecparam -genkey` writes an EC PARAMETERS block before the key; it carries no secret
# and people paste it along, so it is tolerated (and dropped) in `private_key`.
_IGNORABLE_KEY_LABELS = frozenset({"EC PARAMETERS"})


@dataclass(frozen=True)
class _PemBlock:
    label: str
    body: str
    text: str  # the whole block including BEGIN/END lines, as normalised


def normalize_pem_text(text: str) -> str:
    """Return ``text`` with ``\\n`` line endings, each line stripped, and no outer whitespace.

    CRLF, lone CR and the two-character sequence backslash-n (JSON-escaped PEM pasted verbatim)
    all become a real newline. Stripping each line drops indentation and trailing blanks that
    copy-paste adds; none of it is meaningful in PEM. A backslash cannot occur in valid PEM
    (it is not in the base64 alphabet), so rewriting the escapes cannot corrupt real content.
    """
    text = text.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\r", "\n")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def _split_pem(text: str, *, field: str, code: int) -> list[_PemBlock]:
    """Split normalised text into PEM blocks; anything else in between is an error.

    Text between blocks is refused rather than ignored: it usually means a block was cut in
    half by copy-paste, and silently dropping it would upload something other than intended.
    """
    blocks: list[_PemBlock] = []
    pos = 0
    for match in _PEM_BLOCK_RE.finditer(text):
        gap = text[pos : match.start()]
        if gap.strip():
            raise UploadError(
                f"{field} contains text outside PEM blocks (before PEM block {len(blocks) + 1}); "
                "only -----BEGIN ...----- / -----END ...----- blocks are allowed",
                code=code,
            )
        begin, end, body = match.group("begin"), match.group("end"), match.group("body")
        position = len(blocks) + 1
        if begin != end:
            raise UploadError(
                f"PEM block {position} in {field} starts with BEGIN {begin} "
                f"but ends with END {end}",
                code=code,
            )
        if "-----" in body:
            # A BEGIN line inside the body means the previous block lost its END line.
            raise UploadError(
                f"PEM block {position} in {field} has no matching END line",
                code=code,
            )
        blocks.append(_PemBlock(label=begin, body=body, text=match.group(0)))
        pos = match.end()
    if text[pos:].strip():
        raise UploadError(
            f"{field} contains text outside PEM blocks (after PEM block {len(blocks)}); "
            "check that every -----BEGIN ...----- line has a matching -----END ...----- line"
            if blocks
            else f"{field} contains no PEM block; expected -----BEGIN ...----- / "
            "-----END ...----- lines",
            code=code,
        )
    return blocks


def _decode_body(body: str) -> bytes:
    """Decode a PEM body strictly; raises ValueError when it is not clean base64.

    Strict (validate=True) because the lenient decoder skips junk characters and would turn
    a damaged block into different, still-parseable bytes.
    """
    compact = "".join(body.split())
    if not compact:
        raise ValueError("empty body")
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


def signature_name(cert: x509.Certificate) -> str:
    """Go-style name of ``cert``'s signature algorithm, or a descriptive name if Go has none."""
    oid = cert.signature_algorithm_oid
    if oid == SignatureAlgorithmOID.RSASSA_PSS:
        try:
            hash_algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            hash_algorithm = None
        if hash_algorithm is not None and hash_algorithm.name in _PSS_NAMES_BY_HASH:
            return _PSS_NAMES_BY_HASH[hash_algorithm.name]
        return "RSAPSS"
    name = _SIGNATURE_NAMES.get(oid)
    if name is not None:
        return name
    return f"unknown signature algorithm (OID {oid.dotted_string})"


def _parse_certificates(text: str) -> list[x509.Certificate]:
    if not text:
        raise UploadError(
            "certificates is empty; send one or more PEM -----BEGIN CERTIFICATE----- blocks",
            code=PEM_MALFORMED,
        )
    blocks = _split_pem(text, field="certificates", code=PEM_MALFORMED)
    # Foreign blocks are reported before any certificate is decoded so a pasted private key is
    # refused for what it is (and its content is never parsed or echoed back).
    for position, block in enumerate(blocks, start=1):
        if block.label == "CERTIFICATE":
            continue
        if block.label in _CSR_LABELS:
            hint = (
                "certificate signing requests (CSRs) are not accepted; "
                "upload the signed certificate"
            )
        elif block.label.endswith("PRIVATE KEY"):
            hint = "private keys go in the private_key field, not in certificates"
        else:
            hint = (
                "certificates may only hold CERTIFICATE blocks; private keys go in the "
                "private_key field and CSRs are not accepted"
            )
        raise UploadError(
            f"PEM block {position} in certificates is a {block.label} block: {hint}",
            code=FOREIGN_PEM_BLOCK,
        )
    if not blocks:
        raise UploadError(
            "certificates contains no -----BEGIN CERTIFICATE----- block",
            code=PEM_MALFORMED,
        )

    certs: list[x509.Certificate] = []
    for position, block in enumerate(blocks, start=1):
        try:
            der = _decode_body(block.body)
        except ValueError:
            raise UploadError(
                f"certificate {position} is malformed: its PEM body is not valid base64",
                code=PEM_MALFORMED,
            ) from None
        try:
            cert = x509.load_der_x509_certificate(der)
            # cryptography parses extensions lazily; force it now so a malformed extension is
            # reported as malformed input instead of surfacing later as a server error.
            _ = cert.extensions
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
            raise UploadError(
                f"certificate {position} is malformed: its content is not a valid "
                "X.509 certificate",
                code=PEM_MALFORMED,
            ) from None
        certs.append(cert)
    return certs


def _check_signatures(certs: Sequence[x509.Certificate]) -> None:
    allowed = ", ".join(sorted(ALLOWED_SIGNATURES))
    for position, cert in enumerate(certs, start=1):
        name = signature_name(cert)
        if name not in ALLOWED_SIGNATURES:
            raise UploadError(
                f"certificate {position} is signed with {name}, which is not allowed; "
                f"allowed signature algorithms: {allowed}",
                code=SIGNATURE_ALGORITHM_NOT_ALLOWED,
            )


def _check_ca(certs: Sequence[x509.Certificate]) -> None:
    for position, cert in enumerate(certs, start=1):
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            # No Basic Constraints (e.g. an X.509 v1 certificate): RFC 5280 says such a
            # certificate must not be treated as a CA, and TLS stacks refuse it as one.
            raise UploadError(
                f"certificate {position} is not a CA: it has no Basic Constraints extension; "
                "a CA certificate needs Basic Constraints with CA:TRUE",
                code=NOT_A_CA,
            ) from None
        if not constraints.ca:
            raise UploadError(
                f"certificate {position} is not a CA: its Basic Constraints say CA:FALSE; "
                "a CA certificate needs Basic Constraints with CA:TRUE",
                code=NOT_A_CA,
            )


def _signature_verifies(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True if ``parent``'s public key verifies ``child``'s signature (names already match)."""
    if signature_name(child) in _SHA1_SIGNATURES:
        # cryptography's verify_directly_issued_by refuses SHA-1 ("Unsupported signature
        # algorithm"), yet SHA-1 is an allowed (warned-about) algorithm, so verify it by hand.
        public_key = parent.public_key()
        try:
            if isinstance(public_key, rsa.RSAPublicKey):
                public_key.verify(
                    child.signature,
                    child.tbs_certificate_bytes,
                    padding.PKCS1v15(),
                    hashes.SHA1(),
                )
            elif isinstance(public_key, ec.EllipticCurvePublicKey):
                public_key.verify(
                    child.signature, child.tbs_certificate_bytes, ec.ECDSA(hashes.SHA1())
                )
            else:
                return False  # e.g. an RSA signature with an EC key: cannot be the signer
        except InvalidSignature:
            return False
        return True
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_chain(certs: Sequence[x509.Certificate]) -> None:
    advice = (
        "a bundle must be the certificate followed by its issuer chain in order; "
        "upload unrelated CAs as separate certificates"
    )
    for index in range(len(certs) - 1):
        child, parent = certs[index], certs[index + 1]
        position = index + 1
        if child.issuer != parent.subject:
            raise UploadError(
                f"certificate {position + 1} did not issue certificate {position}: "
                f"certificate {position}'s issuer is {child.issuer.rfc4514_string()!r} but "
                f"certificate {position + 1}'s subject is {parent.subject.rfc4514_string()!r}; "
                f"{advice}",
                code=BUNDLE_NOT_A_CHAIN,
            )
        if not _signature_verifies(child, parent):
            raise UploadError(
                f"certificate {position + 1} did not issue certificate {position}: "
                f"certificate {position}'s signature does not verify with certificate "
                f"{position + 1}'s public key; {advice}",
                code=BUNDLE_NOT_A_CHAIN,
            ) from None


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_private_key(raw: str, cert: x509.Certificate) -> str:
    """Check ``raw`` is an unencrypted RSA/EC/Ed25519 key for ``cert``; return it as PKCS#8 PEM.

    Error messages never quote the input: it is secret material.
    """
    text = normalize_pem_text(raw)
    if not text:
        raise UploadError(
            "private_key is empty; omit it or send a PEM private key",
            code=PRIVATE_KEY_INVALID,
        )
    blocks = [
        block
        for block in _split_pem(text, field="private_key", code=PRIVATE_KEY_INVALID)
        if block.label not in _IGNORABLE_KEY_LABELS
    ]
    if len(blocks) != 1 or not blocks[0].label.endswith("PRIVATE KEY"):
        raise UploadError(
            "private_key must hold exactly one PEM private key block "
            "(-----BEGIN PRIVATE KEY----- or similar)",
            code=PRIVATE_KEY_INVALID,
        )
    block = blocks[0]
    encrypted_message = "encrypted private keys are not accepted; decrypt it first"
    # PKCS#8 encrypted keys have their own label; legacy OpenSSL ones carry a Proc-Type header.
    if block.label == "ENCRYPTED PRIVATE KEY" or "Proc-Type:" in block.body:
        raise UploadError(encrypted_message, code=PRIVATE_KEY_INVALID)
    try:
        key = serialization.load_pem_private_key((block.text + "\n").encode("ascii"), None)
    except TypeError:
        # cryptography signals "this key needs a password" with TypeError.
        raise UploadError(encrypted_message, code=PRIVATE_KEY_INVALID) from None
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise UploadError(
            "private_key is not a valid PEM private key", code=PRIVATE_KEY_INVALID
        ) from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise UploadError(
            "private_key type is not accepted; use an RSA, EC or Ed25519 key",
            code=PRIVATE_KEY_INVALID,
        )
    # Comparing the DER SubjectPublicKeyInfo covers every key type at once and is independent
    # of how the point or modulus happened to be encoded in the certificate.
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise UploadError("private_key does not match certificate 1", code=PRIVATE_KEY_INVALID)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode("ascii").strip()


def _warnings(certs: Sequence[x509.Certificate], now: datetime) -> list[UploadWarning]:
    """Warnings grouped by condition (in a fixed order), then by certificate position."""
    numbered = list(enumerate(certs, start=1))
    found: list[UploadWarning] = []
    for position, cert in numbered:
        name = signature_name(cert)
        if name in _SHA1_SIGNATURES:
            found.append(
                UploadWarning(
                    WARN_SHA1_SIGNATURE,
                    f"certificate {position} is signed with {name}; SHA-1 signatures are "
                    "weak and being phased out, reissue it with SHA-256 or better",
                )
            )
    for position, cert in numbered:
        public_key = cert.public_key()
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < _MIN_RSA_BITS:
            found.append(
                UploadWarning(
                    WARN_WEAK_RSA_KEY,
                    f"certificate {position} has a {public_key.key_size}-bit RSA key; "
                    f"keys shorter than {_MIN_RSA_BITS} bits are considered weak",
                )
            )
    for position, cert in numbered:
        if now > cert.not_valid_after_utc:
            found.append(
                UploadWarning(
                    WARN_EXPIRED,
                    f"certificate {position} expired on {cert.not_valid_after_utc.isoformat()}",
                )
            )
    for position, cert in numbered:
        if now < cert.not_valid_before_utc:
            found.append(
                UploadWarning(
                    WARN_NOT_YET_VALID,
                    f"certificate {position} is not valid until "
                    f"{cert.not_valid_before_utc.isoformat()}",
                )
            )
    for position, cert in numbered:
        not_after = cert.not_valid_after_utc
        if now <= not_after <= now + EXPIRING_SOON_WINDOW:
            found.append(
                UploadWarning(
                    WARN_EXPIRING_SOON,
                    f"certificate {position} expires soon, on {not_after.isoformat()}",
                )
            )
    return found


def _check_serials(certs: Sequence[x509.Certificate]) -> None:
    # RFC 5280 4.1.2.2: at most 20 octets. Longer ones are malformed, and would not fit the
    # store's serial column either.
    for i, cert in enumerate(certs, start=1):
        if abs(cert.serial_number).bit_length() > 160:
            raise UploadError(
                f"certificate {i} has a serial number longer than 20 bytes, "
                "which RFC 5280 does not allow",
                code=PEM_MALFORMED,
            )


def inspect_upload(
    certificates: str, *, ca: bool, private_key: str | None, now: datetime
) -> InspectedUpload:
    """Validate an upload and describe it; raise UploadError naming the first problem found.

    ``now`` is injected (instead of read from the clock) so validity warnings are testable;
    it must be timezone-aware. Checks run in this order: PEM structure and parsing, signature
    algorithms, CA constraints (only when ``ca``), chain order, private key; then warnings.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        # Comparing naive and aware datetimes raises deep inside the warnings; fail clearly.
        raise ValueError("now must be a timezone-aware datetime")

    certs = _parse_certificates(normalize_pem_text(certificates))
    _check_serials(certs)
    _check_signatures(certs)
    if ca:
        _check_ca(certs)
    _check_chain(certs)
    first = certs[0]
    private_key_pem = None if private_key is None else _load_private_key(private_key, first)

    # Re-encode from DER so the stored PEM is canonical (64-column base64, no stray headers)
    # whatever line-ending form the client used.
    certificates_pem = "\n".join(
        cert.public_bytes(serialization.Encoding.PEM).decode("ascii").strip() for cert in certs
    )
    return InspectedUpload(
        certificates_pem=certificates_pem,
        certs=tuple(certs),
        issuer=first.issuer.rfc4514_string(),
        serial_number=str(first.serial_number),
        signature=signature_name(first),
        not_before=first.not_valid_before_utc,
        expires_on=first.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(
            first.public_bytes(serialization.Encoding.DER)
        ).hexdigest(),
        private_key_pem=private_key_pem,
        warnings=tuple(_warnings(certs, now)),
    )
