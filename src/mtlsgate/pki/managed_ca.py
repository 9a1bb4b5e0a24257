"""The account's managed client-certificate CA: key generation, CSR checks, and signing.

Pure: no database, no web. The clock is passed in so tests are deterministic. Errors are
CsrError (a BadRequest) whose message says what is wrong with the CSR or the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtlsgate.errors import BadRequest
from mtlsgate.pki.inspect import normalize_pem_text, signature_name

CA_VALIDITY = timedelta(days=3650 * 2)

# validity_days bounds (docs/managed-ca.md). The upper bound is the anchor's own example and
# dashboard default (10 years); a certificate must also end before its CA does.
MIN_VALIDITY_DAYS = 1
MAX_VALIDITY_DAYS = 3650

# Keys a client certificate may have: what TLS client stacks (curl, browsers, Go, Java) all
# handle. RSA below 2048 bits is factorable with realistic effort; above 8192 it only makes
# every handshake slow. Curves: the NIST ones every TLS library implements.
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
ALLOWED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

MAX_CSR_CHARS = 64 * 1024

# Error codes (stable; docs/api.md).
CSR_MALFORMED = 1470
CSR_BAD_SIGNATURE = 1471
CSR_WEAK_KEY = 1472
CSR_UNSUPPORTED_KEY = 1473
CSR_NO_COMMON_NAME = 1474  # also: a subject value the certificate must not carry
CSR_BAD_SUBJECT = CSR_NO_COMMON_NAME
VALIDITY_OUT_OF_RANGE = 1475

_CSR_BLOCK = re.compile(
    r"-----BEGIN (NEW )?CERTIFICATE REQUEST-----\n(?P<body>[A-Za-z0-9+/=\n]+?)\n?"
    r"-----END (NEW )?CERTIFICATE REQUEST-----"
)


class CsrError(BadRequest):
    """A CSR (or the validity asked for it) that the managed CA will not sign."""

    code = CSR_MALFORMED


@dataclass(frozen=True)
class GeneratedCA:
    certificate_pem: str
    private_key_pem: str


def generate_managed_ca(common_name: str, *, now: datetime) -> GeneratedCA:
    """A self-signed ECDSA P-256 CA that may only sign end-entity client certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mtlsgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return GeneratedCA(
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


# --- signing client certificates --------------------------------------------------------------


@dataclass(frozen=True)
class CheckedCsr:
    csr: x509.CertificateSigningRequest
    pem: str  # the CSR as one normalised PEM block, "\n" line endings


def parse_csr(text: str) -> CheckedCsr:
    """One PEM CSR whose self-signature verifies and whose key is one the edge accepts."""
    if not isinstance(text, str) or not text.strip():
        raise CsrError("csr is empty; expected a PEM certificate signing request", pointer="csr")
    if len(text) > MAX_CSR_CHARS:
        raise CsrError(f"csr is longer than {MAX_CSR_CHARS} characters", pointer="csr")
    normalised = normalize_pem_text(text)
    blocks = list(_CSR_BLOCK.finditer(normalised))
    if len(blocks) != 1 or normalised[: blocks[0].start()] or normalised[blocks[0].end() :]:
        found = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----", normalised)
        what = f" (found {', '.join(found)})" if found else ""
        raise CsrError(
            "csr must be exactly one PEM block -----BEGIN CERTIFICATE REQUEST----- ... "
            f"-----END CERTIFICATE REQUEST-----{what}",
            pointer="csr",
        )
    pem = (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + blocks[0].group("body").strip("\n")
        + "\n-----END CERTIFICATE REQUEST-----\n"
    )
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
        key = csr.public_key()
    except ValueError:
        # cryptography's message is a Rust debug string (`ParseError { kind: ShortData ... }`):
        # the user gets plain words instead.
        raise CsrError(
            "csr is not a readable PKCS#10 request: the PEM block does not hold a valid "
            "certificate signing request (it may be truncated or damaged; copy the whole "
            "file, from -----BEGIN to -----END)",
            pointer="csr",
        ) from None
    except Exception as exc:  # cryptography's UnsupportedAlgorithm for unknown key types
        raise CsrError(
            f"csr has an unsupported public key ({exc}); use RSA (2048 to 8192 bits) or "
            f"ECDSA on {', '.join(ALLOWED_CURVES.values())}",
            code=CSR_UNSUPPORTED_KEY,
            pointer="csr",
        ) from None
    _check_key(key)
    _check_signature_algorithm(csr)
    try:
        valid = csr.is_signature_valid
    except Exception:  # an algorithm cryptography cannot verify: as good as a bad signature
        valid = False
    if not valid:
        raise CsrError(
            "csr signature does not verify with its own public key (the request was altered "
            "or signed with another key)",
            code=CSR_BAD_SIGNATURE,
            pointer="csr",
        )
    if not csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise CsrError(
            "csr subject has no common name (CN); the certificate's common_name comes from it",
            code=CSR_NO_COMMON_NAME,
            pointer="csr",
        )
    check_subject(csr.subject)
    return CheckedCsr(csr, pem)


# Hashes no longer safe for signatures (collisions are practical): a CSR signed with one is
# refused by name rather than as "does not verify" (OpenSSL 3 may not verify it at all).
_BROKEN_HASHES = {"sha1": "SHA-1", "md5": "MD5"}


def _check_signature_algorithm(csr: x509.CertificateSigningRequest) -> None:
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        oid = csr.signature_algorithm_oid
        name = oid._name or oid.dotted_string
        raise CsrError(
            f"csr is signed with an unsupported signature algorithm ({name}); sign it with "
            "SHA-256 (openssl req -sha256)",
            code=CSR_BAD_SIGNATURE,
            pointer="csr",
        ) from None
    broken = _BROKEN_HASHES.get(algorithm.name) if algorithm is not None else None
    if broken is not None:
        raise CsrError(
            f"csr is signed with an unsupported signature algorithm ({broken}); sign it with "
            "SHA-256 (openssl req -sha256)",
            code=CSR_BAD_SIGNATURE,
            pointer="csr",
        )


# The subject attributes the API shows, their X.520 upper bounds (RFC 5280 appendix A, in
# characters) and their names in messages. The country is an ISO 3166 two-letter code.
_SUBJECT_BOUNDS = {
    NameOID.COMMON_NAME: ("common name (CN)", 64),
    NameOID.ORGANIZATION_NAME: ("organization (O)", 64),
    NameOID.ORGANIZATIONAL_UNIT_NAME: ("organizational unit (OU)", 64),
    NameOID.STATE_OR_PROVINCE_NAME: ("state or province (ST)", 128),
    NameOID.LOCALITY_NAME: ("locality (L)", 128),
    NameOID.COUNTRY_NAME: ("country (C)", 2),
}
# C0 controls and DEL: a CR/LF in a subject ends up in cf-cert-* headers, logs and terminals,
# and a NUL is refused by PostgreSQL text columns.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_subject(name: x509.Name) -> None:
    """Every subject value is printable text within its X.520 bound; a CsrError names the
    attribute otherwise (the CSR's values are signed as they are: nothing is cut or cleaned)."""
    for attribute in name:
        oid = attribute.oid
        label, bound = _SUBJECT_BOUNDS.get(oid, (None, 0))
        what = label or f"attribute {oid._name or oid.dotted_string}"
        value = attribute.value
        if not isinstance(value, str):
            if label is None:
                continue  # a binary attribute (x500UniqueIdentifier): not text, not shown
            raise CsrError(f"csr subject {what} is not a text value", code=CSR_BAD_SUBJECT,
                           pointer="csr")  # fmt: skip
        control = _CONTROL.search(value)
        if control is not None:
            raise CsrError(
                f"csr subject {what} contains the control character "
                f"U+{ord(control.group()):04X}; subject values must be printable text",
                code=CSR_BAD_SUBJECT,
                pointer="csr",
            )
        if label is None:
            continue
        if oid == NameOID.COUNTRY_NAME:
            if not re.fullmatch(r"[A-Za-z]{2}", value):
                raise CsrError(
                    f"csr subject {what} must be a two-letter ISO 3166 code such as US, "
                    f"got {value!r}",
                    code=CSR_BAD_SUBJECT,
                    pointer="csr",
                )
        elif not 1 <= len(value) <= bound:
            raise CsrError(
                f"csr subject {what} must be 1 to {bound} characters (the X.520 bound), "
                f"got {len(value)}",
                code=CSR_BAD_SUBJECT,
                pointer="csr",
            )


def _check_key(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrError(
                f"csr has a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits are required",
                code=CSR_WEAK_KEY,
                pointer="csr",
            )
        if key.key_size > MAX_RSA_BITS:
            raise CsrError(
                f"csr has a {key.key_size}-bit RSA key; at most {MAX_RSA_BITS} bits are accepted",
                code=CSR_UNSUPPORTED_KEY,
                pointer="csr",
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise CsrError(
                f"csr has an ECDSA key on curve {key.curve.name}, which is not supported; "
                f"use {', '.join(ALLOWED_CURVES.values())}",
                code=CSR_UNSUPPORTED_KEY,
                pointer="csr",
            )
        return
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "") or "unknown"
    raise CsrError(
        f"csr has an unsupported key type ({kind}); use RSA (2048 to 8192 bits) or ECDSA on "
        f"{', '.join(ALLOWED_CURVES.values())}",
        code=CSR_UNSUPPORTED_KEY,
        pointer="csr",
    )


def check_validity_days(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CsrError(
            "validity_days must be an integer number of days",
            code=VALIDITY_OUT_OF_RANGE,
            pointer="validity_days",
        )
    if not MIN_VALIDITY_DAYS <= value <= MAX_VALIDITY_DAYS:
        raise CsrError(
            f"validity_days must be between {MIN_VALIDITY_DAYS} and {MAX_VALIDITY_DAYS}, "
            f"got {value}",
            code=VALIDITY_OUT_OF_RANGE,
            pointer="validity_days",
        )
    return value


@dataclass(frozen=True)
class IssuedClientCert:
    certificate: x509.Certificate
    certificate_pem: str
    serial_hex: str  # lowercase, two digits per byte (as `openssl x509 -noout -serial`, lower)
    fingerprint_sha256: str
    ski: str
    signature: str
    issued_on: datetime
    expires_on: datetime
    subject: dict[str, str]  # common_name, country, state, location, organization, ...


SUBJECT_FIELDS = (
    ("common_name", NameOID.COMMON_NAME),
    ("country", NameOID.COUNTRY_NAME),
    ("state", NameOID.STATE_OR_PROVINCE_NAME),
    ("location", NameOID.LOCALITY_NAME),
    ("organization", NameOID.ORGANIZATION_NAME),
    ("organizational_unit", NameOID.ORGANIZATIONAL_UNIT_NAME),
)


def subject_fields(name: x509.Name) -> dict[str, str]:
    """The API's subject fields; "" for an attribute the name lacks (the first one if several)."""
    out: dict[str, str] = {}
    for field, oid in SUBJECT_FIELDS:
        attrs = name.get_attributes_for_oid(oid)
        value = attrs[0].value if attrs else ""
        out[field] = value if isinstance(value, str) else value.decode("latin-1")
    return out


def serial_hex(serial: int) -> str:
    return serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big").hex()


def sign_client_certificate(
    checked: CheckedCsr,
    *,
    ca_certificate_pem: str,
    ca_private_key_pem: str,
    validity_days: int,
    now: datetime,
) -> IssuedClientCert:
    """An end-entity clientAuth certificate for the CSR's key, valid from `issued_on` (now, to
    the minute as the anchor's examples) for exactly `validity_days` days."""
    validity_days = check_validity_days(validity_days)
    ca_cert = x509.load_pem_x509_certificate(ca_certificate_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_private_key_pem.encode(), password=None)
    if not isinstance(ca_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise TypeError("the managed CA key must be ECDSA or RSA")
    issued_on = now.replace(second=0, microsecond=0)
    expires_on = issued_on + timedelta(days=validity_days)
    if expires_on > ca_cert.not_valid_after_utc:
        raise CsrError(
            f"validity_days {validity_days} would outlive the managed CA, which expires on "
            f"{ca_cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}; ask for fewer days or rotate "
            "the CA (docs/managed-ca.md)",
            code=VALIDITY_OUT_OF_RANGE,
            pointer="validity_days",
        )
    csr = checked.csr
    public_key = csr.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_on)
        .not_valid_after(expires_on)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=is_rsa,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return IssuedClientCert(
        certificate=cert,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        serial_hex=serial_hex(cert.serial_number),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        ski=ski.digest.hex(),
        signature=signature_name(cert),
        issued_on=issued_on,
        expires_on=expires_on,
        subject=subject_fields(csr.subject),
    )


@dataclass(frozen=True)
class GeneratedRequest:
    private_key_pem: str  # PKCS#8, unencrypted: the caller writes it owner-only
    csr_pem: str


def generate_key_and_csr(common_name: str, *, key_type: str = "ec") -> GeneratedRequest:
    """A fresh key (ECDSA P-256, or RSA 2048 for "rsa") and a CSR for CN=`common_name`: the
    "generate a private key and CSR for me" path, run on the operator's machine."""
    if not common_name or len(common_name) > 64:
        raise CsrError("the common name must be 1 to 64 characters", code=CSR_NO_COMMON_NAME)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    check_subject(subject)  # before any key is made: the CSR would be refused anyway
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise CsrError(f"key type must be ec or rsa, not {key_type!r}", code=CSR_UNSUPPORTED_KEY)
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return GeneratedRequest(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
    )
