"""`mtlsgate demo`: a working example for a newcomer, made through the same services as the API.

A demo hostname (demo.<zone>) proxied to a local origin, a demo client CA uploaded and
associated, the seed's rule, the client-certificate headers on, and a client certificate in
DATA_DIR/demo/ to try it with. Running it again changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.services import dns_records, hostname_associations, managed_headers, rulesets
from mtlsgate.services.mtls_certificates import upload
from mtlsgate.services.permissions import ALL_PERMISSIONS, Policy, Principal
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import DnsRecord, Zone


@dataclass(frozen=True)
class Demo:
    hostname: str
    directory: Path
    created: bool


def _admin(account_id: str) -> Principal:
    return Principal(
        token_id="demo",
        account_id=account_id,
        policies=tuple(Policy(p, "account", account_id) for p in ALL_PERMISSIONS),
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_certificates(directory: Path, now: datetime) -> str:
    """A demo client CA and one client certificate; returns the CA's PEM."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mtlsgate demo client CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    client = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "demo-device")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write(directory / "ca.pem", ca.public_bytes(pem))
    _write(directory / "ca.key", _pem_key(ca_key), 0o600)
    _write(directory / "client.pem", client.public_bytes(pem))
    _write(directory / "client.key", _pem_key(key), 0o600)
    return ca.public_bytes(pem).decode()


def set_up_demo(
    session: Session, keystore: KeyStore, data_dir: Path, *, origin_port: int, now: datetime
) -> Demo:
    zone = session.scalar(select(Zone).order_by(Zone.created_on, Zone.name).limit(1))
    if zone is None:
        raise ValueError("no zone: run `mtlsgate init` first")
    hostname = f"demo.{zone.name}"
    directory = data_dir / "demo"
    exists = session.scalar(
        select(DnsRecord.id).where(DnsRecord.zone_id == zone.id, DnsRecord.name == hostname)
    )
    if exists is not None and (directory / "client.pem").exists():
        return Demo(hostname, directory, created=False)
    admin = _admin(zone.account_id)
    ca_pem = _make_certificates(directory, now)
    done = upload(
        session, keystore, admin, zone.account_id,
        ca=True, certificates=ca_pem, name="demo client CA", private_key=None, now=now,
    )  # fmt: skip
    hostname_associations.replace_hostnames(
        session, admin, zone.id, [hostname], done.certificate.id, now=now
    )
    if exists is None:
        dns_records.create_record(
            session, admin, zone.id,
            {"type": "A", "name": hostname, "content": "127.0.0.1", "proxied": True},
            now=now,
        )  # fmt: skip
    rulesets.put_entry_point(
        session, admin, zone.id, "http_request_origin",
        {"rules": [{"description": "demo: the echo origin",
                    "expression": f'http.host eq "{hostname}"', "action": "route",
                    "action_parameters": {"origin": {"port": origin_port}}}]},
        now=now,
    )  # fmt: skip
    rulesets.put_entry_point(
        session, admin, zone.id, "http_request_firewall_custom",
        {"rules": [{"description": "demo: require a valid client certificate",
                    "expression": f'(http.host in {{"{hostname}"}} and not '
                                  "cf.tls_client_auth.cert_verified)",
                    "action": "block"}]},
        now=now,
    )  # fmt: skip
    managed_headers.edit(
        session, admin, zone.id, [("add_client_certificate_headers", True)], [], now=now
    )
    return Demo(hostname, directory, created=True)
