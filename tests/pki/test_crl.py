"""pki/crl.py against CRLs made by the `openssl ca` CLI and by cryptography's builder."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import NameOID

from mtlsgate.pki.crl import (
    CrlError,
    check_replacement,
    decode_crl,
    distribution_points,
    is_stale,
    parse_crl,
    serial_hex,
)
from tests.certs import openssl_root
from tests.crl_tools import OpensslCA, pem_to_der, serial_of

NOW = datetime.now(UTC)


def _cert(ca: OpensslCA) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.cert.cert_pem.encode())


@pytest.fixture
def ca(tmp_path: Path) -> OpensslCA:
    return OpensslCA.create(tmp_path / "ca", cdp="http://127.0.0.1:8/devices.crl")


def test_openssl_crl_pem_der_and_base64(ca: OpensslCA, tmp_path: Path) -> None:
    revoked = ca.issue("revoked")
    ca.issue("kept")
    ca.revoke(revoked)
    pem = ca.gencrl(days=3)
    der = pem_to_der(pem, tmp_path)
    for given in (pem, base64.b64encode(der).decode(), der, pem.encode()):
        parsed = parse_crl(given, _cert(ca), now=datetime.now(UTC))
        assert parsed.der == der
        assert parsed.crl_number == 1
        assert parsed.issuer == "CN=Devices CA"
        assert parsed.revoked_serials == {int(serial_of(revoked), 16)}
        assert parsed.next_update is not None
        assert timedelta(days=2) < parsed.next_update - parsed.this_update <= timedelta(days=3)
    # Wrapped base64 (76-column lines, as `base64` prints it) is accepted too.
    wrapped = base64.encodebytes(der).decode()
    assert parse_crl(wrapped, _cert(ca), now=datetime.now(UTC)).der == der
    # The next CRL from the same CA database has the next number.
    assert parse_crl(ca.gencrl(), _cert(ca), now=datetime.now(UTC)).crl_number == 2


def test_crl_signed_by_another_key_is_refused(ca: OpensslCA, tmp_path: Path) -> None:
    # Same name, different key: only the signature check can tell.
    impostor = OpensslCA.create(tmp_path / "impostor", cn="Devices CA")
    with pytest.raises(CrlError, match="signature does not verify with this CA's public key"):
        parse_crl(impostor.gencrl(), _cert(ca), now=datetime.now(UTC))
    other = OpensslCA.create(tmp_path / "other", cn="Other CA")
    with pytest.raises(CrlError, match=r"issuer \(CN=Other CA\) is not this CA \(CN=Devices CA\)"):
        parse_crl(other.gencrl(), _cert(ca), now=datetime.now(UTC))


def test_same_key_same_name_verifies(ca: OpensslCA, tmp_path: Path) -> None:
    """A CA certificate re-issued with the same key and name checks the old CA's CRLs."""
    twin = OpensslCA.create(tmp_path / "twin", key=ca.cert.key_path)
    assert parse_crl(twin.gencrl(), _cert(ca), now=datetime.now(UTC)).crl_number == 1


def test_crl_without_number_is_refused(tmp_path: Path) -> None:
    plain = OpensslCA.create(tmp_path / "plain", crl_number=False)
    with pytest.raises(CrlError, match="no CRL number"):
        parse_crl(plain.gencrl(), _cert(plain), now=datetime.now(UTC))


def test_garbage_and_wrong_pem_blocks(ca: OpensslCA) -> None:
    with pytest.raises(CrlError, match="neither PEM"):
        parse_crl("not a crl!", _cert(ca), now=datetime.now(UTC))
    with pytest.raises(CrlError, match="empty"):
        parse_crl("  ", _cert(ca), now=datetime.now(UTC))
    with pytest.raises(CrlError, match="got CERTIFICATE"):
        parse_crl(ca.cert.cert_pem, _cert(ca), now=datetime.now(UTC))
    with pytest.raises(CrlError, match=r"not a DER-encoded X\.509 CRL"):
        parse_crl(
            base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), _cert(ca), now=datetime.now(UTC)
        )
    with pytest.raises(CrlError, match="could not be parsed"):
        parse_crl(
            "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
            _cert(ca),
            now=datetime.now(UTC),
        )


