"""Custom (edge) certificates of a zone: the server certificate the edge presents for the zone's
hostnames its SANs cover, with its private key sealed at rest.

The PEM is checked by pki.inspect (the same parsing, chain and key checks as mTLS uploads):
leaf first, then its issuer chain in order; the key must match the leaf. On top of that an
expired leaf is refused, and at least one of its hostnames must be inside the zone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import (
    WARN_EXPIRED,
    BadRequest,
    MtlsgateError,
    NotFound,
    UploadError,
    quote,
)
from mtlsgate.hostnames import HOSTNAME_NOT_IN_ZONE, in_zone, normalize_hostname
from mtlsgate.pki.inspect import InspectedUpload, UploadWarning, inspect_upload
from mtlsgate.services.accounts import visible_zone
from mtlsgate.services.common import hex_id
from mtlsgate.services.permissions import ZONE_SSL_READ, ZONE_SSL_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import Account, CustomCertificate, Zone

CERTIFICATE_NOT_FOUND = 1420
CERTIFICATE_EXPIRED = 1421
NO_HOSTNAMES = 1422
DUPLICATE_CERTIFICATE = 1423
WARN_NOT_IN_ZONE = 1456

BUNDLE_METHODS = ("ubiquitous", "optimal", "force")
TYPES = ("sni_custom", "legacy_custom")
GEO_LABELS = ("us", "eu", "highest_security")
MAX_PER_ZONE = 1000


@dataclass(frozen=True)
class Options:
    """The optional fields of an upload or edit (None: not given)."""

    bundle_method: str | None = None
    type: str | None = None
    geo_restrictions: str | None = None
    policy: str | None = None


@dataclass(frozen=True)
class Written:
    certificate: CustomCertificate
    warnings: tuple[UploadWarning, ...]


def _check_options(options: Options) -> None:
    if options.bundle_method is not None and options.bundle_method not in BUNDLE_METHODS:
        raise BadRequest(
            f"bundle_method must be one of {', '.join(BUNDLE_METHODS)}, "
            f"got {quote(options.bundle_method)}",
            pointer="/bundle_method",
        )
    if options.type is not None and options.type not in TYPES:
        raise BadRequest(
            f"type must be one of {', '.join(TYPES)}, got {quote(options.type)}", pointer="/type"
        )
    if options.geo_restrictions is not None and options.geo_restrictions not in GEO_LABELS:
        raise BadRequest(
            f"geo_restrictions.label must be one of {', '.join(GEO_LABELS)}, "
            f"got {quote(options.geo_restrictions)}",
            pointer="/geo_restrictions/label",
        )


def certificate_hosts(cert: x509.Certificate) -> list[str]:
    """The leaf's DNS SANs (normalised, in order), or its CN when it has no DNS SAN.
    Names that are not valid hostnames (e.g. a single label) are left out."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        raw: list[str] = list(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        raw = []
    if not raw:
        raw = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    hosts: list[str] = []
    for name in raw:
        try:
            host = normalize_hostname(name)
        except MtlsgateError:
            continue
        if host not in hosts:
            hosts.append(host)
    return hosts


def _inspect(
    certificate: str, private_key: str, zone: Zone, *, now: datetime
) -> tuple[InspectedUpload, list[str], list[UploadWarning]]:
    inspected = inspect_upload(certificate, ca=False, private_key=private_key, now=now)
    leaf = inspected.certs[0]
    if inspected.expires_on < now:
        raise UploadError(
            f"the certificate expired on {inspected.expires_on.isoformat()}; "
            "upload a certificate that is still valid",
            code=CERTIFICATE_EXPIRED,
            pointer="/certificate",
        )
    hosts = certificate_hosts(leaf)
    if not hosts:
        raise BadRequest(
            "the certificate names no hostname: it has no DNS subjectAltName and its "
            "common name is not a hostname",
            code=NO_HOSTNAMES,
            pointer="/certificate",
        )
    inside = [h for h in hosts if in_zone(h, zone.name)]
    if not inside:
        raise BadRequest(
            f"none of the certificate's hostnames ({', '.join(hosts)}) is in zone {zone.name}",
            code=HOSTNAME_NOT_IN_ZONE,
            pointer="/certificate",
        )
    warnings = [w for w in inspected.warnings if w.code != WARN_EXPIRED]  # refused above
    outside = [h for h in hosts if h not in inside]
    if outside:
        warnings.append(
            UploadWarning(
                WARN_NOT_IN_ZONE,
                f"hostname(s) outside zone {zone.name} are not served with this certificate: "
                + ", ".join(outside),
            )
        )
    return inspected, hosts, warnings


def _lock(session: Session, zone: Zone) -> None:
    session.execute(select(Account.id).where(Account.id == zone.account_id).with_for_update())


