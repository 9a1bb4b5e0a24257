"""Rotation of an account's managed client-certificate CA: rotate, retire, list.

An account's managed CAs (`managed_cas` rows) are each in one of three states:
- active: exactly one per account; it signs every new client certificate;
- retiring: a former active CA, still trusted by the account's managed hostname associations,
  so the certificates it signed keep verifying at the edge (and their revocations keep working);
- retired: no longer trusted anywhere; what it signed fails verification at the edge.

A managed hostname association means "this account's managed CA", whichever that is: the edge
trusts every non-retired managed CA of the account for it (`trust_chain`), active first. Its
stored `ca_id` is kept pointing at the active CA (rotation repoints it in the same transaction),
so the hostname-association API, which looks managed associations up by the active CA's id,
needs no change. Every change here bumps the config version: it changes what the edge trusts.
Whoever holds the data dir runs these (CLI only): they act on one account's rows, nothing else.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, Conflict, NotFound, quote
from mtlsgate.pki.managed_ca import generate_managed_ca
from mtlsgate.services.common import uuid_id
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.keystore import KeyStore
from mtlsgate.store.models import Account, ClientCertificate, HostnameAssociation, ManagedCA, Zone

ACTIVE = "active"
RETIRING = "retiring"
RETIRED = "retired"

# Client-certificate statuses under which a certificate still works at the edge (until it
# expires): what retiring its CA would break.
_LIVE_STATUSES = ("active", "pending_reactivation")
# How many live certificates a refusal to retire names (the count is always complete).
_NAMED_IN_REFUSAL = 10


def status_of(ca: ManagedCA) -> str:
    if ca.active:
        return ACTIVE
    return RETIRED if ca.retired_on is not None else RETIRING


def resolve_account(session: Session, account_id: str | None) -> Account:
    """The account given, or the only one there is (an error if there are several)."""
    if account_id is not None:
        account = session.get(Account, account_id) if "\x00" not in account_id else None
        if account is None:
            raise NotFound(f"account {account_id} does not exist")
        return account
    accounts = list(session.scalars(select(Account).order_by(Account.created_on).limit(2)))
    if not accounts:
        raise NotFound("no account: run `mtlsgate init` first")
    if len(accounts) > 1:
        raise BadRequest("this store has several accounts: say which one with --account ID")
    return accounts[0]


def _lock_account(session: Session, account_id: str) -> None:
    # Serialises rotations and retirements of one account (and orders them against the
    # hostname-association writes, which take the same lock): never two active CAs.
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())


def _account_cas(session: Session, account_id: str) -> list[ManagedCA]:
    return list(
        session.scalars(
            select(ManagedCA)
            .where(ManagedCA.account_id == account_id)
            .order_by(ManagedCA.created_on.desc(), ManagedCA.id)
        )
    )


def _trust_order(cas: list[ManagedCA]) -> list[ManagedCA]:
    """Non-retired CAs, active first, then retiring ones newest first."""
    live = [ca for ca in cas if ca.retired_on is None]
    return sorted(live, key=lambda ca: (not ca.active, -ca.created_on.timestamp(), ca.id))


def trust_chains(session: Session) -> dict[str, list[ManagedCA]]:
    """Account id → the managed CAs its managed associations trust, in advertising order."""
    grouped: dict[str, list[ManagedCA]] = defaultdict(list)
    for ca in session.scalars(select(ManagedCA).where(ManagedCA.retired_on.is_(None))):
        grouped[ca.account_id].append(ca)
    return {account: _trust_order(cas) for account, cas in grouped.items()}


def trust_chain(session: Session, account_id: str) -> list[ManagedCA]:
    """The managed CAs one account's managed associations trust, in advertising order."""
    return _trust_order(_account_cas(session, account_id))


@dataclass(frozen=True)
class Rotation:
    account_id: str
    new_ca: ManagedCA
    previous_ca: ManagedCA
    config_version: int


def rotate(
    session: Session, keystore: KeyStore, *, account_id: str | None, now: datetime
) -> Rotation:
    """A new managed CA (new key, sealed like the first) becomes the active one; the previous
    active CA becomes retiring (still trusted)."""
    account = resolve_account(session, account_id)
    _lock_account(session, account.id)
    previous = session.scalar(
        select(ManagedCA).where(ManagedCA.account_id == account.id, ManagedCA.active.is_(True))
    )
    if previous is None:
        raise NotFound(f"account {account.id} has no active managed CA")
    ca_id = uuid_id()
    # A subject of its own (the date and the id's first 8 hex digits come before the account
    # name, which may be cut at 64 characters): a client or a trust store that looks issuers up
    # by name never confuses the new CA with the one it replaces.
    generated = generate_managed_ca(
        f"mtlsgate Managed CA {now:%Y-%m-%d} {ca_id[:8]} for {account.name}", now=now
    )
    new = ManagedCA(
        id=ca_id,
        account_id=account.id,
        name=f"Managed CA for {account.name} ({now:%Y-%m-%d} {ca_id[:8]})",
        certificate_pem=generated.certificate_pem,
        # The same protection as the first CA (services/accounts.py): sealed under the master
        # key with its own id as associated data; the plaintext is dropped with `generated`.
        private_key_sealed=keystore.seal(generated.private_key_pem, context=ca_id),
        active=True,
        created_on=now,
        retired_on=None,
    )
    previous.active = False
    session.flush()  # the previous row is no longer active before the new one is added
    session.add(new)
    session.flush()
    # Managed associations follow the active CA (see the module docstring).
    zone_ids = select(Zone.id).where(Zone.account_id == account.id)
    session.execute(
        update(HostnameAssociation)
        .where(HostnameAssociation.ca_kind == "managed", HostnameAssociation.zone_id.in_(zone_ids))
        .values(ca_id=new.id)
    )
    version = bump_config_version(session)
    return Rotation(account.id, new, previous, version)


