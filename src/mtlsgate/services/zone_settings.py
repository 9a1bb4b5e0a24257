"""Zone settings. mtlsgate implements one: `ssl`, how the edge connects to the origin.

* off, flexible: plain HTTP to the origin (port 80 unless an origin rule says otherwise);
* full: TLS to the origin (port 443), certificate not checked;
* strict: TLS to the origin, certificate checked.

The default is "flexible", Cloudflare's documented default for a zone nobody configured.
A zone without a stored row has the default; GET then shows `modified_on: null`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, NotFound, quote
from mtlsgate.services.accounts import visible_zone
from mtlsgate.services.permissions import ZONE_SETTINGS_READ, ZONE_SETTINGS_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.models import Account, ZoneSetting

SSL = "ssl"
SSL_VALUES = ("off", "flexible", "full", "strict")
SSL_DEFAULT = "flexible"
DEFAULTS = {SSL: SSL_DEFAULT}

UNKNOWN_SETTING = 1006
INVALID_VALUE = 1007


@dataclass(frozen=True)
class Setting:
    id: str
    value: str
    modified_on: datetime | None


def _known(setting_id: str) -> str:
    if setting_id not in DEFAULTS:
        raise NotFound(
            f"Unknown zone setting {quote(setting_id)}: mtlsgate implements only "
            + ", ".join(sorted(DEFAULTS)),
            code=UNKNOWN_SETTING,
        )
    return setting_id


def _current(session: Session, zone_id: str, setting_id: str) -> Setting:
    row = session.get(ZoneSetting, (zone_id, setting_id))
    if row is None:
        return Setting(setting_id, DEFAULTS[setting_id], None)
    return Setting(setting_id, row.value, row.modified_on)


def get_setting(session: Session, principal: Principal, zone_id: str, setting_id: str) -> Setting:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SETTINGS_READ, account_id=zone.account_id, zone_id=zone.id)
    return _current(session, zone.id, _known(setting_id))


def list_settings(session: Session, principal: Principal, zone_id: str) -> list[Setting]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SETTINGS_READ, account_id=zone.account_id, zone_id=zone.id)
    return [_current(session, zone.id, s) for s in sorted(DEFAULTS)]


def edit_setting(
    session: Session,
    principal: Principal,
    zone_id: str,
    setting_id: str,
    value: object,
    *,
    now: datetime,
) -> Setting:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SETTINGS_WRITE, account_id=zone.account_id, zone_id=zone.id)
    _known(setting_id)
    if value not in SSL_VALUES:
        raise BadRequest(
            f"Invalid value for zone setting ssl: {quote(value)}; use one of "
            + ", ".join(SSL_VALUES),
            code=INVALID_VALUE,
            pointer="/value",
        )
    assert isinstance(value, str)
    session.execute(select(Account.id).where(Account.id == zone.account_id).with_for_update())
    row = session.get(ZoneSetting, (zone.id, setting_id))
    if row is None:
        session.add(
            ZoneSetting(zone_id=zone.id, setting_id=setting_id, value=value, modified_on=now)
        )
    elif row.value != value:
        row.value = value
        row.modified_on = now
    else:
        return _current(session, zone.id, setting_id)  # unchanged: nothing for the edge to do
    session.flush()
    bump_config_version(session)
    return _current(session, zone.id, setting_id)
