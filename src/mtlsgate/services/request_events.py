"""Recent request events and per-minute request counts: what the edge tells the dashboard.

Each edge worker calls `record_events` about once a second (in a thread, off its event loop)
with a sample of its newest requests and the exact per-minute counts since its last call; the
store keeps about the newest `MAX_EVENTS_PER_ZONE` events of each zone (see PRUNE_EVERY) and
`COUNT_RETENTION_SECONDS` of counts. Readers (`recent_events`, `event_counts`) are scoped to
one zone the caller's token may read, by the zone each hostname belonged to when its events
were written.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.orm import Session

from mtlsgate.errors import BadRequest, quote
from mtlsgate.hostnames import HOSTNAME_NOT_IN_ZONE, in_zone, normalize_hostname
from mtlsgate.services.accounts import visible_zone
from mtlsgate.services.permissions import ZONE_SSL_READ, Principal
from mtlsgate.store.db import Store
from mtlsgate.store.models import ConfigState, DnsRecord, RequestEvent, RequestEventCount, Zone

log = logging.getLogger("mtlsgate.request_events")

MAX_EVENTS_PER_ZONE = 10_000
# A zone is cut back to MAX_EVENTS_PER_ZONE once a process has written this many events to it
# since its last cut: a zone holds at most MAX_EVENTS_PER_ZONE + PRUNE_EVERY events per writing
# process (plus one batch), exactly MAX_EVENTS_PER_ZONE right after a cut.
PRUNE_EVERY = 1000
COUNT_RETENTION_SECONDS = 7 * 86400
# A caller passing more than this per call gets its newest ones stored (the edge sends at
# most 500, every 5 s).
MAX_EVENTS_PER_CALL = 1000
MAX_PER_PAGE = 1000
MAX_COUNT_ROWS = 10_000
MAX_INTERVAL = 86400

# (minute start as Unix seconds, hostname, mTLS status, HTTP status, action)
CountKey = tuple[int, str, str, int, str]

_EVENTS: Table = RequestEvent.__table__  # type: ignore[assignment]
_COUNTS: Table = RequestEventCount.__table__  # type: ignore[assignment]
_PRUNE_LOCK_KEY = 0x6D746C65  # "mtle": one node prunes events at a time on PostgreSQL
_WORD = re.compile(r"[a-z]{1,32}")


def minute_of(ts: float) -> int:
    """The key's first element for a request at Unix time `ts`: the start of its minute."""
    second = int(ts)
    return second - second % 60


# --- writing ---------------------------------------------------------------------------------


class _ZoneCache:
    """hostname → zone id (None: no DNS record has that name), valid for one config version:
    every DNS change bumps it, so the cache is exact and a batch usually costs one PK read."""

    def __init__(self) -> None:
        self.version = -1
        self.zones: dict[str, str | None] = {}


_zone_caches: weakref.WeakKeyDictionary[Store, _ZoneCache] = weakref.WeakKeyDictionary()
_zone_caches_lock = threading.Lock()
# Per store: zone id → events this process wrote there since it last pruned that zone.
_unpruned: weakref.WeakKeyDictionary[Store, dict[str, int]] = weakref.WeakKeyDictionary()


def _zones_for(store: Store, session: Session, hosts: set[str]) -> dict[str, str | None]:
    """The zone of each hostname as the edge sees it: the zone of the DNS record with that name
    (a proxied one first, then the newest, as the edge's config loader picks)."""
    with _zone_caches_lock:
        cache = _zone_caches.get(store)
        if cache is None:
            cache = _zone_caches[store] = _ZoneCache()
    version = int(session.scalar(select(ConfigState.version).where(ConfigState.id == 1)) or 0)
    if version != cache.version:
        cache.version, cache.zones = version, {}
    missing = [h for h in hosts if h not in cache.zones]
    if missing:
        best: dict[str, tuple[bool, Any, str]] = {}
        rows = session.execute(
            select(
                DnsRecord.name, DnsRecord.proxied, DnsRecord.created_on, DnsRecord.zone_id
            ).where(DnsRecord.name.in_(missing))
        )
        for name, proxied, created_on, zone_id in rows:
            candidate = (bool(proxied), created_on, zone_id)
            if name not in best or candidate[:2] > best[name][:2]:
                best[name] = candidate
        for host in missing:
            cache.zones[host] = best[host][2] if host in best else None
    return cache.zones


def _text(value: object, limit: int) -> str:
    s = value if isinstance(value, str) else ("" if value is None else str(value))
    if "\x00" in s:  # PostgreSQL refuses NUL in text
        s = s.replace("\x00", "")
    return s[:limit]


def _host(value: object) -> str:
    return _text(value, 253).lower().rstrip(".")


