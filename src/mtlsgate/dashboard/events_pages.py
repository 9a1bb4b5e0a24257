"""mTLS events: the edge's recent requests per hostname with their mTLS status, and a chart of
the exact per-minute counts over time (services/request_events.py, as /mtls_events reads)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from mtlsgate.dashboard.web import Ctx, current, plain, render, store_of
from mtlsgate.errors import MtlsgateError, NotFound
from mtlsgate.services import request_events
from mtlsgate.services.permissions import ZONE_SSL_READ

router = APIRouter()
Signed = Annotated[Ctx, Depends(current)]

# range -> (label, seconds, bucket interval): about 50 to 60 bars each.
RANGES = {
    "1h": ("Last hour", 3600, 60),
    "24h": ("Last 24 hours", 86400, 1800),
    "7d": ("Last 7 days", 7 * 86400, 3 * 3600),
}
# A colour per status the edge reports; anything else is drawn in the last one.
STATUS_COLOURS = {
    "ok": "#1e6b34",
    "absent": "#8a8f98",
    "untrusted": "#c46a00",
    "expired": "#7b3fa0",
    "notyetvalid": "#a07b00",
    "revoked": "#b3261e",
    "invalid": "#5a2d0c",
    "none": "#c9ced6",
}
OTHER_COLOUR = "#1f5fbf"
CHART_W, CHART_H = 600, 160


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


def chart(
    rows: list[request_events.CountRow], since: int, until: int, interval: int
) -> tuple[list[Bar], dict[str, int], int]:
    """Stacked bars (one per bucket, one segment per mTLS status), totals, and the tallest."""
    per_bucket: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        per_bucket[r.start][r.mtls] += r.count
        totals[r.mtls] += r.count
    first = since - since % interval
    starts = list(range(first, until, interval))
    tallest = max((sum(b.values()) for b in per_bucket.values()), default=0)
    bars: list[Bar] = []
    width = CHART_W / max(len(starts), 1)
    for i, start in enumerate(starts):
        y = float(CHART_H)
        when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M UTC")
        for status, count in sorted(per_bucket.get(start, {}).items()):
            h = CHART_H * count / tallest if tallest else 0
            y -= h
            bars.append(
                Bar(
                    x=i * width,
                    y=y,
                    width=max(width - 1, 1),
                    height=h,
                    colour=STATUS_COLOURS.get(status, OTHER_COLOUR),
                    label=f"{when}: {count} {status}",
                )
            )
    return bars, dict(sorted(totals.items(), key=lambda kv: -kv[1])), tallest


@router.get("/mtls-events")
def mtls_events(ctx: Signed, request: Request) -> Response:
    if ctx.zone is None:
        raise NotFound("This API token sees no zone.")
    range_key = request.query_params.get("range", "1h")
    range_key = range_key if range_key in RANGES else "1h"
    _, seconds, interval = RANGES[range_key]
    hostname = request.query_params.get("hostname") or None
    now = int(time.time())
    since, until = now - seconds, now + 60
    store = store_of(request)
    error = None
    events: list[request_events.Event] = []
    rows: list[request_events.CountRow] = []
    hostnames: set[str] = set()
    try:
        rows_all = request_events.event_counts(
            store, ctx.principal, ctx.zone.id, since=since, until=until, interval=interval
        )
        hostnames = {r.hostname for r in rows_all}
        rows = [r for r in rows_all if hostname is None or r.hostname == hostname]
        events = request_events.recent_events(
            store, ctx.principal, ctx.zone.id, hostname=hostname, limit=50
        ).events
    except MtlsgateError as exc:
        error = plain(exc, ZONE_SSL_READ)
    bars, totals, tallest = chart(rows, since, until, interval)
    return render(
        request,
        "mtls_events.html",
        ctx,
        active="events",
        events=events,
        bars=bars,
        totals=totals,
        tallest=tallest,
        colours=STATUS_COLOURS,
        other_colour=OTHER_COLOUR,
        chart_w=CHART_W,
        chart_h=CHART_H,
        ranges=RANGES,
        range_key=range_key,
        hostname=hostname,
        hostnames=sorted(hostnames | ({hostname} if hostname else set())),
        error=error,
        when=lambda ts: datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S"),
    )
