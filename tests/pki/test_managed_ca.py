"""The managed CA's pure parts: CSR checks, signing, serial format, and the revocation index."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtlsgate.pki.managed_ca import (
    CsrError,
    generate_key_and_csr,
    generate_managed_ca,
    parse_csr,
    serial_hex,
    sign_client_certificate,
)
from mtlsgate.pki.revocation import IssuerRevocations, RevocationIndex
from tests.certs import openssl

NOW = datetime(2026, 9, 1, 10, 0, 37, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> tuple[str, str]:
    generated = generate_managed_ca("Test Managed CA", now=NOW)
    return generated.certificate_pem, generated.private_key_pem


def openssl_csr(tmp: Path, *newkey: str, subject: str = "/CN=dev") -> str:
    out = tmp / "r.csr"
    openssl("req", "-new", *newkey, "-nodes", "-keyout", str(tmp / "r.key"), "-out", str(out),
            "-subj", subject)  # fmt: skip
    return out.read_text()


def test_signs_an_openssl_csr_as_the_reference_shows(ca: tuple[str, str], tmp_path: Path) -> None:
    subject = "/C=US/ST=CA/L=San Francisco/O=Corp/OU=Devices/CN=device-001"
    csr = openssl_csr(tmp_path, "-newkey", "rsa:2048", subject=subject)
    issued = sign_client_certificate(
        parse_csr(csr), ca_certificate_pem=ca[0], ca_private_key_pem=ca[1],
        validity_days=3650, now=NOW,
    )  # fmt: skip
    cert = issued.certificate
    # Minute-aligned as the anchor's examples, and exactly validity_days long.
    assert issued.issued_on == datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
    assert issued.expires_on - issued.issued_on == timedelta(days=3650)
    assert cert.not_valid_before_utc == issued.issued_on
    assert cert.not_valid_after_utc == issued.expires_on
    assert issued.subject == {
        "common_name": "device-001", "country": "US", "state": "CA",
        "location": "San Francisco", "organization": "Corp", "organizational_unit": "Devices",
    }  # fmt: skip
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    usage = ext.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    ca_cert = x509.load_pem_x509_certificate(ca[0].encode())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert issued.ski == ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    assert issued.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    assert issued.signature == "ECDSAWithSHA256"
    # The serial as `openssl x509 -serial` prints it, in lowercase.
    pem = tmp_path / "c.pem"
    pem.write_text(issued.certificate_pem)
    printed = openssl("x509", "-in", str(pem), "-noout", "-serial").strip().split("=", 1)[1]
    assert issued.serial_hex == printed.lower()
    (tmp_path / "ca.pem").write_text(ca[0])
    # openssl's own check, at a moment inside the validity window.
    at = str(int(NOW.timestamp()) + 60)
    ca_file = str(tmp_path / "ca.pem")
    verified = openssl(
        "verify", "-CAfile", ca_file, "-purpose", "sslclient", "-attime", at, str(pem)
    )
    assert verified.strip() == f"{pem}: OK"


def test_serial_hex_has_two_digits_per_byte() -> None:
    assert serial_hex(1) == "01"
    assert serial_hex(0xABC) == "0abc"
    assert serial_hex(0x80) == "80"
    assert serial_hex(2**159 + 5) == "80" + "00" * 18 + "05"


def test_csr_text_forms_accepted(ca: tuple[str, str], tmp_path: Path) -> None:
    csr = openssl_csr(tmp_path, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384")
    body = csr.strip().splitlines()
    for text in (
        csr.replace("\n", "\r\n"),  # as the API returns it
        "\\n".join(body),  # JSON-escaped newlines pasted verbatim
        "\n".join(["-----BEGIN NEW CERTIFICATE REQUEST-----", *body[1:-1],
                   "-----END NEW CERTIFICATE REQUEST-----"]),  # `openssl req -newhdr`
        "  " + csr + "\n\n",
    ):  # fmt: skip
        checked = parse_csr(text)
        assert checked.pem.startswith("-----BEGIN CERTIFICATE REQUEST-----\n")
        assert checked.csr.subject.rfc4514_string() == "CN=dev"


def test_csr_refusals(tmp_path: Path) -> None:
    with pytest.raises(CsrError, match="empty"):
        parse_csr("   ")
    with pytest.raises(CsrError, match="exactly one PEM block") as exc:
        parse_csr(openssl_csr(tmp_path, "-newkey", "rsa:2048") * 2)
    assert exc.value.code == 1470
    weak = openssl_csr(tmp_path, "-newkey", "rsa:1024")
    with pytest.raises(CsrError, match="1024-bit RSA key") as exc:
        parse_csr(weak)
    assert exc.value.code == 1472 and exc.value.status == 400
    with pytest.raises(CsrError, match="unsupported key type \\(Ed448\\)"):
        parse_csr(openssl_csr(tmp_path, "-newkey", "ed448"))
    with pytest.raises(CsrError, match="curve brainpoolP256r1"):
        parse_csr(openssl_csr(tmp_path, "-newkey", "ec", "-pkeyopt",
                              "ec_paramgen_curve:brainpoolP256r1"))  # fmt: skip


def test_validity_bounds_and_ca_lifetime(ca: tuple[str, str]) -> None:
    checked = parse_csr(generate_key_and_csr("dev").csr_pem)
    kw = {"ca_certificate_pem": ca[0], "ca_private_key_pem": ca[1]}
    for days in (0, 3651):
        with pytest.raises(CsrError, match="between 1 and 3650") as exc:
            sign_client_certificate(checked, validity_days=days, now=NOW, **kw)
        assert exc.value.code == 1475
    # The CA lives 20 years: near its end, a long certificate would outlive it.
    late = NOW + timedelta(days=365 * 15)
    with pytest.raises(CsrError, match="would outlive the managed CA"):
        sign_client_certificate(checked, validity_days=3650, now=late, **kw)
    assert sign_client_certificate(checked, validity_days=30, now=late, **kw).certificate


def test_generated_key_and_csr() -> None:
    for kind, cls in (("ec", ec.EllipticCurvePublicKey), ("rsa", rsa.RSAPublicKey)):
        generated = generate_key_and_csr("laptop-1", key_type=kind)
        checked = parse_csr(generated.csr_pem)
        assert isinstance(checked.csr.public_key(), cls)
        assert "PRIVATE KEY" in generated.private_key_pem
    with pytest.raises(CsrError):
        generate_key_and_csr("x" * 65)


def test_revocation_index_reasons() -> None:
    issuer, other = b"\x01" * 32, b"\x02" * 32
    leaf_fp = b"\x09" * 32
    index = RevocationIndex(
        {
            issuer: IssuerRevocations(frozenset({5, 7}), "managed"),
            other: IssuerRevocations(frozenset(), "crl", unavailable="crl_stale"),
        },
        deny_serials=frozenset({99}),
        deny_fingerprints=frozenset({leaf_fp}),
    )
    assert index.reason(5, b"\x00" * 32, issuer) == "managed"
    assert index.reason(6, b"\x00" * 32, issuer) is None
    assert index.reason(6, b"\x00" * 32, other) == "crl_stale"  # fail_closed, CRL unusable
    assert index.reason(5, b"\x00" * 32, b"\x03" * 32) is None  # another issuer's serial 5
    assert index.reason(99, b"\x00" * 32, issuer) == "denylist"  # the deny-list wins
    assert index.reason(1, leaf_fp, None) == "denylist"  # even for a self-signed leaf
    assert index.reason(5, b"\x00" * 32, None) is None
    assert not index.empty() and RevocationIndex({}).empty()


def _csr_with(*attrs: tuple[x509.ObjectIdentifier, str]) -> str:
    """A CSR (cryptography) whose subject is taken as given: values the builder would warn
    about or refuse are what a hostile client sends."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid, v, _validate=False) for oid, v in attrs])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name)
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_subject_values_must_be_bounded_printable_text(ca: tuple[str, str]) -> None:
    cn = NameOID.COMMON_NAME
    refused = [
        ([(cn, "a\x00b")], "common name (CN) contains the control character U+0000"),
        ([(cn, "evil\r\nX-Injected: 1")], "common name (CN) contains the control character U+000D"),
        ([(cn, "a\tb")], "U+0009"),
        ([(cn, "del\x7f")], "U+007F"),
        ([(cn, "ok"), (NameOID.ORGANIZATION_NAME, "o\x00")], "organization (O) contains"),
        ([(cn, "ok"), (NameOID.EMAIL_ADDRESS, "a@b\n")], "emailAddress contains"),
        ([(cn, "a" * 65)], "common name (CN) must be 1 to 64 characters (the X.520 bound), got 65"),
        ([(cn, "")], "common name (CN) must be 1 to 64 characters"),
        ([(cn, "ok"), (NameOID.ORGANIZATION_NAME, "\u00e9" * 300)], "organization (O) must be 1"),
        ([(cn, "ok"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "u" * 65)], "organizational unit (OU)"),
        ([(cn, "ok"), (NameOID.LOCALITY_NAME, "l" * 129)], "locality (L) must be 1 to 128"),
        ([(cn, "ok"), (NameOID.STATE_OR_PROVINCE_NAME, "s" * 129)], "state or province (ST)"),
        ([(cn, "ok"), (NameOID.COUNTRY_NAME, "USA")], "country (C) must be a two-letter"),
        ([(cn, "ok"), (NameOID.COUNTRY_NAME, "1A")], "country (C) must be a two-letter"),
    ]  # fmt: skip
    for attrs, message in refused:
        with pytest.raises(CsrError, match=re.escape(message)) as exc:
            parse_csr(_csr_with(*attrs))
        assert (exc.value.code, exc.value.status) == (1474, 400), attrs
    # The bounds themselves are signed, as they are (nothing cut).
    at_bounds = _csr_with(
        (cn, "c" * 64), (NameOID.ORGANIZATION_NAME, "\u00e9" * 64),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "u" * 64), (NameOID.LOCALITY_NAME, "l" * 128),
        (NameOID.STATE_OR_PROVINCE_NAME, "s" * 128), (NameOID.COUNTRY_NAME, "de"),
    )  # fmt: skip
    issued = sign_client_certificate(
        parse_csr(at_bounds), ca_certificate_pem=ca[0], ca_private_key_pem=ca[1],
        validity_days=1, now=NOW,
    )  # fmt: skip
    assert issued.subject["organization"] == "\u00e9" * 64
    assert issued.subject["location"] == "l" * 128 and issued.subject["country"] == "de"
    # The CLI's own path refuses the same before making a key.
    with pytest.raises(CsrError, match=re.escape("U+0009")):
        generate_key_and_csr("a\tb")


