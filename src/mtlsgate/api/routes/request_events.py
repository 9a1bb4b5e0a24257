"""/zones/{zone_id}/mtls_events: the edge's recent requests (a sample) and their exact
per-minute counts, for the dashboard. mtlsgate's own endpoints: Cloudflare has none like them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from mtlsgate.api.auth import principal_from_request
from mtlsgate.api.common import path_hex_id, store_of
from mtlsgate.api.envelope import ok, ok_page
from mtlsgate.errors import BadRequest, quote
from mtlsgate.services import request_events as svc
from mtlsgate.services.common import Page
from mtlsgate.services.permissions import Principal

router = APIRouter(prefix="/zones/{zone_id}/mtls_events")
Auth = Annotated[Principal, Depends(principal_from_request)]

DEFAULT_PER_PAGE = 50
DEFAULT_RANGE = 86400
MAX_PAGE = 1_000_000
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z
_MAX_ID = 2**63 - 1


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_json(e: svc.Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "occurred_at": _iso(e.ts),
        "ts": e.ts,
        "hostname": e.hostname,
        "client": e.client,
        "method": e.method,
        "uri": e.uri,
        "status": e.status,
        "mtls": e.mtls,
        "fingerprint": e.fingerprint or None,
        "rule": e.rule or None,
        "action": e.action,
        "ms": e.ms,
        "origin_ms": e.origin_ms,
        "node_id": e.node_id,
    }


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.strip().isdigit() or len(raw.strip()) > 9:
        raise BadRequest(
            f"{name} must be a whole number of seconds, got {quote(raw)}", pointer=name
        )
    return int(raw)


def _time_param(request: Request, name: str) -> int | None:
    """Unix seconds, or an RFC 3339 time such as 2025-11-27T10:00:00Z."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = raw.strip()
    seconds: int | None = None
    if value.isdigit():
        seconds = int(value)
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            seconds = int(moment.timestamp())
    if seconds is None or not 0 <= seconds <= _MAX_TIME:
        raise BadRequest(
            f"{name} must be Unix seconds or an RFC 3339 time with a zone, such as "
            f"2025-11-27T10:00:00Z; got {quote(raw)}",
            pointer=name,
        )
    return seconds


@router.get("", summary="List recent mTLS request events (a sample)")
def list_events(
    request: Request,
    principal: Auth,
    zone_id: str,
    hostname: Annotated[str | None, Query()] = None,
    mtls: Annotated[str | None, Query()] = None,
    page: Annotated[int, Query()] = 1,
    per_page: Annotated[int, Query()] = DEFAULT_PER_PAGE,
    before: Annotated[int | None, Query()] = None,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    if not 1 <= page <= MAX_PAGE:
        raise BadRequest(f"page must be between 1 and {MAX_PAGE}", pointer="page")
    if before is not None and not 1 <= before <= _MAX_ID:
        raise BadRequest("before must be an event id (a positive integer)", pointer="before")
    if not 1 <= per_page <= svc.MAX_PER_PAGE:
        raise BadRequest(f"per_page must be between 1 and {svc.MAX_PER_PAGE}", pointer="per_page")
    result = svc.recent_events(
        store_of(request),
        principal,
        zone_id,
        hostname=hostname,
        mtls=mtls,
        limit=per_page,
        offset=(page - 1) * per_page,
        before=before,
    )
    items = [event_json(e) for e in result.events]
    return ok_page(Page(items, page, per_page, result.total_count), items)


@router.get("/counts", summary="Count requests per minute by mTLS status (exact)")
def count_events(
    request: Request,
    principal: Auth,
    zone_id: str,
    hostname: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    path_hex_id(request, zone_id)
    until = _time_param(request, "until")
    since = _time_param(request, "since")
    interval = _int_param(request, "interval")
    if interval is None:
        interval = 60
    if until is None:
        until = int(time.time())
    if since is None:
        since = until - DEFAULT_RANGE
    rows = svc.event_counts(
        store_of(request),
        principal,
        zone_id,
        since=since,
        until=until,
        hostname=hostname,
        interval=interval,
    )
    totals: dict[str, Any] = {"requests": 0, "mtls": {}, "status": {}, "action": {}}
    for r in rows:
        totals["requests"] += r.count
        for group, key in (("mtls", r.mtls), ("status", str(r.status)), ("action", r.action)):
            totals[group][key] = totals[group].get(key, 0) + r.count
    return ok(
        {
            "since": _iso(since),
            "until": _iso(until),
            "interval": interval,
            "totals": totals,
            "timeseries": [
                {
                    "since": _iso(r.start),
                    "until": _iso(r.start + interval),
                    "hostname": r.hostname,
                    "mtls": r.mtls,
                    "status": r.status,
                    "action": r.action,
                    "requests": r.count,
                }
                for r in rows
            ],
        }
    )
