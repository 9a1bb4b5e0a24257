"""services/request_events.py on both backends: events and counts written as the edge writes
them, counts added up by upsert, the per-zone bound and the count retention, and readers that
see only the zones their token may read (a second account made by `mtlsgate account create`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mtlsgate.errors import BadRequest, Forbidden
from mtlsgate.services import request_events as svc
from mtlsgate.services.common import utcnow
from mtlsgate.services.dns_records import create_record
from mtlsgate.services.permissions import Principal
from mtlsgate.services.tokens import authenticate
from mtlsgate.settings import Settings
from mtlsgate.store.db import Store
from mtlsgate.store.models import RequestEvent, RequestEventCount
from tests.harness import Gateway, init_gateway

T0 = 1_764_200_000.0  # 20 s into the minute that starts at 1764199980


@dataclass
class World:
    gw: Gateway
    store: Store
    a: Principal  # account A's admin: zones example.com and other.org
    b: Principal  # account B's admin: zone sub.example.com
    zone_a: str
    zone_a2: str
    zone_b: str

    def principal(self, token: str) -> Principal:
        return _principal(self.store, token)


def _principal(store: Store, token: str) -> Principal:
    with store.transaction() as session:
        p = authenticate(session, token)
    assert p is not None
    return p


def _record(store: Store, principal: Principal, zone_id: str, name: str) -> None:
    with store.transaction() as session:
        create_record(
            session,
            principal,
            zone_id,
            {"type": "A", "name": name, "content": "127.0.0.1", "proxied": True},
            now=utcnow(),
        )


@pytest.fixture
def world(tmp_path: Path, database_url: str | None) -> Iterator[World]:
    gw = init_gateway(tmp_path / "data", database_url, zones=("example.com", "other.org"))
    other = gw.cli_json("account", "create", "--name", "tenant-b", "--zone", "sub.example.com")
    store = Store(Settings.load(gw.data_dir, database_url).database_url)
    w = World(
        gw,
        store,
        a=_principal(store, gw.token),
        b=_principal(store, other["api_token"]),
        zone_a=gw.zones["example.com"],
        zone_a2=gw.zones["other.org"],
        zone_b=other["zones"]["sub.example.com"],
    )
    _record(store, w.a, w.zone_a, "api.example.com")
    _record(store, w.a, w.zone_a, "*.apps.example.com")
    _record(store, w.a, w.zone_a2, "www.other.org")
    # Account A owns a name inside account B's zone name: its events stay A's (the DNS record
    # decides, as at the edge, not the longest zone name).
    _record(store, w.a, w.zone_a, "x.sub.example.com")
    _record(store, w.b, w.zone_b, "y.sub.example.com")
    try:
        yield w
    finally:
        store.dispose()


def event(host: str, i: int = 0, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "ts": T0 + i / 1000,
        "host": host,
        "client": "127.0.0.1",
        "method": "GET",
        "uri": f"/r{i}",
        "status": 403,
        "mtls": "untrusted",
        "fingerprint": "ab" * 32,
        "rule": "c" * 32,
        "action": "block",
        "ms": 1.2,
    }
    e.update(extra)
    return e


MINUTE = svc.minute_of(T0)


def test_record_and_read_back(world: World) -> None:
    w = world
    events = [
        event("api.example.com", 1, origin_ms=0.8, status=200, mtls="ok", action="forward"),
        event("api.example.com", 2, fingerprint="", rule=""),
        event("API.Example.com.", 3),  # the edge's hostnames are lowercase; tolerate others
        event("*.apps.example.com", 4, mtls="absent"),
        event("www.other.org", 5),
        event("unknown.example.net", 6),  # no DNS record anywhere: dropped
        event("", 7),  # no hostname: dropped
        {"host": "api.example.com", "ts": "not a number"},  # malformed: skipped, not fatal
    ]
    counts = {
        (MINUTE, "api.example.com", "untrusted", 403, "block"): 7,
        (MINUTE, "api.example.com", "ok", 200, "forward"): 3,
        (MINUTE + 17, "www.other.org", "untrusted", 403, "block"): 2,  # floored to its minute
        (MINUTE, "unknown.example.net", "ok", 200, "forward"): 5,  # dropped
    }
    svc.record_events(w.store, "node-1:42", events, counts, now=T0)

    page = svc.recent_events(w.store, w.a, w.zone_a)
    assert page.total_count == 4
    assert [e.uri for e in page.events] == ["/r4", "/r3", "/r2", "/r1"]  # newest first
    first = page.events[-1]
    assert first.hostname == "api.example.com" and first.status == 200 and first.mtls == "ok"
    assert first.origin_ms == 0.8 and first.ms == 1.2 and first.node_id == "node-1:42"
    assert abs(first.ts - (T0 + 0.001)) < 1e-6
    assert page.events[0].hostname == "*.apps.example.com"
    assert page.events[1].hostname == "api.example.com"
    assert page.events[2].fingerprint == "" and page.events[2].rule == ""

    other = svc.recent_events(w.store, w.a, w.zone_a2)
    assert [e.hostname for e in other.events] == ["www.other.org"]

    only = svc.recent_events(w.store, w.a, w.zone_a, hostname="API.example.com", mtls="untrusted")
    assert [e.uri for e in only.events] == ["/r3", "/r2"]
    assert svc.recent_events(w.store, w.a, w.zone_a, mtls="ok,absent").total_count == 2
    assert svc.recent_events(w.store, w.a, w.zone_a, mtls=["absent"]).total_count == 1
    paged = svc.recent_events(w.store, w.a, w.zone_a, limit=2, offset=2)
    assert [e.uri for e in paged.events] == ["/r2", "/r1"] and paged.total_count == 4
    cursor = page.events[1].id
    older = svc.recent_events(w.store, w.a, w.zone_a, before=cursor)
    assert [e.uri for e in older.events] == ["/r2", "/r1"] and older.total_count == 2

    rows = svc.event_counts(w.store, w.a, w.zone_a, since=MINUTE, until=MINUTE + 60)
    assert [(r.start, r.hostname, r.mtls, r.status, r.action, r.count) for r in rows] == [
        (MINUTE, "api.example.com", "ok", 200, "forward", 3),
        (MINUTE, "api.example.com", "untrusted", 403, "block", 7),
    ]
    rows2 = svc.event_counts(w.store, w.a, w.zone_a2, since=MINUTE, until=MINUTE + 60)
    assert [(r.start, r.count) for r in rows2] == [(MINUTE, 2)]
    with w.store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(RequestEventCount)) == 3


def test_counts_add_up_across_calls_and_nodes(world: World) -> None:
    w = world
    key = (MINUTE, "api.example.com", "absent", 403, "block")
    svc.record_events(w.store, "n1:1", [], {key: 5}, now=T0)
    svc.record_events(w.store, "n2:1", [], {key: 6}, now=T0)
    svc.record_events(
        w.store,
        "n1:1",
        [event("api.example.com")],
        {key: 1, (MINUTE + 60, "api.example.com", "absent", 403, "block"): 4},
        now=T0,
    )
    svc.record_events(w.store, "n1:1", [], {}, now=T0)  # nothing to do: no transaction
    rows = svc.event_counts(w.store, w.a, w.zone_a, since=MINUTE, until=MINUTE + 120)
    assert [(r.start, r.count) for r in rows] == [(MINUTE, 12), (MINUTE + 60, 4)]
    # Buckets of 5 minutes, aligned on the epoch, sum them.
    bucket = MINUTE - MINUTE % 300
    five = svc.event_counts(w.store, w.a, w.zone_a, since=bucket, until=bucket + 600, interval=300)
    assert (MINUTE - bucket, bucket) == (180, 1_764_199_800)  # both minutes in one bucket
    assert [(r.start, r.count) for r in five] == [(bucket, 16)]
    # since/until select whole minutes: [since, until).
    assert (
        svc.event_counts(w.store, w.a, w.zone_a, since=MINUTE + 60, until=MINUTE + 61)[0].count == 4
    )
    assert svc.event_counts(w.store, w.a, w.zone_a, since=MINUTE - 60, until=MINUTE) == []


def test_the_bound_holds_per_zone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w = world
    monkeypatch.setattr(svc, "MAX_EVENTS_PER_ZONE", 150)
    monkeypatch.setattr(svc, "PRUNE_EVERY", 1)  # cut on every write
    svc.record_events(w.store, "n:1", [event("www.other.org", i) for i in range(20)], {}, now=T0)
    for batch in range(5):
        svc.record_events(
            w.store,
            "n:1",
            [event("api.example.com", batch * 100 + i) for i in range(100)],
            {},
            now=T0,
        )
    with w.store.transaction() as session:
        per_zone = dict(
            session.execute(
                select(RequestEvent.zone_id, func.count()).group_by(RequestEvent.zone_id)
            ).all()
        )
    assert per_zone == {w.zone_a: 150, w.zone_a2: 20}
    page = svc.recent_events(w.store, w.a, w.zone_a, limit=1000)
    # The newest survive, in order.
    assert [e.uri for e in page.events] == [f"/r{i}" for i in range(499, 349, -1)]


def test_the_real_bound_and_count_retention(world: World) -> None:
    w = world

    def write(batch: int) -> None:
        svc.record_events(
            w.store,
            "n:1",
            [event("api.example.com", batch * 200 + i) for i in range(200)],
            {(MINUTE, "api.example.com", "ok", 200, "forward"): 1},
            now=T0,
        )

    def stored() -> int:
        return svc.recent_events(w.store, w.a, w.zone_a).total_count

    assert svc.PRUNE_EVERY % 200 == 0
    n = (svc.MAX_EVENTS_PER_ZONE + svc.PRUNE_EVERY) // 200
    for batch in range(n - 1):
        write(batch)
    # Between cuts a zone may hold up to PRUNE_EVERY more events (per writing process) ...
    assert svc.MAX_EVENTS_PER_ZONE < stored() <= svc.MAX_EVENTS_PER_ZONE + svc.PRUNE_EVERY
    write(n - 1)
    # ... and exactly the newest MAX_EVENTS_PER_ZONE right after one.
    assert stored() == svc.MAX_EVENTS_PER_ZONE
    newest = svc.recent_events(w.store, w.a, w.zone_a, limit=1).events[0]
    assert newest.uri == f"/r{n * 200 - 1}"
    # A week later the old counts go with the next write, whatever zone it is for.
    later = T0 + svc.COUNT_RETENTION_SECONDS + 120
    svc.record_events(
        w.store,
        "n:1",
        [],
        {(svc.minute_of(later), "www.other.org", "ok", 200, "forward"): 1},
        now=later,
    )
    assert svc.event_counts(w.store, w.a, w.zone_a, since=MINUTE, until=MINUTE + 60) == []
    assert len(svc.event_counts(w.store, w.a, w.zone_a2, since=0, until=int(later) + 60)) == 1


def test_scope_between_accounts_and_tokens(world: World) -> None:
    w = world
    svc.record_events(
        w.store,
        "n:1",
        [event("x.sub.example.com", 1), event("y.sub.example.com", 2), event("api.example.com", 3)],
        {
            (MINUTE, "x.sub.example.com", "ok", 200, "forward"): 1,
            (MINUTE, "y.sub.example.com", "ok", 200, "forward"): 2,
        },
        now=T0,
    )
    a = svc.recent_events(w.store, w.a, w.zone_a)
    assert {e.hostname for e in a.events} == {"x.sub.example.com", "api.example.com"}
    b = svc.recent_events(w.store, w.b, w.zone_b)
    assert [e.hostname for e in b.events] == ["y.sub.example.com"]
    b_counts = svc.event_counts(w.store, w.b, w.zone_b, since=MINUTE, until=MINUTE + 60)
    assert [(r.hostname, r.count) for r in b_counts] == [("y.sub.example.com", 2)]
    # Neither account reads the other's zone, and a hostname filter cannot reach across.
    for principal, zone in ((w.b, w.zone_a), (w.a, w.zone_b)):
        with pytest.raises(Forbidden):
            svc.recent_events(w.store, principal, zone)
        with pytest.raises(Forbidden):
            svc.event_counts(w.store, principal, zone, since=MINUTE, until=MINUTE + 60)
    with pytest.raises(BadRequest) as info:
        svc.recent_events(w.store, w.b, w.zone_b, hostname="api.example.com")
    assert info.value.code == 1004
    # Tokens: a zone-scoped read of example.com sees it, not other.org; DNS Read alone sees none.
    reader = w.gw.cli_json(
        "token", "create", "--permission", "SSL and Certificates Read", "--zone", "example.com"
    )
    r = w.principal(reader["api_token"])
    assert svc.recent_events(w.store, r, w.zone_a).total_count == 2
    with pytest.raises(Forbidden):
        svc.recent_events(w.store, r, w.zone_a2)
    dns_only = w.gw.cli_json("token", "create", "--permission", "DNS Read")
    with pytest.raises(Forbidden):
        svc.recent_events(w.store, w.principal(dns_only["api_token"]), w.zone_a)


def test_bad_reader_arguments(world: World) -> None:
    w = world
    cases: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "per_page"),
        ({"limit": svc.MAX_PER_PAGE + 1}, "per_page"),
        ({"offset": -1}, "page"),
        ({"before": 0}, "before"),
        ({"mtls": "not ok"}, "mtls"),
        ({"mtls": ","}, "mtls"),
        ({"hostname": "bad_label.example.com"}, "not a valid hostname"),
        ({"hostname": "www.other.org"}, "not in zone example.com"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(BadRequest) as info:
            svc.recent_events(w.store, w.a, w.zone_a, **kwargs)
        assert fragment in info.value.message or info.value.pointer == fragment, kwargs
    for kwargs, fragment in [
        ({"since": 100, "until": 100}, "until must be later"),
        ({"since": 0, "until": 100, "interval": 90}, "multiple of 60"),
        ({"since": 0, "until": 100, "interval": 0}, "multiple of 60"),
        ({"since": 0, "until": 100, "interval": 2 * 86400}, "multiple of 60"),
    ]:
        with pytest.raises(BadRequest) as info:
            svc.event_counts(w.store, w.a, w.zone_a, **kwargs)
        assert fragment in info.value.message


def test_text_is_cut_to_the_columns_and_nul_removed(world: World) -> None:
    w = world
    svc.record_events(
        w.store,
        "n" * 100,
        [event("api.example.com", 1, uri="/a\x00b" + "x" * 5000, method="G" * 50, status="404")],
        {},
        now=T0,
    )
    (e,) = svc.recent_events(w.store, w.a, w.zone_a).events
    assert e.uri.startswith("/abx") and len(e.uri) == 2048
    assert e.method == "G" * 32 and e.status == 404 and e.node_id == "n" * 64


def test_concurrent_writers_lose_no_count(world: World) -> None:
    """Several nodes writing the same keys at once (row locks on PostgreSQL, one writer at a
    time on SQLite): every count arrives, none deadlocks."""
    w = world
    hosts = ["api.example.com", "www.other.org", "x.sub.example.com"]
    keys = [(MINUTE, h, m, 403, "block") for h in hosts for m in ("absent", "untrusted")]

    def node(n: int) -> None:
        for i in range(15):
            mine = keys[n % len(keys) :] + keys[: n % len(keys)]  # each node in its own order
            svc.record_events(
                w.store,
                f"node-{n}",
                [event(hosts[i % 3], i)],
                {k: 1 for k in reversed(mine)} if n % 2 else dict.fromkeys(mine, 1),
                now=T0,
            )

    threads = [threading.Thread(target=node, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with w.store.transaction() as session:
        totals = session.execute(select(RequestEventCount.hostname, RequestEventCount.count)).all()
        n_events = session.scalar(select(func.count()).select_from(RequestEvent))
    assert sorted(totals) == sorted((h, 4 * 15) for h in hosts for _ in range(2))
    assert n_events == 4 * 15
