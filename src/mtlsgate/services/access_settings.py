"""Access mTLS hostname settings (`/zones/{zone_id}/access/certificates/settings`): per
hostname, whether the origin gets the client certificate forwarded. PUT replaces the list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest
from mtlsgate.hostnames import HOSTNAME_NOT_IN_ZONE, in_zone, normalize_hostname
from mtlsgate.services.accounts import visible_zone
from mtlsgate.services.permissions import ACCESS_MTLS_READ, ACCESS_MTLS_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.models import AccessCertificateSetting, Account

NO_CHINA_NETWORK = 12130
DUPLICATE_HOSTNAME = 12131
MAX_SETTINGS = 1000


@dataclass(frozen=True)
class HostnameSetting:
    hostname: str
    china_network: bool
    client_certificate_forwarding: bool


def _rows(session: Session, zone_id: str) -> list[AccessCertificateSetting]:
    return list(
        session.scalars(
            select(AccessCertificateSetting)
            .where(AccessCertificateSetting.zone_id == zone_id)
            .order_by(AccessCertificateSetting.hostname)
        )
    )


def _as_settings(rows: Sequence[AccessCertificateSetting]) -> list[HostnameSetting]:
    return [
        HostnameSetting(r.hostname, r.china_network, r.client_certificate_forwarding) for r in rows
    ]


def list_settings(session: Session, principal: Principal, zone_id: str) -> list[HostnameSetting]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ACCESS_MTLS_READ, account_id=zone.account_id, zone_id=zone.id)
    return _as_settings(_rows(session, zone.id))


def replace_settings(
    session: Session,
    principal: Principal,
    zone_id: str,
    settings: Sequence[HostnameSetting],
    *,
    now: datetime,
) -> list[HostnameSetting]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ACCESS_MTLS_WRITE, account_id=zone.account_id, zone_id=zone.id)
    if len(settings) > MAX_SETTINGS:
        raise BadRequest(f"at most {MAX_SETTINGS} hostname settings per zone", pointer="/settings")
    wanted: dict[str, HostnameSetting] = {}
    for i, item in enumerate(settings):
        hostname = normalize_hostname(item.hostname)
        if not in_zone(hostname, zone.name):
            raise BadRequest(
                f"settings[{i}].hostname {hostname} is not in zone {zone.name}",
                code=HOSTNAME_NOT_IN_ZONE,
                pointer=f"/settings/{i}/hostname",
            )
        if item.china_network:
            raise BadRequest(
                f"settings[{i}].china_network must be false: mtlsgate has no China network "
                "(it is only for China-network-enabled Cloudflare zones)",
                code=NO_CHINA_NETWORK,
                pointer=f"/settings/{i}/china_network",
            )
        if hostname in wanted:
            raise BadRequest(
                f"settings[{i}].hostname {hostname} is listed more than once",
                code=DUPLICATE_HOSTNAME,
                pointer=f"/settings/{i}/hostname",
            )
        wanted[hostname] = HostnameSetting(hostname, False, item.client_certificate_forwarding)
    session.execute(select(Account.id).where(Account.id == zone.account_id).with_for_update())
    current = {r.hostname: r for r in _rows(session, zone.id)}
    changed = False
    for hostname, row in current.items():
        if hostname not in wanted:
            session.delete(row)
            changed = True
    for hostname, item in wanted.items():
        existing = current.get(hostname)
        if existing is None:
            session.add(
                AccessCertificateSetting(
                    zone_id=zone.id,
                    hostname=hostname,
                    china_network=False,
                    client_certificate_forwarding=item.client_certificate_forwarding,
                    modified_on=now,
                )
            )
            changed = True
        elif existing.client_certificate_forwarding != item.client_certificate_forwarding:
            existing.client_certificate_forwarding = item.client_certificate_forwarding
            existing.modified_on = now
            changed = True
    if changed:
        session.flush()
        bump_config_version(session)
    return sorted(wanted.values(), key=lambda s: s.hostname)
