"""Accounts and zones: bootstrap, plan and quota changes, and what a token may see of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, Forbidden, NotFound, quote
from mtlsgate.hostnames import normalize_hostname
from mtlsgate.pki.managed_ca import generate_managed_ca
from mtlsgate.services.common import hex_id, utcnow, uuid_id
from mtlsgate.services.permissions import ALL_PERMISSIONS, Principal
from mtlsgate.services.tokens import create_token
from mtlsgate.settings import PLANS
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import Account, ManagedCA, Zone

DEFAULT_CA_QUOTA = 5
MAX_CA_QUOTA = 1000


@dataclass(frozen=True)
class Bootstrap:
    account_id: str
    zones: dict[str, str]
    api_token: str | None  # None when the store already existed (the token is never re-shown)


def first_account(session: Session) -> Account | None:
    return session.scalar(select(Account).order_by(Account.created_on).limit(1))


def initialize(
    session: Session, keystore: KeyStore, *, zone_names: Sequence[str], account_name: str
) -> Bootstrap:
    """`mtlsgate init`: the first account with its managed CA and admin token, on first run;
    on later runs only the zones that are new are added to it."""
    account = first_account(session)
    if account is None:
        return create_account(session, keystore, name=account_name, zone_names=zone_names)
    zones = _add_zones(session, account, zone_names)
    bump_config_version(session)
    return Bootstrap(account_id=account.id, zones=zones, api_token=None)


def create_account(
    session: Session, keystore: KeyStore, *, name: str, zone_names: Sequence[str]
) -> Bootstrap:
    """A new Enterprise account with its zones, its managed CA and an admin token."""
    now = utcnow()
    account = Account(
        id=hex_id(), name=name, plan="enterprise", ca_quota=DEFAULT_CA_QUOTA, created_on=now
    )
    session.add(account)
    session.flush()
    ca_id = uuid_id()
    generated = generate_managed_ca(f"mtlsgate Managed CA for {name}", now=now)
    session.add(
        ManagedCA(
            id=ca_id,
            account_id=account.id,
            name=f"Managed CA for {name}",
            certificate_pem=generated.certificate_pem,
            private_key_sealed=keystore.seal(generated.private_key_pem, context=ca_id),
            active=True,
            created_on=now,
        )
    )
    secret = create_token(
        session, account_id=account.id, name="admin", permissions=ALL_PERMISSIONS
    ).secret
    zones = _add_zones(session, account, zone_names)
    bump_config_version(session)
    return Bootstrap(account_id=account.id, zones=zones, api_token=secret)


def _add_zones(session: Session, account: Account, zone_names: Sequence[str]) -> dict[str, str]:
    zones: dict[str, str] = {}
    for raw in zone_names:
        name = normalize_hostname(raw)
        if name.startswith("*."):
            raise BadRequest(f"a zone name cannot be a wildcard: {quote(raw)}")
        zone = session.scalar(select(Zone).where(Zone.name == name))
        if zone is None:
            zone = Zone(id=hex_id(), account_id=account.id, name=name, created_on=utcnow())
            session.add(zone)
            session.flush()
        elif zone.account_id != account.id:
            raise BadRequest(f"zone {name} belongs to another account")
        zones[name] = zone.id
    return zones


def active_managed_ca(session: Session, account_id: str) -> ManagedCA:
    ca = session.scalar(
        select(ManagedCA).where(ManagedCA.account_id == account_id, ManagedCA.active.is_(True))
    )
    if ca is None:
        raise NotFound("this account has no managed CA")
    return ca


def set_plan(session: Session, account_id: str, plan: str) -> Account:
    if plan not in PLANS:
        raise BadRequest(f"plan must be one of {', '.join(PLANS)}")
    account = _account(session, account_id)
    account.plan = plan
    bump_config_version(session)
    return account


def set_ca_quota(session: Session, account_id: str, quota: int) -> Account:
    if not 0 <= quota <= MAX_CA_QUOTA:
        raise BadRequest(f"the CA quota must be between 0 and {MAX_CA_QUOTA}")
    account = _account(session, account_id)
    account.ca_quota = quota
    return account


def _account(session: Session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return account


def resolve_zone(session: Session, name_or_id: str) -> Zone:
    """For the CLI: a zone given by its name or its id."""
    zone = session.get(Zone, name_or_id) or session.scalar(
        select(Zone).where(Zone.name == name_or_id.strip().rstrip(".").lower())
    )
    if zone is None:
        raise NotFound(f"no zone named or with id {quote(name_or_id)}")
    return zone


# --- what a token sees -------------------------------------------------------------------------


def visible_account(session: Session, principal: Principal, account_id: str) -> Account:
    """The account if the token has any permission on it; otherwise the same refusal whether it
    exists or not, so a token cannot probe for other accounts."""
    account = session.get(Account, account_id) if principal.sees_account(account_id) else None
    if account is None:
        raise Forbidden("Authentication error")
    return account


def visible_zone(session: Session, principal: Principal, zone_id: str) -> Zone:
    zone = session.get(Zone, zone_id)
    if zone is None or not principal.sees_zone(zone.account_id, zone.id):
        raise Forbidden("Authentication error")
    return zone


def list_visible_accounts(session: Session, principal: Principal) -> list[Account]:
    account = session.get(Account, principal.account_id)
    return [account] if account is not None and principal.policies else []


def list_visible_zones(
    session: Session,
    principal: Principal,
    *,
    name: str | None = None,
    account_id: str | None = None,
) -> list[Zone]:
    query = select(Zone).where(Zone.account_id == principal.account_id).order_by(Zone.name)
    if name is not None:
        if "\x00" in name:
            return []  # no zone name contains NUL (and PostgreSQL refuses it in a query)
        query = query.where(Zone.name == name.strip().rstrip(".").lower())
    if account_id is not None:
        query = query.where(Zone.account_id == account_id)
    return [z for z in session.scalars(query) if principal.sees_zone(z.account_id, z.id)]