# Written through the driver directly: building SQLAlchemy statements for 200 rows cost more
# than the database work itself (about 8 of 11 ms per batch when measured).
_EVENT_COLUMNS = (
    "zone_id, node_id, ts_ms, hostname, client, method, uri, status, mtls, fingerprint, rule, "
    "action, ms, origin_ms"
)
_COUNT_COLUMNS = 'minute, hostname, mtls, status, action, zone_id, "count"'
_COUNT_CONFLICT = (
    ' ON CONFLICT (minute, hostname, mtls, status, action) DO UPDATE SET "count" = '
    'request_event_counts."count" + excluded."count"'
)


_EVENTS_SQLITE = f"INSERT INTO request_events ({_EVENT_COLUMNS}) VALUES ({', '.join(['?'] * 14)})"
_COUNTS_SQLITE = (
    f"INSERT INTO request_event_counts ({_COUNT_COLUMNS}) VALUES ({', '.join(['?'] * 7)})"
    + _COUNT_CONFLICT
)
# PostgreSQL: the rows as one JSON parameter. Per-row parameters (executemany, a long VALUES
# list, or arrays for unnest) cost psycopg 30-50 µs of CPU a row; json.dumps costs ~2.
_EVENT_TYPES = (
    "zone_id text, node_id text, ts_ms bigint, hostname text, client text, method text, "
    "uri text, status int, mtls text, fingerprint text, rule text, action text, ms float8, "
    "origin_ms float8"
)
_COUNT_TYPES = (
    'minute bigint, hostname text, mtls text, status int, action text, zone_id text, "count" bigint'
)
_EVENTS_PG = (
    f"INSERT INTO request_events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} "
    f"FROM json_to_recordset(%s::json) AS t({_EVENT_TYPES})"
)
_COUNTS_PG = (
    f"INSERT INTO request_event_counts ({_COUNT_COLUMNS}) SELECT {_COUNT_COLUMNS} "
    f"FROM json_to_recordset(%s::json) AS t({_COUNT_TYPES})" + _COUNT_CONFLICT
)
_EVENT_NAMES = tuple(c.strip() for c in _EVENT_COLUMNS.split(","))
_COUNT_NAMES = tuple(c.strip().strip('"') for c in _COUNT_COLUMNS.split(","))


