"""/zones/{zone_id}/dns_records: create, list (filters, page-number pages), get, replace, edit,
delete. What a record may hold is checked by services/dns_records.py."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import iso, path_hex_id, store_of
from mtlsgate.api.envelope import ok, ok_page
from mtlsgate.errors import BadRequest, quote
from mtlsgate.services import dns_records as svc
from mtlsgate.services.common import paginate, utcnow
from mtlsgate.services.permissions import Principal
from mtlsgate.store.models import DnsRecord, Zone

router = APIRouter(prefix="/zones/{zone_id}/dns_records")
Auth = Annotated[Principal, Depends(principal_from_request)]

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 5000
_TEXT_OPS = ("exact", "contains", "startswith", "endswith")
_ORDERS = ("type", "name", "content", "ttl", "proxied")


class _ReadOnly(BaseModel):
    """Fields of a record as GET shows it: accepted and ignored, so GET -> edit -> PUT works."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr | None = None
    zone_id: StrictStr | None = None
    zone_name: StrictStr | None = None
    proxiable: StrictBool | None = None
    created_on: StrictStr | None = None
    modified_on: StrictStr | None = None
    meta: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None


class RecordBody(_ReadOnly):
    """POST and PUT: a whole record. `ttl` defaults to 1 (automatic), `proxied` to false."""

    type: StrictStr = Field(max_length=16)
    name: StrictStr = Field(max_length=255)
    content: StrictStr = Field(max_length=1024)
    ttl: StrictInt | None = None
    proxied: StrictBool | None = None
    comment: StrictStr | None = None
    tags: list[StrictStr] | None = None


class RecordPatchBody(_ReadOnly):
    """PATCH: only the fields given change."""

    type: StrictStr | None = Field(default=None, max_length=16)
    name: StrictStr | None = Field(default=None, max_length=255)
    content: StrictStr | None = Field(default=None, max_length=1024)
    ttl: StrictInt | None = None
    proxied: StrictBool | None = None
    comment: StrictStr | None = None
    tags: list[StrictStr] | None = None


_WRITABLE = ("type", "name", "content", "ttl", "proxied", "comment", "tags")


def _fields(body: RecordBody | RecordPatchBody, *, partial: bool) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True)
    out = {k: given[k] for k in _WRITABLE if k in given}
    if partial:
        for key in ("type", "name", "content"):
            if key in out and out[key] is None:
                raise BadRequest(f"{key} cannot be null", pointer=f"/{key}")
        # `null` for these means "back to the default" (Cloudflare clears a comment with null).
        for key, default in (("ttl", 1), ("proxied", False), ("tags", [])):
            if key in out and out[key] is None:
                out[key] = default
    return out


def record_json(record: DnsRecord, zone: Zone) -> dict[str, Any]:
    return {
        "id": record.id,
        "zone_id": zone.id,
        "zone_name": zone.name,
        "name": record.name,
        "type": record.type,
        "content": record.content,
        "proxied": record.proxied,
        "proxiable": True,
        "ttl": record.ttl,
        "comment": record.comment,
        "tags": json.loads(record.tags),
        "settings": {},
        "meta": {},
        "created_on": iso(record.created_on),
        "modified_on": iso(record.modified_on),
    }


def _text_filter(request: Request, field: str) -> dict[str, str]:
    q = request.query_params
    ops: dict[str, str] = {}
    if field in q:
        ops["exact"] = q[field]
    for op in _TEXT_OPS:
        key = f"{field}.{op}"
        if key in q:
            ops[op] = q[key]
    return ops


def _filters(request: Request) -> svc.Filters:
    q = request.query_params
    record_type = q.get("type")
    proxied: bool | None = None
    if "proxied" in q:
        raw = q["proxied"].lower()
        if raw not in ("true", "false"):
            raise BadRequest(
                f"proxied must be true or false, got {quote(q['proxied'])}", pointer="proxied"
            )
        proxied = raw == "true"
    match = q.get("match", "all")
    if match not in ("all", "any"):
        raise BadRequest(f"match must be all or any, got {quote(match)}", pointer="match")
    order = q.get("order", "type")
    if order not in _ORDERS:
        raise BadRequest(
            f"order must be one of {', '.join(_ORDERS)}, got {quote(order)}", pointer="order"
        )
    direction = q.get("direction", "asc")
    if direction not in ("asc", "desc"):
        raise BadRequest(
            f"direction must be asc or desc, got {quote(direction)}", pointer="direction"
        )
    return svc.Filters(
        name=_text_filter(request, "name"),
        content=_text_filter(request, "content"),
        type=record_type.strip().upper() if record_type is not None else None,
        proxied=proxied,
        match_all=match == "all",
        order=order,
        descending=direction == "desc",
    )


def _record_id(request: Request, value: str) -> str:
    return path_hex_id(request, value)


@router.post("", summary="Create DNS record")
def create_record(
    request: Request, principal: Auth, zone_id: str, body: RecordBody
) -> JSONResponse:
    path_hex_id(request, zone_id)
    with store_of(request).transaction() as session:
        record, zone = svc.create_record(
            session, principal, zone_id, _fields(body, partial=False), now=utcnow()
        )
        return ok(record_json(record, zone))


@router.get("", summary="List DNS records")
def list_records(
    request: Request,
    principal: Auth,
    zone_id: str,
    page: Annotated[int, Query()] = 1,
    per_page: Annotated[int, Query()] = DEFAULT_PER_PAGE,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    filters = _filters(request)
    with store_of(request).transaction() as session:
        records, zone = svc.list_records(session, principal, zone_id, filters)
        result = paginate(records, page, per_page, max_per_page=MAX_PER_PAGE)
        return ok_page(result, [record_json(r, zone) for r in result.items])


@router.get("/{dns_record_id}", summary="DNS record details")
def get_record(request: Request, principal: Auth, zone_id: str, dns_record_id: str) -> JSONResponse:
    path_hex_id(request, zone_id)
    record_id = _record_id(request, dns_record_id)
    with store_of(request).transaction() as session:
        record, zone = svc.get_record(session, principal, zone_id, record_id)
        return ok(record_json(record, zone))


@router.put("/{dns_record_id}", summary="Overwrite DNS record")
def replace_record(
    request: Request, principal: Auth, zone_id: str, dns_record_id: str, body: RecordBody
) -> JSONResponse:
    path_hex_id(request, zone_id)
    record_id = _record_id(request, dns_record_id)
    with store_of(request).transaction() as session:
        record, zone = svc.update_record(
            session,
            principal,
            zone_id,
            record_id,
            _fields(body, partial=False),
            partial=False,
            now=utcnow(),
        )
        return ok(record_json(record, zone))


@router.patch("/{dns_record_id}", summary="Update DNS record")
def edit_record(
    request: Request, principal: Auth, zone_id: str, dns_record_id: str, body: RecordPatchBody
) -> JSONResponse:
    path_hex_id(request, zone_id)
    record_id = _record_id(request, dns_record_id)
    with store_of(request).transaction() as session:
        record, zone = svc.update_record(
            session,
            principal,
            zone_id,
            record_id,
            _fields(body, partial=True),
            partial=True,
            now=utcnow(),
        )
        return ok(record_json(record, zone))


@router.delete("/{dns_record_id}", summary="Delete DNS record")
def delete_record(
    request: Request, principal: Auth, zone_id: str, dns_record_id: str
) -> JSONResponse:
    path_hex_id(request, zone_id)
    record_id = _record_id(request, dns_record_id)
    with store_of(request).transaction() as session:
        return ok({"id": svc.delete_record(session, principal, zone_id, record_id)})