def test_sha1_signed_csr_is_refused_by_name(tmp_path: Path) -> None:
    # From the openssl CLI, as an old script makes it (cryptography refuses to sign with SHA-1).
    key = tmp_path / "k.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    out = tmp_path / "s1.csr"
    openssl("req", "-new", "-sha1", "-key", str(key), "-subj", "/CN=old", "-out", str(out))
    with pytest.raises(CsrError) as exc:
        parse_csr(out.read_text())
    assert "unsupported signature algorithm (SHA-1)" in exc.value.message
    assert "does not verify" not in exc.value.message and exc.value.code == 1471


def test_may_revoke_is_false_only_where_reason_is_none() -> None:
    """The edge's cheap first question (serial only) never hides a revocation `reason` would
    give, whatever the fingerprints, and is False for an unlisted serial when no answer
    depends on fingerprints alone (the common case: no verified chain, no SHA-256 computed)."""
    issuer, other, stranger = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32
    leaf_fp, plain_fp = b"\x09" * 32, b"\x00" * 32
    managed = IssuerRevocations(frozenset({5, 7}), "managed")
    crl = IssuerRevocations(frozenset({11}), "crl")
    stale = IssuerRevocations(frozenset({13}), "crl", unavailable="crl_stale")
    indexes = {
        "managed and crl": RevocationIndex({issuer: managed, other: crl}),
        "deny serials": RevocationIndex({issuer: managed}, deny_serials=frozenset({99})),
        "deny fingerprints": RevocationIndex({}, deny_fingerprints=frozenset({leaf_fp})),
        "fail_closed stale": RevocationIndex({issuer: managed, other: stale}),
    }
    for label, index in indexes.items():
        for serial in range(0, 120):
            answers = {index.reason(serial, fp, who) for fp in (leaf_fp, plain_fp)
                       for who in (issuer, other, stranger, None)}  # fmt: skip
            if answers != {None}:
                assert index.may_revoke(serial), (label, serial, answers)
    cheap = indexes["managed and crl"]
    assert [s for s in range(120) if cheap.may_revoke(s)] == [5, 7, 11]
    assert [s for s in range(120) if indexes["deny serials"].may_revoke(s)] == [5, 7, 99]
    # Fingerprints or a CA whose every leaf is revoked decide on their own: always ask.
    assert indexes["deny fingerprints"].may_revoke(1)
    assert indexes["fail_closed stale"].may_revoke(1)
    assert indexes["fail_closed stale"].reason(1, plain_fp, other) == "crl_stale"
    # Derived data does not take part in equality.
    assert RevocationIndex({issuer: managed}) == RevocationIndex({issuer: managed})
