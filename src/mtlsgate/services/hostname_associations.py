"""Which hostnames of a zone check client certificates against which CA (replace semantics)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, quote
from mtlsgate.hostnames import HOSTNAME_NOT_IN_ZONE, in_zone, normalize_hostname
from mtlsgate.services.accounts import active_managed_ca, visible_zone
from mtlsgate.services.permissions import ZONE_SSL_READ, ZONE_SSL_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.models import Account, HostnameAssociation, MtlsCertificate, Zone

UNKNOWN_CA = 1005
NOT_A_CA = 1006
MAX_HOSTNAMES = 1000

# Used with fullmatch. `uuid.UUID` alone is too lenient for an id from a request: after the
# `.strip()` this replaced, "<id>\n" was accepted, and int(..., 16) also takes "+" and "_".
_CERT_ID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)


def parse_certificate_id(value: str) -> str:
    """Canonical 36-character UUID; the 32-hex form newer schemas show is accepted too."""
    if isinstance(value, str) and _CERT_ID.fullmatch(value.strip(" ")):
        return str(uuid.UUID(value.strip(" ")))
    raise BadRequest(
        f"mtls_certificate_id must be the id of an uploaded CA (a UUID), got {quote(value)}",
        code=UNKNOWN_CA,
    )


def _ca_for(session: Session, zone: Zone, mtls_certificate_id: str | None) -> tuple[str, str]:
    """(kind, id) of the CA an association call targets; the managed CA when no id is given."""
    if mtls_certificate_id is None:
        return "managed", active_managed_ca(session, zone.account_id).id
    cert_id = parse_certificate_id(mtls_certificate_id)
    cert = session.get(MtlsCertificate, cert_id)
    if cert is None or cert.account_id != zone.account_id:
        raise BadRequest(
            f"mtls_certificate_id {cert_id} is not a certificate uploaded to this zone's account",
            code=UNKNOWN_CA,
        )
    if not cert.ca:
        raise BadRequest(
            f"mtls_certificate_id {cert_id} was uploaded with ca: false; only CA certificates "
            "can validate client certificates",
            code=NOT_A_CA,
        )
    return "uploaded", cert.id


def list_hostnames(
    session: Session,
    principal: Principal,
    zone_id: str,
    mtls_certificate_id: str | None,
) -> list[str]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_READ, account_id=zone.account_id, zone_id=zone.id)
    _, ca_id = _ca_for(session, zone, mtls_certificate_id)
    return list(
        session.scalars(
            select(HostnameAssociation.hostname)
            .where(
                HostnameAssociation.zone_id == zone.id,
                HostnameAssociation.ca_id == ca_id,
            )
            .order_by(HostnameAssociation.hostname)
        )
    )


def replace_hostnames(
    session: Session,
    principal: Principal,
    zone_id: str,
    hostnames: Sequence[object],
    mtls_certificate_id: str | None,
    *,
    now: datetime,
) -> list[str]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_WRITE, account_id=zone.account_id, zone_id=zone.id)
    if len(hostnames) > MAX_HOSTNAMES:
        raise BadRequest(f"at most {MAX_HOSTNAMES} hostnames per CA and zone", pointer="/hostnames")
    wanted = list(dict.fromkeys(normalize_hostname(h) for h in hostnames))
    outside = [h for h in wanted if not in_zone(h, zone.name)]
    if outside:
        raise BadRequest(
            f"hostname(s) not in zone {zone.name}: {', '.join(outside)}",
            code=HOSTNAME_NOT_IN_ZONE,
            pointer="/hostnames",
        )
    # The account lock orders this against CA deletion (which must see no associations).
    session.execute(select(Account.id).where(Account.id == zone.account_id).with_for_update())
    kind, ca_id = _ca_for(session, zone, mtls_certificate_id)
    current = set(
        session.scalars(
            select(HostnameAssociation.hostname).where(
                HostnameAssociation.zone_id == zone.id,
                HostnameAssociation.ca_id == ca_id,
            )
        )
    )
    removed = current - set(wanted)
    if removed:
        session.execute(
            delete(HostnameAssociation).where(
                HostnameAssociation.zone_id == zone.id,
                HostnameAssociation.ca_id == ca_id,
                HostnameAssociation.hostname.in_(removed),
            )
        )
    for hostname in wanted:
        if hostname not in current:
            # Kept hostnames keep their deployment time: re-sending a list is not a redeploy.
            session.add(
                HostnameAssociation(
                    zone_id=zone.id,
                    hostname=hostname,
                    ca_kind=kind,
                    ca_id=ca_id,
                    deployed_on=now,
                )
            )
    if removed or set(wanted) - current:
        bump_config_version(session)
    return sorted(wanted)