def _json_rows(names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    return json.dumps([dict(zip(names, row, strict=True)) for row in rows], allow_nan=False)


_TEXT_FIELDS = (
    ("client", 64),
    ("method", 32),
    ("uri", 2048),
    ("mtls", 32),
    ("fingerprint", 64),
    ("rule", 64),
    ("action", 32),
)


def _event_row(node_id: str, zone_id: str, host: str, e: Mapping[str, Any]) -> tuple[Any, ...]:
    # Plain gets and one concatenation: this runs 200 times a second per worker.
    get = e.get
    client = get("client") or ""
    method = get("method") or ""
    uri = get("uri") or ""
    mtls = get("mtls") or ""
    fingerprint = get("fingerprint") or ""
    rule = get("rule") or ""
    action = get("action") or ""
    try:
        clean = "\x00" not in client + method + uri + mtls + fingerprint + rule + action
    except TypeError:
        clean = False
    if not clean:  # a non-string or a NUL somewhere: the careful, slower path
        client, method, uri, mtls, fingerprint, rule, action = (
            _text(get(k), n) for k, n in _TEXT_FIELDS
        )
    origin_ms = get("origin_ms")
    ms = float(get("ms") or 0.0)
    if origin_ms is not None:
        origin_ms = float(origin_ms)
        if not math.isfinite(origin_ms):
            raise ValueError("origin_ms is not a finite number")
    if not math.isfinite(ms):
        raise ValueError("ms is not a finite number")
    return (
        zone_id,
        node_id,
        round(float(e["ts"]) * 1000),
        host,
        client[:64],
        method[:32],
        uri[:2048],
        int(e["status"]),
        mtls[:32],
        fingerprint[:64],
        rule[:64],
        action[:32],
        ms,
        origin_ms,
    )


def record_events(
    store: Store,
    node_id: str,
    events: Sequence[Mapping[str, Any]],
    counts: Mapping[CountKey, int],
    *,
    now: float | None = None,
) -> None:
    """Store a sample of recent requests and add exact per-minute counts, in one transaction.

    `events` are the edge's request records (`ts`, `host`, `client`, `method`, `uri`,
    `status`, `mtls`, `fingerprint`, `rule`, `action`, `ms`, optional `origin_ms`), oldest
    first; `counts` maps (minute start, hostname, mtls, status, action) to the number of
    requests since the previous call (`minute_of(ts)` gives the minute). Hostnames that are not
    a DNS record of any zone are dropped (no reader could see them); a malformed record is
    skipped, never fatal. Then each zone written to is cut to its newest MAX_EVENTS_PER_ZONE
    events, and counts older than COUNT_RETENTION_SECONDS are deleted.
    """
    if not events and not counts:
        return
    events = events[-MAX_EVENTS_PER_CALL:]
    node = _text(node_id, 64)
    event_hosts = [_host(e.get("host")) for e in events]
    hosts = set(event_hosts) | {_host(k[1]) for k in counts}
    hosts.discard("")
    moment = time.time() if now is None else now
    with store.transaction() as session:
        zones = _zones_for(store, session, hosts)
        event_rows: list[tuple[Any, ...]] = []
        for host, e in zip(event_hosts, events, strict=True):
            zone_id = zones.get(host)
            if zone_id is None:
                continue
            try:
                event_rows.append(_event_row(node, zone_id, host, e))
            except (KeyError, TypeError, ValueError):
                log.warning("skipping a malformed request event from %s", node)
        merged: dict[tuple[int, str, str, int, str], int] = {}
        for key, n in counts.items():
            try:
                minute, raw_host, mtls, status, action = key
                host = _host(raw_host)
                k = (minute_of(int(minute)), host, _text(mtls, 32), int(status), _text(action, 32))
                n = int(n)
            except (TypeError, ValueError):
                log.warning("skipping a malformed request count from %s", node)
                continue
            if n > 0 and zones.get(host) is not None:
                merged[k] = merged.get(k, 0) + n
        count_rows = [(*k, zones[k[1]], n) for k, n in sorted(merged.items())]
        conn = session.connection()
        if store.is_postgres:
            # Telemetry: losing the last second of it in a database crash is fine, waiting for
            # the WAL flush on every write is not.
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            if event_rows:
                conn.exec_driver_sql(_EVENTS_PG, (_json_rows(_EVENT_NAMES, event_rows),))
            if count_rows:
                # In key order: concurrent upserts from several nodes lock rows in one order.
                conn.exec_driver_sql(_COUNTS_PG, (_json_rows(_COUNT_NAMES, count_rows),))
        else:
            if event_rows:
                conn.exec_driver_sql(_EVENTS_SQLITE, event_rows)
            if count_rows:
                conn.exec_driver_sql(_COUNTS_SQLITE, count_rows)
        _prune(store, session, _zones_to_prune(store, event_rows), moment)


def _zones_to_prune(store: Store, event_rows: list[tuple[Any, ...]]) -> set[str]:
    """Zones this process has added PRUNE_EVERY events to since it last cut them: finding the
    cut reads MAX_EVENTS_PER_ZONE index entries, which is not worth doing every second."""
    with _zone_caches_lock:
        pending = _unpruned.get(store)
        if pending is None:
            pending = _unpruned[store] = {}
    for row in event_rows:
        pending[row[0]] = pending.get(row[0], 0) + 1
    return {z for z, n in pending.items() if n >= PRUNE_EVERY}


def _prune(store: Store, session: Session, zone_ids: set[str], now: float) -> None:
    session.execute(
        delete(_COUNTS).where(_COUNTS.c.minute < minute_of(now - COUNT_RETENTION_SECONDS))
    )
    if not zone_ids:
        return
    if store.is_postgres and not session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _PRUNE_LOCK_KEY}
    ):
        return  # another node is pruning right now; the next call catches up
    for zone_id in sorted(zone_ids):
        # The id of the newest event that no longer fits; this and every older one go.
        cut = session.scalar(
            select(_EVENTS.c.id)
            .where(_EVENTS.c.zone_id == zone_id)
            .order_by(_EVENTS.c.id.desc())
            .offset(MAX_EVENTS_PER_ZONE)
            .limit(1)
        )
        if cut is not None:
            session.execute(
                delete(_EVENTS).where(_EVENTS.c.zone_id == zone_id, _EVENTS.c.id <= cut)
            )
        _unpruned[store][zone_id] = 0


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    id: int
    ts: float
    hostname: str
    client: str
    method: str
    uri: str
    status: int
    mtls: str
    fingerprint: str
    rule: str
    action: str
    ms: float
    origin_ms: float | None
    node_id: str


@dataclass(frozen=True)
class EventPage:
    events: list[Event]
    total_count: int


@dataclass(frozen=True)
class CountRow:
    start: int  # Unix seconds: the bucket's first minute
    hostname: str
    mtls: str
    status: int
    action: str
    count: int


def _readable_zone(session: Session, principal: Principal, zone_id: str) -> Zone:
    zone = visible_zone(session, principal, zone_id)
    principal.require(ZONE_SSL_READ, account_id=zone.account_id, zone_id=zone.id)
    return zone


