"""DNS records of a zone: A, AAAA and CNAME, the ones that say which hostnames the edge serves
(`proxied`) and where their origin is (`content`).

Names are normalised like every hostname (lowercase A-labels) and must be inside the zone; `@`
is the zone apex and a single label (`www`) is taken relative to the zone, as Cloudflare does.
Loopback and private addresses are allowed: a self-hosted gateway's origins usually are.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, NotFound, quote
from mtlsgate.hostnames import HOSTNAME_NOT_IN_ZONE, in_zone, normalize_hostname
from mtlsgate.services.accounts import visible_zone
from mtlsgate.services.common import hex_id
from mtlsgate.services.permissions import DNS_READ, DNS_WRITE, Principal
from mtlsgate.store.db import bump_config_version
from mtlsgate.store.models import Account, DnsRecord, Zone

RECORD_TYPES = ("A", "AAAA", "CNAME")

# Error codes (docs/edge-config.md). Cloudflare's own where we know them.
RECORD_NOT_FOUND = 81044
UNSUPPORTED_TYPE = 9004
INVALID_CONTENT = 9005
INVALID_TTL = 9021
IDENTICAL_RECORD = 81058
CNAME_CONFLICT = 81053
CNAME_EXISTS = 81054
INVALID_COMMENT = 9101
INVALID_TAGS = 9102

MAX_COMMENT = 500
MAX_TAGS = 100
MAX_TAG_LENGTH = 255
MAX_RECORDS_PER_ZONE = 10000


@dataclass(frozen=True)
class RecordFields:
    """A record's writable fields, validated."""

    type: str
    name: str
    content: str
    proxied: bool
    ttl: int
    comment: str | None
    tags: tuple[str, ...]


def _record_name(raw: object, zone: Zone) -> str:
    if isinstance(raw, str) and raw.strip() == "@":
        return zone.name
    if isinstance(raw, str) and raw.strip() and "." not in raw.strip().rstrip("."):
        raw = f"{raw.strip()}.{zone.name}"
    name = normalize_hostname(raw)
    if not in_zone(name, zone.name):
        raise BadRequest(
            f"name {name} is not in zone {zone.name}; use a name ending in .{zone.name}, "
            f"or @ for the zone apex",
            code=HOSTNAME_NOT_IN_ZONE,
            pointer="/name",
        )
    return name


def _content(record_type: str, raw: str, name: str) -> str:
    value = raw.strip()
    if record_type == "A":
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise BadRequest(
                f"content for an A record must be an IPv4 address, got {quote(raw)}",
                code=INVALID_CONTENT,
                pointer="/content",
            ) from None
    if record_type == "AAAA":
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            raise BadRequest(
                f"content for an AAAA record must be an IPv6 address, got {quote(raw)}",
                code=INVALID_CONTENT,
                pointer="/content",
            ) from None
    try:
        target = normalize_hostname(value)
    except BadRequest as exc:
        raise BadRequest(
            f"content for a CNAME record must be a hostname: {exc.message}",
            code=INVALID_CONTENT,
            pointer="/content",
        ) from None
    if target.startswith("*."):
        raise BadRequest(
            "content for a CNAME record must be a hostname, not a wildcard",
            code=INVALID_CONTENT,
            pointer="/content",
        )
    if target == name:
        raise BadRequest(
            f"a CNAME record cannot point at its own name ({name})",
            code=INVALID_CONTENT,
            pointer="/content",
        )
    return target


def _ttl(ttl: int) -> int:
    if ttl != 1 and not 30 <= ttl <= 86400:
        raise BadRequest(
            f"ttl must be 1 (automatic) or between 30 and 86400 seconds, got {ttl}",
            code=INVALID_TTL,
            pointer="/ttl",
        )
    return ttl


def _comment(comment: str | None) -> str | None:
    if comment is None:
        return None
    if len(comment) > MAX_COMMENT:
        raise BadRequest(
            f"comment must be at most {MAX_COMMENT} characters",
            code=INVALID_COMMENT,
            pointer="/comment",
        )
    return comment


