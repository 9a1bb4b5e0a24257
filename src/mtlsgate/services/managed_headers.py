"""Managed Transforms (`/zones/{zone_id}/managed_headers`): per-zone on/off switches.

The edge implements `add_client_certificate_headers` (the cf-cert-* request headers). The
other ids Cloudflare knows are accepted and stored so configurations written for Cloudflare
apply unchanged, and a write that enables one of them says in `messages` that it has no effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, quote
from mtlsgate.services.accounts import visible_zone
from mtlsgate.services.permissions import MANAGED_HEADERS_READ, MANAGED_HEADERS_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.models import Account, ManagedHeader

REQUEST_HEADERS = (
    "add_bot_protection_headers",
    "add_client_certificate_headers",
    "add_visitor_location_headers",
    "add_true_client_ip_headers",
    "remove_visitor_ip_headers",
    "add_waf_credential_check_status_header",
)
RESPONSE_HEADERS = ("remove_x-powered-by_header", "add_security_headers")
IMPLEMENTED = frozenset({"add_client_certificate_headers"})
CONFLICTS: dict[str, tuple[str, ...]] = {
    "add_true_client_ip_headers": ("remove_visitor_ip_headers",),
    "remove_visitor_ip_headers": ("add_true_client_ip_headers",),
}

UNKNOWN_TRANSFORM = 1010
CONFLICTING_TRANSFORMS = 1011
WARN_NOT_IMPLEMENTED = 1457


@dataclass(frozen=True)
class Transform:
    id: str
    enabled: bool
    has_conflict: bool
    conflicts_with: tuple[str, ...]


@dataclass(frozen=True)
class State:
    request: list[Transform]
    response: list[Transform]
    notes: tuple[str, ...] = ()


def _enabled(session: Session, zone_id: str) -> set[str]:
    return {
        row.header_id
        for row in session.scalars(select(ManagedHeader).where(ManagedHeader.zone_id == zone_id))
        if row.enabled
    }


def _state(enabled: set[str], notes: Sequence[str] = ()) -> State:
    def one(header_id: str) -> Transform:
        partners = CONFLICTS.get(header_id, ())
        return Transform(
            header_id,
            header_id in enabled,
            header_id not in enabled and any(p in enabled for p in partners),
            partners,
        )

    return State(
        [one(h) for h in REQUEST_HEADERS], [one(h) for h in RESPONSE_HEADERS], tuple(notes)
    )


def get_state(session: Session, principal: Principal, zone_id: str) -> State:
    zone = visible_zone(session, principal, zone_id)
    principal.require(MANAGED_HEADERS_READ, account_id=zone.account_id, zone_id=zone.id)
    return _state(_enabled(session, zone.id))


def _wanted(
    items: Sequence[tuple[str, bool]], known: tuple[str, ...], field: str
) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for i, (header_id, enabled) in enumerate(items):
        if header_id not in known:
            other = RESPONSE_HEADERS if known is REQUEST_HEADERS else REQUEST_HEADERS
            hint = (
                f"; it is a {'response' if known is REQUEST_HEADERS else 'request'} transform"
                if header_id in other
                else ""
            )
            raise BadRequest(
                f"unknown Managed Transform {quote(header_id)} in {field}{hint}; known: "
                + ", ".join(known),
                code=UNKNOWN_TRANSFORM,
                pointer=f"/{field}/{i}/id",
            )
        if header_id in out and out[header_id] != enabled:
            raise BadRequest(
                f"{header_id} is listed twice in {field} with different values",
                code=UNKNOWN_TRANSFORM,
                pointer=f"/{field}/{i}",
            )
        out[header_id] = enabled
    return out


def edit(
    session: Session,
    principal: Principal,
    zone_id: str,
    request_items: Sequence[tuple[str, bool]],
    response_items: Sequence[tuple[str, bool]],
    *,
    now: datetime,
) -> State:
    """Switch the listed transforms on or off; those not listed keep their state."""
    zone = visible_zone(session, principal, zone_id)
    principal.require(MANAGED_HEADERS_WRITE, account_id=zone.account_id, zone_id=zone.id)
    wanted = _wanted(request_items, REQUEST_HEADERS, "managed_request_headers")
    wanted |= _wanted(response_items, RESPONSE_HEADERS, "managed_response_headers")
    session.execute(select(Account.id).where(Account.id == zone.account_id).with_for_update())
    current = _enabled(session, zone.id)
    after = (current - {h for h, on in wanted.items() if not on}) | {
        h for h, on in wanted.items() if on
    }
    for header_id, partners in CONFLICTS.items():
        clash = [p for p in partners if p in after]
        if header_id in after and clash:
            raise BadRequest(
                f"{header_id} conflicts with {', '.join(clash)}: they cannot both be enabled; "
                "disable one of them in the same request or first",
                code=CONFLICTING_TRANSFORMS,
            )
    if after != current:
        for header_id, enabled in wanted.items():
            row = session.get(ManagedHeader, (zone.id, header_id))
            if row is None:
                session.add(
                    ManagedHeader(
                        zone_id=zone.id, header_id=header_id, enabled=enabled, modified_on=now
                    )
                )
            elif row.enabled != enabled:
                row.enabled = enabled
                row.modified_on = now
        session.flush()
        bump_config_version(session)
    notes = [
        f"{h} is stored but mtlsgate's edge does not implement it: it has no effect"
        for h in sorted(after - IMPLEMENTED)
        if wanted.get(h)
    ]
    return _state(after, notes)


def disable_all(session: Session, principal: Principal, zone_id: str, *, now: datetime) -> None:
    zone = visible_zone(session, principal, zone_id)
    principal.require(MANAGED_HEADERS_WRITE, account_id=zone.account_id, zone_id=zone.id)
    session.execute(select(Account.id).where(Account.id == zone.account_id).with_for_update())
    rows = [
        r
        for r in session.scalars(select(ManagedHeader).where(ManagedHeader.zone_id == zone.id))
        if r.enabled
    ]
    for row in rows:
        row.enabled = False
        row.modified_on = now
    if rows:
        bump_config_version(session)