def _no_duplicate(session: Session, zone: Zone, fingerprint: str, exclude_id: str | None) -> None:
    other = session.scalar(
        select(CustomCertificate.id).where(
            CustomCertificate.zone_id == zone.id,
            CustomCertificate.fingerprint_sha256 == fingerprint,
        )
    )
    if other is not None and other != exclude_id:
        raise BadRequest(
            f"this certificate is already uploaded to zone {zone.name} as {other}",
            code=DUPLICATE_CERTIFICATE,
            pointer="/certificate",
        )


def _store_pem(
    cert: CustomCertificate,
    keystore: KeyStore,
    inspected: InspectedUpload,
    hosts: list[str],
) -> None:
    assert inspected.private_key_pem is not None
    cert.certificate = inspected.certificates_pem
    cert.private_key_sealed = keystore.seal(inspected.private_key_pem, context=cert.id)
    cert.hosts = json.dumps(hosts)
    cert.issuer = inspected.issuer
    cert.signature = inspected.signature
    cert.fingerprint_sha256 = inspected.fingerprint_sha256
    cert.expires_on = inspected.expires_on


def upload(
    session: Session,
    keystore: KeyStore,
    principal: Principal,
    zone_id: str,
    *,
    certificate: str,
    private_key: str,
    options: Options,
    now: datetime,
) -> Written:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_WRITE, account_id=zone.account_id, zone_id=zone.id)
    _check_options(options)
    inspected, hosts, warnings = _inspect(certificate, private_key, zone, now=now)
    _lock(session, zone)
    count = len(
        list(
            session.scalars(
                select(CustomCertificate.id).where(CustomCertificate.zone_id == zone.id)
            )
        )
    )
    if count >= MAX_PER_ZONE:
        raise BadRequest(f"a zone holds at most {MAX_PER_ZONE} custom certificates")
    _no_duplicate(session, zone, inspected.fingerprint_sha256, None)
    cert = CustomCertificate(
        id=hex_id(),
        zone_id=zone.id,
        bundle_method=options.bundle_method or "ubiquitous",
        type=options.type or "sni_custom",
        geo_restrictions=options.geo_restrictions,
        policy=options.policy,
        uploaded_on=now,
        modified_on=now,
    )
    _store_pem(cert, keystore, inspected, hosts)
    session.add(cert)
    session.flush()
    bump_config_version(session)
    return Written(cert, tuple(warnings))


def _certificate(session: Session, zone: Zone, cert_id: str) -> CustomCertificate:
    cert = session.get(CustomCertificate, cert_id)
    if cert is None or cert.zone_id != zone.id:
        raise NotFound("Custom certificate not found", code=CERTIFICATE_NOT_FOUND)
    return cert


def get_certificate(
    session: Session, principal: Principal, zone_id: str, cert_id: str
) -> CustomCertificate:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_READ, account_id=zone.account_id, zone_id=zone.id)
    return _certificate(session, zone, cert_id)


def list_certificates(
    session: Session, principal: Principal, zone_id: str
) -> list[CustomCertificate]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_READ, account_id=zone.account_id, zone_id=zone.id)
    return list(
        session.scalars(
            select(CustomCertificate)
            .where(CustomCertificate.zone_id == zone.id)
            .order_by(CustomCertificate.uploaded_on, CustomCertificate.id)
        )
    )


def edit(
    session: Session,
    keystore: KeyStore,
    principal: Principal,
    zone_id: str,
    cert_id: str,
    *,
    certificate: str | None,
    private_key: str | None,
    options: Options,
    now: datetime,
) -> Written:
    """Replace the certificate and/or the key (the other is kept and must match), and/or
    change the options."""
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_WRITE, account_id=zone.account_id, zone_id=zone.id)
    if options.type is not None:
        raise BadRequest("type cannot be changed; upload a new certificate", pointer="/type")
    _check_options(options)
    _lock(session, zone)
    cert = _certificate(session, zone, cert_id)
    warnings: list[UploadWarning] = []
    changed = False
    if certificate is not None or private_key is not None:
        pem = certificate if certificate is not None else cert.certificate
        key = (
            private_key
            if private_key is not None
            else keystore.open(cert.private_key_sealed, context=cert.id)
        )
        inspected, hosts, warnings = _inspect(pem, key, zone, now=now)
        _no_duplicate(session, zone, inspected.fingerprint_sha256, cert.id)
        _store_pem(cert, keystore, inspected, hosts)
        changed = True
    for field in ("bundle_method", "geo_restrictions", "policy"):
        value = getattr(options, field)
        if value is not None and getattr(cert, field) != value:
            setattr(cert, field, value)
            changed = True
    if changed:
        cert.modified_on = now
        bump_config_version(session)
    return Written(cert, tuple(warnings))


def delete(session: Session, principal: Principal, zone_id: str, cert_id: str) -> str:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_WRITE, account_id=zone.account_id, zone_id=zone.id)
    _lock(session, zone)
    cert = _certificate(session, zone, cert_id)
    session.delete(cert)
    bump_config_version(session)
    return cert_id