def _tags(tags: Sequence[str]) -> tuple[str, ...]:
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"at most {MAX_TAGS} tags per record", code=INVALID_TAGS, pointer="/tags")
    out: list[str] = []
    for i, tag in enumerate(tags):
        if not tag.strip() or len(tag) > MAX_TAG_LENGTH:
            raise BadRequest(
                f"tags[{i}] must be a non-empty string of at most {MAX_TAG_LENGTH} characters",
                code=INVALID_TAGS,
                pointer=f"/tags/{i}",
            )
        if tag not in out:
            out.append(tag)
    return tuple(out)


def validate(zone: Zone, raw: dict[str, Any]) -> RecordFields:
    """Check a full set of fields (POST, PUT, or PATCH merged onto the current record)."""
    record_type = str(raw["type"]).strip().upper()
    if record_type not in RECORD_TYPES:
        raise BadRequest(
            f"mtlsgate serves only A, AAAA and CNAME records; got type {quote(raw['type'])}",
            code=UNSUPPORTED_TYPE,
            pointer="/type",
        )
    name = _record_name(raw["name"], zone)
    return RecordFields(
        type=record_type,
        name=name,
        content=_content(record_type, raw["content"], name),
        proxied=bool(raw.get("proxied") or False),
        ttl=_ttl(1 if raw.get("ttl") is None else int(raw["ttl"])),
        comment=_comment(raw.get("comment")),
        tags=_tags(raw.get("tags") or ()),
    )


def _lock(session: Session, zone: Zone) -> None:
    # Duplicate and CNAME checks read the zone's records: one writer per account at a time.
    session.execute(select(Account.id).where(Account.id == zone.account_id).with_for_update())


def _check_conflicts(
    session: Session, zone: Zone, fields: RecordFields, exclude_id: str | None
) -> None:
    same_name = [
        r
        for r in session.scalars(
            select(DnsRecord).where(DnsRecord.zone_id == zone.id, DnsRecord.name == fields.name)
        )
        if r.id != exclude_id
    ]
    for other in same_name:
        if other.type == fields.type and other.content == fields.content:
            raise BadRequest(
                f"An identical record already exists: {other.type} {other.name} "
                f"{other.content} (id {other.id})",
                code=IDENTICAL_RECORD,
            )
    if fields.type == "CNAME" and same_name:
        other = same_name[0]
        raise BadRequest(
            f"{fields.name} already has a {other.type} record (id {other.id}); a CNAME record "
            "cannot share its name with any other record",
            code=CNAME_CONFLICT,
        )
    cnames = [r for r in same_name if r.type == "CNAME"]
    if cnames:
        raise BadRequest(
            f"A CNAME record with that host already exists: {fields.name} (id {cnames[0].id}); "
            "no other record can share its name",
            code=CNAME_EXISTS,
        )


def _apply(record: DnsRecord, fields: RecordFields) -> None:
    record.type = fields.type
    record.name = fields.name
    record.content = fields.content
    record.proxied = fields.proxied
    record.ttl = fields.ttl
    record.comment = fields.comment
    record.tags = json.dumps(list(fields.tags))


def record_as_dict(record: DnsRecord) -> dict[str, Any]:
    """The writable fields of a stored record, in the form `validate` takes."""
    return {
        "type": record.type,
        "name": record.name,
        "content": record.content,
        "proxied": record.proxied,
        "ttl": record.ttl,
        "comment": record.comment,
        "tags": json.loads(record.tags),
    }


def create_record(
    session: Session, principal: Principal, zone_id: str, raw: dict[str, Any], *, now: datetime
) -> tuple[DnsRecord, Zone]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(DNS_WRITE, account_id=zone.account_id, zone_id=zone.id)
    fields = validate(zone, raw)
    _lock(session, zone)
    count = len(list(session.scalars(select(DnsRecord.id).where(DnsRecord.zone_id == zone.id))))
    if count >= MAX_RECORDS_PER_ZONE:
        raise BadRequest(f"a zone holds at most {MAX_RECORDS_PER_ZONE} DNS records")
    _check_conflicts(session, zone, fields, None)
    record = DnsRecord(id=hex_id(), zone_id=zone.id, created_on=now, modified_on=now)
    _apply(record, fields)
    session.add(record)
    session.flush()
    bump_config_version(session)
    return record, zone


