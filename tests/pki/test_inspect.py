"""Tests for mtlsgate.pki.inspect, using certificates made by the real openssl CLI."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

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
from mtlsgate.pki.inspect import (
    ALLOWED_SIGNATURES,
    InspectedUpload,
    inspect_upload,
    normalize_pem_text,
    signature_name,
)
from tests.certs import (
    CertFiles,
    openssl,
    openssl_csr,
    openssl_dated_ca,
    openssl_encrypted_key,
    openssl_intermediate,
    openssl_leaf,
    openssl_root,
    openssl_traditional_key,
    openssl_v1_cert,
)


def inspect(
    certificates: str,
    *,
    ca: bool = True,
    private_key: str | None = None,
    now: datetime | None = None,
) -> InspectedUpload:
    # The real clock by default: the certificates below are made "now" by openssl.
    return inspect_upload(
        certificates, ca=ca, private_key=private_key, now=now or datetime.now(UTC)
    )


def refused(
    code: int,
    certificates: str,
    *,
    ca: bool = True,
    private_key: str | None = None,
    now: datetime | None = None,
) -> str:
    """Assert the upload is refused with ``code``; return the message."""
    with pytest.raises(UploadError) as info:
        inspect(certificates, ca=ca, private_key=private_key, now=now)
    assert info.value.code == code, info.value.message
    assert info.value.status == 400
    return info.value.message


def key_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM key, to check no key material leaks into messages."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


# --- shared certificates (module scope: openssl key generation is the slow part) -----------


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest.fixture(scope="module")
def root(tmp: Path) -> CertFiles:
    return openssl_root(tmp, subject="/C=US/O=Example Org/OU=PKI/CN=Example Root CA")


@pytest.fixture(scope="module")
def other_root(tmp: Path) -> CertFiles:
    return openssl_root(tmp, cn="Unrelated Root CA")


@pytest.fixture(scope="module")
def ec_root(tmp: Path) -> CertFiles:
    return openssl_root(tmp, kind="ec", digest="sha384", curve="secp384r1", cn="EC Root CA")


@pytest.fixture(scope="module")
def intermediate(tmp: Path, root: CertFiles) -> CertFiles:
    return openssl_intermediate(tmp, root, kind="ec")


@pytest.fixture(scope="module")
def leaf(tmp: Path, intermediate: CertFiles) -> CertFiles:
    return openssl_leaf(tmp, intermediate)


@pytest.fixture(scope="module")
def v1_cert(tmp: Path) -> CertFiles:
    return openssl_v1_cert(tmp)


@pytest.fixture(scope="module")
def dsa_root(tmp: Path) -> CertFiles:
    return openssl_root(tmp, kind="dsa", cn="DSA Root CA")


# --- accepted uploads and the reported fields ------------------------------------------------


def test_rsa_root_fields_match_openssl(root: CertFiles) -> None:
    result = inspect(root.cert_pem)

    issuer = openssl("x509", "-in", root.cert_path, "-noout", "-issuer", "-nameopt", "RFC2253")
    assert result.issuer == issuer.strip().removeprefix("issuer=")
    assert result.issuer == "CN=Example Root CA,OU=PKI,O=Example Org,C=US"
    serial = openssl("x509", "-in", root.cert_path, "-noout", "-serial")
    assert result.serial_number == str(int(serial.strip().removeprefix("serial="), 16))
    fingerprint = openssl("x509", "-in", root.cert_path, "-noout", "-fingerprint", "-sha256")
    expected_fp = fingerprint.strip().split("=", 1)[1].replace(":", "").lower()
    assert result.fingerprint_sha256 == expected_fp
    assert result.signature == "SHA256WithRSA"

    dates = dict(
        line.split("=", 1)
        for line in openssl("x509", "-in", root.cert_path, "-noout", "-dates").splitlines()
    )
    openssl_time = "%b %d %H:%M:%S %Y GMT"
    assert result.not_before == datetime.strptime(
        " ".join(dates["notBefore"].split()), openssl_time
    ).replace(tzinfo=UTC)
    assert result.expires_on == datetime.strptime(
        " ".join(dates["notAfter"].split()), openssl_time
    ).replace(tzinfo=UTC)
    assert result.not_before.tzinfo is not None and result.expires_on.tzinfo is not None

    assert result.certificates_pem == root.cert_pem.strip()
    assert len(result.certs) == 1
    assert result.private_key_pem is None
    assert result.warnings == ()


def test_ec_root_accepted(ec_root: CertFiles) -> None:
    result = inspect(ec_root.cert_pem)
    assert result.signature == "ECDSAWithSHA384"
    assert result.issuer == "CN=EC Root CA"
    assert result.warnings == ()


def test_intermediate_alone_is_a_valid_anchor(root: CertFiles, intermediate: CertFiles) -> None:
    result = inspect(intermediate.cert_pem)
    assert result.issuer == "CN=Example Root CA,OU=PKI,O=Example Org,C=US"
    assert result.signature == "SHA256WithRSA"  # signed by the RSA root, though its key is EC


def test_chain_bundle_intermediate_then_root(root: CertFiles, intermediate: CertFiles) -> None:
    result = inspect(intermediate.cert_pem + root.cert_pem)
    assert len(result.certs) == 2
    assert result.certificates_pem == intermediate.cert_pem.strip() + "\n" + root.cert_pem.strip()
    assert not result.certificates_pem.endswith("\n")
    # Everything reported describes certificate 1.
    assert result.certs[0].subject.rfc4514_string() == "CN=Test Intermediate CA"
    assert result.issuer == "CN=Example Root CA,OU=PKI,O=Example Org,C=US"


def test_leaf_with_full_chain_accepted_when_not_ca(
    root: CertFiles, intermediate: CertFiles, leaf: CertFiles
) -> None:
    result = inspect(leaf.cert_pem + intermediate.cert_pem + root.cert_pem, ca=False)
    assert len(result.certs) == 3
    assert result.issuer == "CN=Test Intermediate CA"
    assert result.signature == "ECDSAWithSHA256"


# --- CA checks --------------------------------------------------------------------------------


def test_leaf_refused_as_ca(leaf: CertFiles) -> None:
    message = refused(NOT_A_CA, leaf.cert_pem)
    assert "certificate 1 is not a CA" in message
    assert "CA:TRUE" in message


def test_leaf_in_chain_refused_as_ca(
    root: CertFiles, intermediate: CertFiles, leaf: CertFiles
) -> None:
    message = refused(NOT_A_CA, leaf.cert_pem + intermediate.cert_pem + root.cert_pem)
    assert "certificate 1 is not a CA" in message


def test_v1_cert_refused_as_ca_but_accepted_otherwise(v1_cert: CertFiles) -> None:
    assert x509.load_pem_x509_certificate(v1_cert.cert_pem.encode()).version == x509.Version.v1
    message = refused(NOT_A_CA, v1_cert.cert_pem)
    assert "certificate 1 is not a CA" in message
    assert "Basic Constraints" in message
    result = inspect(v1_cert.cert_pem, ca=False)
    assert result.issuer == "CN=Test V1 Cert"


def test_non_ca_issuer_in_bundle_names_position(tmp: Path, v1_cert: CertFiles) -> None:
    signed_by_v1 = openssl_intermediate(tmp, v1_cert, cn="Child Of V1")
    message = refused(NOT_A_CA, signed_by_v1.cert_pem + v1_cert.cert_pem)
    assert "certificate 2 is not a CA" in message
    assert len(inspect(signed_by_v1.cert_pem + v1_cert.cert_pem, ca=False).certs) == 2


# --- bundle must be a chain -------------------------------------------------------------------


def test_two_unrelated_roots_refused(root: CertFiles, other_root: CertFiles) -> None:
    message = refused(BUNDLE_NOT_A_CHAIN, root.cert_pem + other_root.cert_pem)
    assert "certificate 2" in message and "certificate 1" in message
    assert "separate" in message


def test_chain_in_wrong_order_refused(root: CertFiles, intermediate: CertFiles) -> None:
    message = refused(BUNDLE_NOT_A_CHAIN, root.cert_pem + intermediate.cert_pem)
    assert "certificate 2 did not issue certificate 1" in message


def test_same_name_different_key_refused(tmp: Path, intermediate: CertFiles) -> None:
    impostor = openssl_root(tmp, subject="/C=US/O=Example Org/OU=PKI/CN=Example Root CA")
    message = refused(BUNDLE_NOT_A_CHAIN, intermediate.cert_pem + impostor.cert_pem)
    assert "signature does not verify" in message


def test_gap_in_chain_refused(root: CertFiles, leaf: CertFiles) -> None:
    message = refused(BUNDLE_NOT_A_CHAIN, leaf.cert_pem + root.cert_pem, ca=False)
    assert "certificate 2 did not issue certificate 1" in message


# --- signature algorithms ---------------------------------------------------------------------


def test_allowed_signatures_exact() -> None:
    expected = {
        "SHA1WithRSA",
        "SHA256WithRSA",
        "SHA384WithRSA",
        "SHA512WithRSA",
        "ECDSAWithSHA1",
        "ECDSAWithSHA256",
        "ECDSAWithSHA384",
        "ECDSAWithSHA512",
    }
    assert expected == ALLOWED_SIGNATURES


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"digest": "sha384"}, "SHA384WithRSA"),
        ({"digest": "sha512"}, "SHA512WithRSA"),
        ({"kind": "ec", "digest": "sha256"}, "ECDSAWithSHA256"),
        ({"kind": "ec", "digest": "sha512"}, "ECDSAWithSHA512"),
    ],
)
def test_allowed_signature_names(tmp: Path, options: dict[str, str], name: str) -> None:
    ca = openssl_root(tmp, cn=f"Allowed {name}", **options)  # type: ignore[arg-type]
    assert inspect(ca.cert_pem).signature == name


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"pss": True}, "SHA256WithRSAPSS"),
        ({"pss": True, "digest": "sha384"}, "SHA384WithRSAPSS"),
        ({"kind": "ed25519"}, "PureEd25519"),
        ({"kind": "ed448"}, "Ed448"),
        ({"digest": "md5"}, "MD5WithRSA"),
        ({"digest": "sha224"}, "SHA224WithRSA"),
    ],
)
def test_disallowed_signature_refused(tmp: Path, options: dict[str, object], name: str) -> None:
    ca = openssl_root(tmp, cn=f"Refused {name}", **options)  # type: ignore[arg-type]
    assert signature_name(x509.load_pem_x509_certificate(ca.cert_pem.encode())) == name
    for allowed in (True, False):
        message = refused(SIGNATURE_ALGORITHM_NOT_ALLOWED, ca.cert_pem, ca=allowed)
        assert f"certificate 1 is signed with {name}" in message
        assert "SHA256WithRSA" in message and "ECDSAWithSHA384" in message  # the allowed list


def test_dsa_signature_refused(dsa_root: CertFiles) -> None:
    message = refused(SIGNATURE_ALGORITHM_NOT_ALLOWED, dsa_root.cert_pem)
    assert "DSAWithSHA256" in message


def test_disallowed_signature_in_second_cert_names_position(tmp: Path) -> None:
    pss_root = openssl_root(tmp, pss=True, cn="PSS Root")
    child = openssl_intermediate(tmp, pss_root, cn="Child Of PSS")
    # The child itself is signed with plain PKCS#1 v1.5 (no -sigopt when issuing it), so only
    # certificate 2 is at fault and the message must say so.
    assert inspect(child.cert_pem, ca=True).signature == "SHA256WithRSA"
    message = refused(SIGNATURE_ALGORITHM_NOT_ALLOWED, child.cert_pem + pss_root.cert_pem)
    assert "certificate 2 is signed with SHA256WithRSAPSS" in message


# --- PEM parsing and normalisation ------------------------------------------------------------


def test_normalize_pem_text() -> None:
    assert normalize_pem_text("  a\\nb\r\nc\rd\ne\\r\\nf  \n") == "a\nb\nc\nd\ne\nf"
    assert normalize_pem_text("\n\n") == ""


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda pem: pem.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda pem: pem.strip().replace("\n", "\\n"), id="literal-backslash-n"),
        pytest.param(lambda pem: pem.replace("\n", "\\r\\n"), id="literal-backslash-r-n"),
        pytest.param(lambda pem: "\n\n  " + pem + "   \n\n", id="outer-whitespace"),
        pytest.param(lambda pem: "\n".join("  " + ln for ln in pem.splitlines()), id="indented"),
    ],
)
def test_line_ending_forms_accepted(
    root: CertFiles, intermediate: CertFiles, transform: object
) -> None:
    bundle = intermediate.cert_pem + root.cert_pem
    expected = inspect(bundle)
    result = inspect(transform(bundle))  # type: ignore[operator]
    assert result.certificates_pem == expected.certificates_pem
    assert result.fingerprint_sha256 == expected.fingerprint_sha256


@pytest.mark.parametrize("text", ["", "   ", "\n\r\n", "\\n"])
def test_empty_refused(text: str) -> None:
    assert "empty" in refused(PEM_MALFORMED, text)


def test_no_pem_block_refused() -> None:
    refused(PEM_MALFORMED, "hello, this is not a certificate")
    # A bare base64 certificate without BEGIN/END lines is not accepted either.
    refused(PEM_MALFORMED, base64.b64encode(b"\x30\x03\x02\x01\x01").decode())


def test_garbage_base64_refused(root: CertFiles) -> None:
    garbage = "-----BEGIN CERTIFICATE-----\nnot*base64!!\n-----END CERTIFICATE-----\n"
    assert "certificate 1" in refused(PEM_MALFORMED, garbage)
    message = refused(PEM_MALFORMED, root.cert_pem + garbage)
    assert "certificate 2" in message and "base64" in message


def test_valid_base64_but_not_a_certificate_refused(root: CertFiles) -> None:
    junk = base64.b64encode(b"definitely not DER").decode()
    pem = f"-----BEGIN CERTIFICATE-----\n{junk}\n-----END CERTIFICATE-----"
    assert "certificate 1" in refused(PEM_MALFORMED, pem)
    # Truncated DER (last body line dropped) in position 2.
    lines = root.cert_pem.strip().splitlines()
    truncated = "\n".join(lines[:-2] + lines[-1:])
    message = refused(PEM_MALFORMED, root.cert_pem + truncated)
    assert "certificate 2" in message


def test_empty_certificate_block_refused() -> None:
    refused(PEM_MALFORMED, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----")


def test_text_outside_blocks_refused(root: CertFiles, other_root: CertFiles) -> None:
    assert "outside" in refused(PEM_MALFORMED, "my root:\n" + root.cert_pem)
    assert "outside" in refused(PEM_MALFORMED, root.cert_pem + "trailing junk")
    assert "outside" in refused(PEM_MALFORMED, root.cert_pem + "between\n" + other_root.cert_pem)


def test_broken_block_structure_refused(root: CertFiles) -> None:
    missing_end = root.cert_pem.replace("-----END CERTIFICATE-----", "")
    refused(PEM_MALFORMED, missing_end)
    refused(PEM_MALFORMED, missing_end + root.cert_pem)
    mismatched = root.cert_pem.replace("END CERTIFICATE", "END PUBLIC KEY")
    assert "END PUBLIC KEY" in refused(PEM_MALFORMED, mismatched)


# --- foreign PEM blocks in certificates -------------------------------------------------------


def test_csr_refused(tmp: Path) -> None:
    csr = openssl_csr(tmp, cn="A CSR")
    message = refused(FOREIGN_PEM_BLOCK, csr.cert_pem)
    assert "CSR" in message and "CERTIFICATE REQUEST" in message
    old_label = csr.cert_pem.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
    assert "CSR" in refused(FOREIGN_PEM_BLOCK, old_label)


def test_private_key_in_certificates_refused(root: CertFiles, ec_root: CertFiles) -> None:
    for key_pem in (
        root.key_pem,  # PKCS#8 "PRIVATE KEY"
        openssl_traditional_key(root),  # "RSA PRIVATE KEY"
        openssl_traditional_key(ec_root),  # "EC PRIVATE KEY"
        openssl_encrypted_key(root),  # "ENCRYPTED PRIVATE KEY"
    ):
        message = refused(FOREIGN_PEM_BLOCK, root.cert_pem + key_pem)
        assert "PEM block 2" in message and "private_key" in message
        assert not any(line in message for line in key_lines(key_pem))


def test_other_blocks_refused(root: CertFiles) -> None:
    public_key = openssl("pkey", "-in", root.key_path, "-pubout")
    message = refused(FOREIGN_PEM_BLOCK, public_key + root.cert_pem)
    assert "PEM block 1" in message and "PUBLIC KEY" in message
    assert "private_key" in message and "CSR" in message
    trusted = root.cert_pem.replace("CERTIFICATE", "TRUSTED CERTIFICATE")
    refused(FOREIGN_PEM_BLOCK, trusted)


# --- private key ------------------------------------------------------------------------------


def test_matching_private_key_returned_as_pkcs8(root: CertFiles) -> None:
    for key_pem in (root.key_pem, openssl_traditional_key(root)):
        result = inspect(root.cert_pem, private_key=key_pem)
        assert result.private_key_pem is not None
        assert result.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----\n")
        assert result.private_key_pem.endswith("-----END PRIVATE KEY-----")
        key = serialization.load_pem_private_key(result.private_key_pem.encode(), None)
        cert_key = result.certs[0].public_key()
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        assert key.public_key().public_bytes(der, spki) == cert_key.public_bytes(der, spki)


def test_private_key_line_ending_forms(root: CertFiles) -> None:
    crlf = inspect(root.cert_pem, private_key=root.key_pem.replace("\n", "\r\n"))
    escaped = inspect(root.cert_pem, private_key=root.key_pem.strip().replace("\n", "\\n"))
    assert crlf.private_key_pem == escaped.private_key_pem is not None


def test_ec_private_key_with_ec_parameters_block(tmp: Path, ec_root: CertFiles) -> None:
    params = openssl("ecparam", "-name", "secp384r1")
    result = inspect(ec_root.cert_pem, private_key=params + openssl_traditional_key(ec_root))
    assert result.private_key_pem is not None


def test_ed25519_private_key_accepted(tmp: Path, root: CertFiles) -> None:
    ed_leaf = openssl_leaf(tmp, root, kind="ed25519", cn="Ed25519 Client")
    result = inspect(ed_leaf.cert_pem + root.cert_pem, ca=False, private_key=ed_leaf.key_pem)
    assert result.private_key_pem is not None


def test_private_key_mismatch_refused(
    root: CertFiles, other_root: CertFiles, intermediate: CertFiles
) -> None:
    message = refused(PRIVATE_KEY_INVALID, root.cert_pem, private_key=other_root.key_pem)
    assert message == "private_key does not match certificate 1"
    # The key must belong to certificate 1, not to another certificate of the bundle.
    refused(PRIVATE_KEY_INVALID, intermediate.cert_pem + root.cert_pem, private_key=root.key_pem)


@pytest.mark.parametrize("legacy", [False, True], ids=["pkcs8", "traditional"])
def test_encrypted_private_key_refused(root: CertFiles, legacy: bool) -> None:
    encrypted = openssl_encrypted_key(root, legacy=legacy)
    message = refused(PRIVATE_KEY_INVALID, root.cert_pem, private_key=encrypted)
    assert message == "encrypted private keys are not accepted; decrypt it first"


def test_invalid_private_key_refused(root: CertFiles, dsa_root: CertFiles) -> None:
    bad_key = "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAA\n-----END PRIVATE KEY-----"
    refused(PRIVATE_KEY_INVALID, root.cert_pem, private_key=bad_key)
    refused(PRIVATE_KEY_INVALID, root.cert_pem, private_key="")
    refused(PRIVATE_KEY_INVALID, root.cert_pem, private_key="not a key")
    message = refused(PRIVATE_KEY_INVALID, root.cert_pem, private_key=root.cert_pem)
    assert "private key" in message
    two_keys = root.key_pem + root.key_pem
    refused(PRIVATE_KEY_INVALID, root.cert_pem, private_key=two_keys)
    message = refused(PRIVATE_KEY_INVALID, root.cert_pem, private_key=dsa_root.key_pem)
    assert "RSA, EC or Ed25519" in message
    assert not any(line in message for line in key_lines(dsa_root.key_pem))


# --- warnings ---------------------------------------------------------------------------------


def codes(result: InspectedUpload) -> list[int]:
    return [warning.code for warning in result.warnings]


def test_sha1_ca_accepted_with_warning(tmp: Path) -> None:
    sha1_rsa = openssl_root(tmp, digest="sha1", cn="SHA1 RSA Root")
    result = inspect(sha1_rsa.cert_pem)
    assert result.signature == "SHA1WithRSA"
    assert codes(result) == [WARN_SHA1_SIGNATURE]
    assert "certificate 1" in result.warnings[0].message

    sha1_ec = openssl_root(tmp, kind="ec", digest="sha1", cn="SHA1 EC Root")
    result = inspect(sha1_ec.cert_pem)
    assert result.signature == "ECDSAWithSHA1"
    assert codes(result) == [WARN_SHA1_SIGNATURE]


def test_weak_rsa_key_warning(tmp: Path) -> None:
    weak = openssl_root(tmp, bits=1024, cn="Weak Root")
    result = inspect(weak.cert_pem)
    assert codes(result) == [WARN_WEAK_RSA_KEY]
    assert "certificate 1" in result.warnings[0].message
    assert "1024" in result.warnings[0].message


def test_expired_certificate_warning(tmp: Path) -> None:
    expired = openssl_dated_ca(
        tmp,
        not_before=datetime.now(UTC) - timedelta(days=400),
        not_after=datetime.now(UTC) - timedelta(days=1),
    )
    result = inspect(expired.cert_pem)  # the real clock: it really is expired
    assert codes(result) == [WARN_EXPIRED]  # not also "expiring soon"
    assert "certificate 1 expired" in result.warnings[0].message


def test_not_yet_valid_warning(tmp: Path) -> None:
    future = openssl_dated_ca(
        tmp,
        not_before=datetime.now(UTC) + timedelta(days=10),
        not_after=datetime.now(UTC) + timedelta(days=400),
    )
    result = inspect(future.cert_pem)
    assert codes(result) == [WARN_NOT_YET_VALID]
    assert "certificate 1" in result.warnings[0].message


def test_validity_warnings_with_injected_now(root: CertFiles) -> None:
    cert = x509.load_pem_x509_certificate(root.cert_pem.encode())
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc

    def at(now: datetime) -> list[int]:
        return codes(inspect(root.cert_pem, now=now))

    assert at(not_before - timedelta(seconds=1)) == [WARN_NOT_YET_VALID]
    assert at(not_before) == []
    assert at(not_after - timedelta(days=31)) == []
    assert at(not_after - timedelta(days=29)) == [WARN_EXPIRING_SOON]
    assert at(not_after) == [WARN_EXPIRING_SOON]
    assert at(not_after + timedelta(seconds=1)) == [WARN_EXPIRED]
    soon = inspect(root.cert_pem, now=not_after - timedelta(days=5)).warnings[0]
    assert "certificate 1 expires soon" in soon.message


def test_warnings_order_and_positions(tmp: Path) -> None:
    # Both weak (SHA-1, 1024-bit); the child expires first, the root ten days later.
    old_root = openssl_root(tmp, digest="sha1", bits=1024, cn="Old Root", days=60)
    child = openssl_intermediate(tmp, old_root, digest="sha1", bits=1024, cn="Old Child", days=50)
    expires = x509.load_pem_x509_certificate(child.cert_pem.encode()).not_valid_after_utc
    result = inspect(child.cert_pem + old_root.cert_pem, now=expires + timedelta(days=1))
    # Grouped by condition in the documented order, then by position.
    assert [(w.code, w.message.split(" ")[1]) for w in result.warnings] == [
        (WARN_SHA1_SIGNATURE, "1"),
        (WARN_SHA1_SIGNATURE, "2"),
        (WARN_WEAK_RSA_KEY, "1"),
        (WARN_WEAK_RSA_KEY, "2"),
        (WARN_EXPIRED, "1"),
        (WARN_EXPIRING_SOON, "2"),
    ]


def test_naive_now_rejected(root: CertFiles) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        inspect(root.cert_pem, now=datetime(2030, 1, 1))


def test_sha1_signed_chain_verified(tmp: Path) -> None:
    # cryptography's own chain check refuses SHA-1, so these exercise the hand-written path.
    for kind in ("rsa", "ec"):
        sha1_root = openssl_root(tmp, kind=kind, digest="sha1", cn=f"SHA1 {kind} Chain Root")
        child = openssl_intermediate(tmp, sha1_root, kind=kind, digest="sha1", cn="SHA1 Child")
        result = inspect(child.cert_pem + sha1_root.cert_pem)
        assert codes(result) == [WARN_SHA1_SIGNATURE, WARN_SHA1_SIGNATURE]
        impostor = openssl_root(tmp, kind=kind, digest="sha1", cn=f"SHA1 {kind} Chain Root")
        message = refused(BUNDLE_NOT_A_CHAIN, child.cert_pem + impostor.cert_pem)
        assert "signature does not verify" in message
