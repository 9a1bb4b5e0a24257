"""API tokens: created with explicit permission groups, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, NotFound, quote
from mtlsgate.services.common import hex_id, utcnow
from mtlsgate.services.permissions import (
    ALL_PERMISSIONS,
    Policy,
    Principal,
    is_account_permission,
)
from mtlsgate.store.models import Account, ApiToken, TokenPolicy, Zone

_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedToken:
    id: str
    secret: str


def create_token(
    session: Session,
    *,
    account_id: str,
    name: str,
    permissions: Sequence[str],
    zone_id: str | None = None,
) -> CreatedToken:
    """A token with exactly `permissions`, on the whole account or on one zone of it."""
    if session.get(Account, account_id) is None:
        raise NotFound(f"account {account_id} does not exist")
    if not permissions:
        raise BadRequest("a token needs at least one permission")
    for perm in permissions:
        if perm not in ALL_PERMISSIONS:
            raise BadRequest(
                f"unknown permission {quote(perm)}; known: " + ", ".join(ALL_PERMISSIONS)
            )
        if zone_id is not None and is_account_permission(perm):
            raise BadRequest(
                f"{quote(perm)} is an account permission and cannot be limited to a zone"
            )
    if zone_id is not None:
        zone = session.get(Zone, zone_id)
        if zone is None or zone.account_id != account_id:
            raise NotFound(f"zone {zone_id} is not a zone of account {account_id}")
    # 40 characters, like Cloudflare's tokens: 240 bits of randomness.
    secret = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(40))
    token = ApiToken(
        id=hex_id(),
        account_id=account_id,
        name=name,
        token_hash=hash_token(secret),
        status="active",
        created_on=utcnow(),
    )
    session.add(token)
    session.flush()
    for perm in dict.fromkeys(permissions):
        scope = ("zone", zone_id) if zone_id is not None else ("account", account_id)
        session.add(
            TokenPolicy(
                token_id=token.id,
                permission=perm,
                scope_kind=scope[0],
                scope_id=scope[1],
            )
        )
    return CreatedToken(id=token.id, secret=secret)


def authenticate(session: Session, secret: str) -> Principal | None:
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if token is None or token.status != "active":
        return None
    rows = session.scalars(select(TokenPolicy).where(TokenPolicy.token_id == token.id)).all()
    return Principal(
        token_id=token.id,
        account_id=token.account_id,
        policies=tuple(Policy(r.permission, r.scope_kind, r.scope_id) for r in rows),
    )