def _record(session: Session, zone: Zone, record_id: str) -> DnsRecord:
    record = session.get(DnsRecord, record_id)
    if record is None or record.zone_id != zone.id:
        raise NotFound("DNS record not found", code=RECORD_NOT_FOUND)
    return record


def get_record(
    session: Session, principal: Principal, zone_id: str, record_id: str
) -> tuple[DnsRecord, Zone]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(DNS_READ, account_id=zone.account_id, zone_id=zone.id)
    return _record(session, zone, record_id), zone


def update_record(
    session: Session,
    principal: Principal,
    zone_id: str,
    record_id: str,
    raw: dict[str, Any],
    *,
    partial: bool,
    now: datetime,
) -> tuple[DnsRecord, Zone]:
    """PUT (`partial=False`: `raw` is the whole record) or PATCH (merged onto the record)."""
    zone = visible_zone(session, principal, zone_id)
    principal.require(DNS_WRITE, account_id=zone.account_id, zone_id=zone.id)
    _lock(session, zone)
    record = _record(session, zone, record_id)
    merged = {**record_as_dict(record), **raw} if partial else raw
    fields = validate(zone, merged)
    _check_conflicts(session, zone, fields, record.id)
    before = record_as_dict(record)
    _apply(record, fields)
    if record_as_dict(record) != before:
        record.modified_on = now
        bump_config_version(session)
    return record, zone


def delete_record(session: Session, principal: Principal, zone_id: str, record_id: str) -> str:
    zone = visible_zone(session, principal, zone_id)
    principal.require(DNS_WRITE, account_id=zone.account_id, zone_id=zone.id)
    _lock(session, zone)
    record = _record(session, zone, record_id)
    session.delete(record)
    bump_config_version(session)
    return record_id


@dataclass(frozen=True)
class Filters:
    name: dict[str, str]
    content: dict[str, str]
    type: str | None
    proxied: bool | None
    match_all: bool
    order: str
    descending: bool


def _text_match(value: str, ops: dict[str, str]) -> list[bool]:
    v = value.lower()
    out: list[bool] = []
    for op, wanted in ops.items():
        w = wanted.lower()
        if op == "exact":
            out.append(v == w)
        elif op == "contains":
            out.append(w in v)
        elif op == "startswith":
            out.append(v.startswith(w))
        else:
            out.append(v.endswith(w))
    return out


def list_records(
    session: Session, principal: Principal, zone_id: str, filters: Filters
) -> tuple[list[DnsRecord], Zone]:
    zone = visible_zone(session, principal, zone_id)
    principal.require(DNS_READ, account_id=zone.account_id, zone_id=zone.id)
    records = list(
        session.scalars(
            select(DnsRecord)
            .where(DnsRecord.zone_id == zone.id)
            .order_by(DnsRecord.created_on, DnsRecord.id)
        )
    )
    name_ops = dict(filters.name)
    if "exact" in name_ops and name_ops["exact"].strip() == "@":
        name_ops["exact"] = zone.name
    elif "exact" in name_ops:
        name_ops["exact"] = name_ops["exact"].strip().rstrip(".")

    def keep(r: DnsRecord) -> bool:
        checks = _text_match(r.name, name_ops) + _text_match(r.content, filters.content)
        if filters.type is not None:
            checks.append(r.type == filters.type)
        if filters.proxied is not None:
            checks.append(r.proxied == filters.proxied)
        if not checks:
            return True
        return all(checks) if filters.match_all else any(checks)

    kept = [r for r in records if keep(r)]

    def sort_key(r: DnsRecord) -> tuple[Any, ...]:
        primary: Any = getattr(r, filters.order)
        return (primary, r.type, r.name, r.content)

    kept.sort(key=sort_key, reverse=filters.descending)
    return kept, zone
