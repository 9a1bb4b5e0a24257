"""Uploaded certificates (BYOCA): upload with validation and quota, list, get, delete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mtlsgate import errors
from mtlsgate.errors import Conflict, MtlsgateError, NotFound, QuotaExceeded
from mtlsgate.pki.inspect import UploadWarning, inspect_upload
from mtlsgate.services.accounts import visible_account
from mtlsgate.services.common import uuid_id
from mtlsgate.services.permissions import ACCOUNT_SSL_READ, ACCOUNT_SSL_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import Account, HostnameAssociation, MtlsCertificate, Zone

ENTERPRISE_REQUIRED = 1490
CERTIFICATE_IN_USE = 1491
CERT_TYPES = ("custom", "gateway_managed", "access_managed")


@dataclass(frozen=True)
class Uploaded:
    certificate: MtlsCertificate
    warnings: tuple[UploadWarning, ...]


def upload(
    session: Session,
    keystore: KeyStore,
    principal: Principal,
    account_id: str,
    *,
    ca: bool,
    certificates: str,
    name: str | None,
    private_key: str | None,
    now: datetime,
) -> Uploaded:
    account = visible_account(session, principal, account_id)
    principal.require(ACCOUNT_SSL_WRITE, account_id=account_id)
    if ca and account.plan != "enterprise":
        raise MtlsgateError(
            f"Uploading CA certificates for client authentication requires an Enterprise plan; "
            f"this account is on the {account.plan} plan.",
            code=ENTERPRISE_REQUIRED,
            status=403,
        )
    inspected = inspect_upload(certificates, ca=ca, private_key=private_key, now=now)
    # Lock the account row so the quota check and the insert are one step for every process
    # sharing the database (SQLite's BEGIN IMMEDIATE already serialises writers).
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())
    if ca:
        used = session.scalar(
            select(func.count())
            .select_from(MtlsCertificate)
            .where(MtlsCertificate.account_id == account_id, MtlsCertificate.ca.is_(True))
        )
        if (used or 0) >= account.ca_quota:
            raise QuotaExceeded("Hit maximum CA cert allocation.")
    warnings = list(inspected.warnings)
    duplicate = session.scalar(
        select(MtlsCertificate.id).where(
            MtlsCertificate.account_id == account_id,
            MtlsCertificate.fingerprint_sha256 == inspected.fingerprint_sha256,
        )
    )
    if duplicate is not None:
        warnings.append(
            UploadWarning(
                errors.WARN_DUPLICATE,
                f"the same certificate is already uploaded to this account as {duplicate}",
            )
        )
    cert_id = uuid_id()
    cert = MtlsCertificate(
        id=cert_id,
        account_id=account_id,
        name=name,
        ca=ca,
        type="custom",
        certificates=inspected.certificates_pem,
        private_key_sealed=(
            keystore.seal(inspected.private_key_pem, context=cert_id)
            if inspected.private_key_pem is not None
            else None
        ),
        issuer=inspected.issuer,
        serial_number=inspected.serial_number,
        signature=inspected.signature,
        fingerprint_sha256=inspected.fingerprint_sha256,
        expires_on=inspected.expires_on,
        uploaded_on=now,
        updated_at=now,
    )
    session.add(cert)
    session.flush()
    bump_config_version(session)
    return Uploaded(cert, tuple(warnings))


def list_certificates(
    session: Session,
    principal: Principal,
    account_id: str,
    *,
    types: Sequence[str] = (),
) -> list[MtlsCertificate]:
    visible_account(session, principal, account_id)
    principal.require(ACCOUNT_SSL_READ, account_id=account_id)
    query = (
        select(MtlsCertificate)
        .where(MtlsCertificate.account_id == account_id)
        .order_by(MtlsCertificate.uploaded_on, MtlsCertificate.id)
    )
    if types:
        query = query.where(MtlsCertificate.type.in_(types))
    return list(session.scalars(query))


def get_certificate(
    session: Session, principal: Principal, account_id: str, cert_id: str
) -> MtlsCertificate:
    visible_account(session, principal, account_id)
    principal.require(ACCOUNT_SSL_READ, account_id=account_id)
    return _certificate(session, account_id, cert_id)


def _certificate(session: Session, account_id: str, cert_id: str) -> MtlsCertificate:
    cert = session.get(MtlsCertificate, cert_id)
    if cert is None or cert.account_id != account_id:
        raise NotFound("mTLS certificate not found", code=1404)
    return cert


def delete_certificate(
    session: Session, principal: Principal, account_id: str, cert_id: str
) -> MtlsCertificate:
    visible_account(session, principal, account_id)
    principal.require(ACCOUNT_SSL_WRITE, account_id=account_id)
    # Same lock as hostname association changes: no association can appear while we check.
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())
    cert = _certificate(session, account_id, cert_id)
    in_use = association_rows(session, cert_id)
    if in_use:
        names = ", ".join(f"{hostname} (zone {zone})" for hostname, zone, _ in in_use)
        raise Conflict(
            f"The certificate is still associated with {len(in_use)} hostname(s): {names}. "
            "Remove the associations first: PUT "
            "/zones/{zone_id}/certificate_authorities/hostname_associations with "
            f'{{"hostnames": [], "mtls_certificate_id": "{cert_id}"}}.',
            code=CERTIFICATE_IN_USE,
        )
    session.delete(cert)
    bump_config_version(session)
    return cert


def association_rows(session: Session, cert_id: str) -> list[tuple[str, str, HostnameAssociation]]:
    """(hostname, zone name, row) for every hostname associated with the certificate."""
    rows = session.execute(
        select(HostnameAssociation, Zone.name)
        .join(Zone, Zone.id == HostnameAssociation.zone_id)
        .where(HostnameAssociation.ca_id == cert_id)
        .order_by(Zone.name, HostnameAssociation.hostname)
    ).all()
    return [(assoc.hostname, zone_name, assoc) for assoc, zone_name in rows]


def list_associations(
    session: Session, principal: Principal, account_id: str, cert_id: str
) -> list[tuple[str, str, HostnameAssociation]]:
    get_certificate(session, principal, account_id, cert_id)
    return association_rows(session, cert_id)