@dataclass(frozen=True)
class LiveCertificate:
    id: str
    zone_id: str
    common_name: str
    expires_on: datetime


def live_certificates(session: Session, ca_id: str, *, now: datetime) -> list[LiveCertificate]:
    """Certificates of the CA that still work at the edge: active (or being reactivated) and
    not expired. Revoked ones are refused anyway, expired ones fail verification anyway."""
    rows = session.execute(
        select(
            ClientCertificate.id,
            ClientCertificate.zone_id,
            ClientCertificate.common_name,
            ClientCertificate.expires_on,
        )
        .where(
            ClientCertificate.managed_ca_id == ca_id,
            ClientCertificate.status.in_(_LIVE_STATUSES),
            ClientCertificate.expires_on > now,
        )
        .order_by(ClientCertificate.expires_on.desc(), ClientCertificate.id)
    )
    return [LiveCertificate(*row) for row in rows]


@dataclass(frozen=True)
class Retirement:
    ca: ManagedCA
    live_certificates: int  # how many still-live certificates `--force` made fail
    config_version: int


def retire(
    session: Session,
    *,
    account_id: str | None,
    ca_id: str,
    force: bool,
    now: datetime,
) -> Retirement:
    """Stop trusting a retiring CA. Refused for the active CA, and, unless `force`, while the
    CA has live certificates (they would fail verification at once)."""
    account = resolve_account(session, account_id) if account_id is not None else None
    # No id contains NUL (and PostgreSQL refuses it in a query): not found, not a crash.
    ca = session.get(ManagedCA, ca_id.strip()) if "\x00" not in ca_id else None
    if ca is None or (account is not None and ca.account_id != account.id):
        raise NotFound(
            f"no managed CA with id {quote(ca_id)}" + (" in this account" if account else "")
        )
    _lock_account(session, ca.account_id)
    session.refresh(ca)  # a rotation may have committed while we waited for the lock
    if ca.active:
        raise Conflict(
            f"managed CA {ca.id} is the account's active CA (it signs new certificates); "
            "run `mtlsgate managed-ca rotate` first, then retire it"
        )
    if ca.retired_on is not None:
        raise Conflict(
            f"managed CA {ca.id} was already retired on {ca.retired_on:%Y-%m-%dT%H:%M:%SZ}"
        )
    live = live_certificates(session, ca.id, now=now)
    if live and not force:
        named = ", ".join(
            f"{c.id} (zone {c.zone_id}, CN={c.common_name}, expires "
            f"{c.expires_on:%Y-%m-%dT%H:%M:%SZ})"
            for c in live[:_NAMED_IN_REFUSAL]
        )
        more = f" and {len(live) - _NAMED_IN_REFUSAL} more" if len(live) > _NAMED_IN_REFUSAL else ""
        raise Conflict(
            f"managed CA {ca.id} still has {len(live)} active unexpired client certificate(s): "
            f"{named}{more}. Reissue them from the active CA and revoke these, wait until they "
            "expire, or retire with --force (they then fail verification at the edge)"
        )
    ca.retired_on = now
    session.flush()
    return Retirement(ca, len(live), bump_config_version(session))


def describe(session: Session, ca: ManagedCA, *, now: datetime) -> dict[str, object]:
    """What `managed-ca list` shows of one CA (never its key)."""
    cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    counts = dict(
        session.execute(
            select(ClientCertificate.status, func.count())
            .where(ClientCertificate.managed_ca_id == ca.id, ClientCertificate.expires_on > now)
            .group_by(ClientCertificate.status)
        ).all()
    )
    expired = session.scalar(
        select(func.count()).where(
            ClientCertificate.managed_ca_id == ca.id, ClientCertificate.expires_on <= now
        )
    )
    return {
        "id": ca.id,
        "name": ca.name,
        "status": status_of(ca),
        "subject": cert.subject.rfc4514_string(),
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "certificate": ca.certificate_pem,  # for `openssl verify -CAfile` and client chains
        "created_on": ca.created_on.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expires_on": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "retired_on": ca.retired_on.strftime("%Y-%m-%dT%H:%M:%SZ") if ca.retired_on else None,
        "certificates": {
            "live": sum(int(counts.get(s, 0)) for s in _LIVE_STATUSES),
            "revoked": int(counts.get("pending_revocation", 0)) + int(counts.get("revoked", 0)),
            "expired": int(expired or 0),
        },
    }


def list_cas(session: Session, *, account_id: str | None, now: datetime) -> list[dict[str, object]]:
    """The account's managed CAs: active first, then retiring, then retired, newest first."""
    account = resolve_account(session, account_id)
    rank = {ACTIVE: 0, RETIRING: 1, RETIRED: 2}
    cas = sorted(_account_cas(session, account.id), key=lambda ca: rank[status_of(ca)])
    return [describe(session, ca, now=now) for ca in cas]
