"""The account's emergency deny-list: client certificates refused by serial or SHA-256.

A serial entry matches a leaf with that serial from any issuer of the account (serials are
unique per CA only: prefer fingerprints when CAs share serial ranges); a fingerprint entry
matches exactly one certificate. The edge counts a listed, verified certificate as revoked
(`cert_revoked`, reason "denylist"); every change bumps the config version.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, Conflict, NotFound, QuotaExceeded, quote
from mtlsgate.pki.crl import serial_hex
from mtlsgate.services.accounts import visible_account
from mtlsgate.services.common import hex_id, utcnow
from mtlsgate.services.permissions import ACCOUNT_SSL_READ, ACCOUNT_SSL_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.models import Account, DenyListEntry

# Bounds what every edge worker holds in memory per account.
MAX_ENTRIES = 10_000
MAX_REASON = 1024
# RFC 5280 allows 20 octets; some issuers add a leading 00 byte. Separators ":" are allowed.
_SERIAL = re.compile(r"(?:[0-9a-f]{1,2}:)*[0-9a-f]{1,2}|[0-9a-f]{1,42}")
_FINGERPRINT = re.compile(r"(?:[0-9a-f]{2}:){31}[0-9a-f]{2}|[0-9a-f]{64}")

DENY_LIST_INVALID = 1540
DENY_LIST_DUPLICATE = 1541


def normalize_serial(value: str) -> str:
    """Lowercase hex, two digits per byte, no leading zero bytes (as openssl prints it)."""
    v = value.strip().lower()
    v = v.removeprefix("0x")
    if not _SERIAL.fullmatch(v) or len(v.replace(":", "")) > 42:
        raise BadRequest(
            "serial_number must be the certificate's serial in hex (as `openssl x509 -noout "
            f"-serial` prints it, at most 21 bytes, ':' separators allowed); got {quote(value)}",
            code=DENY_LIST_INVALID,
        )
    return serial_hex(int(v.replace(":", ""), 16))


def normalize_fingerprint(value: str) -> str:
    v = value.strip().lower()
    if not _FINGERPRINT.fullmatch(v):
        raise BadRequest(
            "fingerprint_sha256 must be the certificate's SHA-256 fingerprint: 64 hex digits "
            f"(':' separators allowed); got {quote(value)}",
            code=DENY_LIST_INVALID,
        )
    return v.replace(":", "")


def list_entries(session: Session, principal: Principal, account_id: str) -> list[DenyListEntry]:
    visible_account(session, principal, account_id)
    principal.require(ACCOUNT_SSL_READ, account_id=account_id)
    return list(
        session.scalars(
            select(DenyListEntry)
            .where(DenyListEntry.account_id == account_id)
            .order_by(DenyListEntry.created_on, DenyListEntry.id)
        )
    )


def add_entry(
    session: Session,
    principal: Principal,
    account_id: str,
    *,
    serial_number: str | None,
    fingerprint_sha256: str | None,
    reason: str | None,
) -> DenyListEntry:
    visible_account(session, principal, account_id)
    principal.require(ACCOUNT_SSL_WRITE, account_id=account_id)
    if (serial_number is None) == (fingerprint_sha256 is None):
        raise BadRequest(
            "give exactly one of serial_number or fingerprint_sha256 per deny-list entry",
            code=DENY_LIST_INVALID,
        )
    serial = normalize_serial(serial_number) if serial_number is not None else None
    fingerprint = (
        normalize_fingerprint(fingerprint_sha256) if fingerprint_sha256 is not None else None
    )
    if reason is not None and len(reason) > MAX_REASON:
        raise BadRequest(f"reason is longer than {MAX_REASON} characters", code=DENY_LIST_INVALID)
    # The account lock makes the quota and duplicate checks one step with the insert.
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())
    same = session.scalar(
        select(DenyListEntry.id).where(
            DenyListEntry.account_id == account_id,
            DenyListEntry.serial_number == serial
            if serial is not None
            else DenyListEntry.fingerprint_sha256 == fingerprint,
        )
    )
    if same is not None:
        what = f"serial {serial}" if serial is not None else f"fingerprint {fingerprint}"
        raise Conflict(
            f"The {what} is already on the deny-list as {same}", code=DENY_LIST_DUPLICATE
        )
    count = session.scalar(
        select(func.count())
        .select_from(DenyListEntry)
        .where(DenyListEntry.account_id == account_id)
    )
    if (count or 0) >= MAX_ENTRIES:
        raise QuotaExceeded(f"The deny-list holds at most {MAX_ENTRIES} entries per account")
    entry = DenyListEntry(
        id=hex_id(),
        account_id=account_id,
        serial_number=serial,
        fingerprint_sha256=fingerprint,
        reason=reason,
        created_on=utcnow(),
    )
    session.add(entry)
    session.flush()
    bump_config_version(session)
    return entry


def delete_entry(
    session: Session, principal: Principal, account_id: str, entry_id: str
) -> DenyListEntry:
    visible_account(session, principal, account_id)
    principal.require(ACCOUNT_SSL_WRITE, account_id=account_id)
    entry = session.get(DenyListEntry, entry_id)
    if entry is None or entry.account_id != account_id:
        raise NotFound("Deny-list entry not found")
    session.delete(entry)
    session.flush()
    bump_config_version(session)
    return entry