def test_dates_and_staleness(ca: OpensslCA) -> None:
    past = ca.gencrl(last_update=NOW - timedelta(days=2), next_update=NOW - timedelta(days=1))
    parsed = parse_crl(
        past, _cert(ca), now=datetime.now(UTC)
    )  # a stale CRL is stored, and reported stale
    assert is_stale(parsed.next_update, NOW)
    assert not is_stale(parsed.next_update, NOW - timedelta(days=1, seconds=1))
    assert not is_stale(None, NOW)
    future = ca.gencrl(last_update=NOW + timedelta(hours=1), next_update=NOW + timedelta(days=1))
    with pytest.raises(CrlError, match=r"thisUpdate .* is in the future"):
        parse_crl(future, _cert(ca), now=datetime.now(UTC))


def test_replacement_rule() -> None:
    assert check_replacement(None, 1, same_bytes=False)
    assert check_replacement(4, 5, same_bytes=False)
    assert check_replacement(4, 4, same_bytes=True) is False
    with pytest.raises(CrlError, match="same CRL number"):
        check_replacement(4, 4, same_bytes=False)
    with pytest.raises(CrlError, match="lower than the stored CRL's"):
        check_replacement(4, 3, same_bytes=False)


def _builder_crl(
    key: ec.EllipticCurvePrivateKey, name: str, *, number: int | None, delta: bool = False
) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .last_update(NOW - timedelta(minutes=1))
        .next_update(NOW + timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(0x0ABC)
            .revocation_date(NOW - timedelta(minutes=1))
            .build()
        )
    )
    if number is not None:
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
    if delta:
        builder = builder.add_extension(x509.DeltaCRLIndicator(1), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_cryptography_built_crls(tmp_path: Path) -> None:
    root = openssl_root(tmp_path, kind="ec", cn="Builder CA")
    key = load_pem_private_key(root.key_pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert = x509.load_pem_x509_certificate(root.cert_pem.encode())
    big = 2**150 + 7  # CRL numbers may be up to 20 octets
    parsed = parse_crl(_builder_crl(key, "Builder CA", number=big), cert, now=datetime.now(UTC))
    assert parsed.crl_number == big and parsed.revoked_serials == {0x0ABC}
    with pytest.raises(CrlError, match="delta CRLs are not supported"):
        parse_crl(
            _builder_crl(key, "Builder CA", number=3, delta=True), cert, now=datetime.now(UTC)
        )
    with pytest.raises(CrlError, match="no CRL number"):
        parse_crl(_builder_crl(key, "Builder CA", number=None), cert, now=datetime.now(UTC))


def test_ca_without_crl_sign_cannot_issue_crls(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "No CRL Sign")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CrlError, match="does not include cRLSign"):
        parse_crl(_builder_crl(key, "No CRL Sign", number=1), cert, now=datetime.now(UTC))


def test_distribution_points_http_only(ca: OpensslCA, tmp_path: Path) -> None:
    assert distribution_points(_cert(ca)) == ["http://127.0.0.1:8/devices.crl"]
    ldap = OpensslCA.create(tmp_path / "ldap", cdp="ldap://127.0.0.1/cn=x")
    assert distribution_points(_cert(ldap)) == []
    assert distribution_points(x509.load_pem_x509_certificate(
        openssl_root(tmp_path).cert_pem.encode())) == []  # fmt: skip


def test_decode_and_serial_hex() -> None:
    assert serial_hex(0x1000) == "1000"
    assert serial_hex(0xABC) == "0abc"
    assert decode_crl(b"\x30\x00") == b"\x30\x00"