def _hostname_filter(raw: str | None, zone: Zone) -> str | None:
    if raw is None:
        return None
    try:
        host = normalize_hostname(raw)
    except BadRequest as exc:
        raise BadRequest(exc.message, code=exc.code, pointer="hostname") from None
    if not in_zone(host, zone.name):
        raise BadRequest(
            f"hostname {host} is not in zone {zone.name}",
            code=HOSTNAME_NOT_IN_ZONE,
            pointer="hostname",
        )
    return host


def _mtls_filter(raw: str | Sequence[str] | None) -> list[str] | None:
    if raw is None:
        return None
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    values = [p.strip().lower() for p in parts if p.strip()]
    bad = [v for v in values if not _WORD.fullmatch(v)]
    if bad or not values:
        raise BadRequest(
            f"mtls must be one or more comma-separated statuses such as ok, absent, untrusted, "
            f"expired, notyetvalid, revoked, invalid or none; got {quote(bad[0] if bad else raw)}",
            pointer="mtls",
        )
    return values


def recent_events(
    store: Store,
    principal: Principal,
    zone_id: str,
    *,
    hostname: str | None = None,
    mtls: str | Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
    before: int | None = None,
) -> EventPage:
    """The zone's sampled events, newest first (by arrival in the store). `before` (an event
    id) pages stably while new events arrive; `offset` pages by number."""
    if not 1 <= limit <= MAX_PER_PAGE:
        raise BadRequest(f"per_page must be between 1 and {MAX_PER_PAGE}", pointer="per_page")
    if offset < 0:
        raise BadRequest("page must be 1 or more", pointer="page")
    if before is not None and before < 1:
        raise BadRequest("before must be an event id (a positive integer)", pointer="before")
    with store.transaction() as session:
        zone = _readable_zone(session, principal, zone_id)
        host = _hostname_filter(hostname, zone)
        statuses = _mtls_filter(mtls)
        where = [RequestEvent.zone_id == zone.id]
        if host is not None:
            where.append(RequestEvent.hostname == host)
        if statuses is not None:
            where.append(RequestEvent.mtls.in_(statuses))
        if before is not None:
            where.append(RequestEvent.id < before)
        total = int(session.scalar(select(func.count()).select_from(_EVENTS).where(*where)) or 0)
        rows = session.scalars(
            select(RequestEvent)
            .where(*where)
            .order_by(RequestEvent.id.desc())
            .offset(offset)
            .limit(limit)
        )
        events = [
            Event(
                id=r.id,
                ts=r.ts_ms / 1000,
                hostname=r.hostname,
                client=r.client,
                method=r.method,
                uri=r.uri,
                status=r.status,
                mtls=r.mtls,
                fingerprint=r.fingerprint,
                rule=r.rule,
                action=r.action,
                ms=r.ms,
                origin_ms=r.origin_ms,
                node_id=r.node_id,
            )
            for r in rows
        ]
    return EventPage(events, total)


def event_counts(
    store: Store,
    principal: Principal,
    zone_id: str,
    *,
    since: int,
    until: int,
    hostname: str | None = None,
    interval: int = 60,
) -> list[CountRow]:
    """Exact request counts of the zone with minute in [since, until), summed into buckets of
    `interval` seconds aligned on the Unix epoch, per (hostname, mtls, status, action)."""
    if interval < 60 or interval % 60 or interval > MAX_INTERVAL:
        raise BadRequest(
            f"interval must be a multiple of 60 seconds between 60 and {MAX_INTERVAL}, "
            f"got {interval}",
            pointer="interval",
        )
    if until <= since:
        raise BadRequest("until must be later than since", pointer="until")
    with store.transaction() as session:
        zone = _readable_zone(session, principal, zone_id)
        host = _hostname_filter(hostname, zone)
        c = _COUNTS.c
        bucket = (c.minute - c.minute % interval).label("bucket")
        query = (
            select(bucket, c.hostname, c.mtls, c.status, c.action, func.sum(c["count"]))
            .where(c.zone_id == zone.id, c.minute >= minute_of(since), c.minute < until)
            .group_by(bucket, c.hostname, c.mtls, c.status, c.action)
            .order_by(bucket, c.hostname, c.mtls, c.status, c.action)
            .limit(MAX_COUNT_ROWS + 1)
        )
        if host is not None:
            query = query.where(c.hostname == host)
        rows = [
            CountRow(int(b), h, m, int(s), a, int(n)) for b, h, m, s, a, n in session.execute(query)
        ]
    if len(rows) > MAX_COUNT_ROWS:
        raise BadRequest(
            f"more than {MAX_COUNT_ROWS} rows: use a larger interval, a shorter range or a "
            "hostname",
            pointer="interval",
        )
    return rows
