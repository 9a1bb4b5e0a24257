"""/zones/{zone_id}/mtls_events through a real `mtlsgate serve`: events written into its store
as an edge worker writes them (record_events), read back over HTTP in the v4 envelope, with
filters, pages, the counts chart, clear 400s, and 403 for tokens that may not read them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from mtlsgate.services import request_events as svc
from mtlsgate.settings import Settings
from mtlsgate.store.db import Store
from tests.harness import Gateway

T0 = 1_764_200_000.0
MINUTE = svc.minute_of(T0)


@dataclass
class Setup:
    gw: Gateway
    c: httpx.Client
    store: Store
    zone: str  # example.com
    other: str  # other.org, same account

    def events(self, zone: str | None = None, **params: Any) -> httpx.Response:
        return self.c.get(f"/zones/{zone or self.zone}/mtls_events", params=params)

    def counts(self, zone: str | None = None, **params: Any) -> httpx.Response:
        return self.c.get(f"/zones/{zone or self.zone}/mtls_events/counts", params=params)


def _dns(c: httpx.Client, zone: str, name: str) -> None:
    r = c.post(
        f"/zones/{zone}/dns_records",
        json={"type": "A", "name": name, "content": "127.0.0.1", "proxied": True},
    )
    assert r.status_code == 200, r.text


def event(host: str, i: int, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "ts": T0 + i,
        "host": host,
        "client": "192.0.2.7",
        "method": "GET",
        "uri": f"/r{i}",
        "status": 403,
        "mtls": "untrusted",
        "fingerprint": "ab" * 32,
        "rule": "c" * 32,
        "action": "block",
        "ms": 1.5,
    }
    e.update(extra)
    return e


@pytest.fixture
def setup(gateway: Gateway) -> Iterator[Setup]:
    store = Store(Settings.load(gateway.data_dir, gateway.database_url).database_url)
    with gateway.http() as c:
        zone, other = gateway.zones["example.com"], gateway.zones["other.org"]
        _dns(c, zone, "api.example.com")
        _dns(c, zone, "app.example.com")
        _dns(c, other, "www.other.org")
        events = [
            event(
                "api.example.com",
                0,
                status=200,
                mtls="ok",
                action="forward",
                rule="",
                **{"origin_ms": 0.9},
            ),
            event("api.example.com", 1, mtls="absent", fingerprint=""),
            event("app.example.com", 2, mtls="expired"),
            event("api.example.com", 3),
            event("www.other.org", 4),
        ]
        counts = {
            (MINUTE, "api.example.com", "ok", 200, "forward"): 100,
            (MINUTE, "api.example.com", "absent", 403, "block"): 7,
            (MINUTE + 60, "api.example.com", "absent", 403, "block"): 3,
            (MINUTE, "app.example.com", "expired", 403, "block"): 2,
            (MINUTE, "www.other.org", "untrusted", 403, "block"): 50,
        }
        svc.record_events(store, "edge-1:100", events, counts, now=T0)
        try:
            yield Setup(gateway, c, store, zone, other)
        finally:
            store.dispose()


def refused(r: httpx.Response, status: int, fragment: str, code: int | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    message = " ".join(e["message"] for e in body["errors"])
    assert fragment in message, message
    if code is not None:
        assert body["errors"][0]["code"] == code, body


def test_events_in_the_envelope(setup: Setup) -> None:
    s = setup
    r = s.events()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    assert body["result_info"] == {
        "page": 1,
        "per_page": 50,
        "count": 4,
        "total_count": 4,
        "total_pages": 1,
    }
    assert [e["uri"] for e in body["result"]] == ["/r3", "/r2", "/r1", "/r0"]
    first = body["result"][-1]
    assert first == {
        "id": first["id"],
        "occurred_at": "2025-11-26T23:33:20.000Z",
        "ts": T0,
        "hostname": "api.example.com",
        "client": "192.0.2.7",
        "method": "GET",
        "uri": "/r0",
        "status": 200,
        "mtls": "ok",
        "fingerprint": "ab" * 32,
        "rule": None,
        "action": "forward",
        "ms": 1.5,
        "origin_ms": 0.9,
        "node_id": "edge-1:100",
    }
    assert body["result"][2]["fingerprint"] is None and body["result"][2]["origin_ms"] is None

    # Filters, pages and the stable `before` cursor.
    assert [e["uri"] for e in s.events(hostname="API.example.com").json()["result"]] == [
        "/r3",
        "/r1",
        "/r0",
    ]
    assert [e["mtls"] for e in s.events(mtls="absent,expired").json()["result"]] == [
        "expired",
        "absent",
    ]
    page2 = s.events(per_page=3, page=2).json()
    assert [e["uri"] for e in page2["result"]] == ["/r0"]
    assert page2["result_info"] == {
        "page": 2,
        "per_page": 3,
        "count": 1,
        "total_count": 4,
        "total_pages": 2,
    }
    assert s.events(page=9).json()["result"] == []  # past the end: empty, not an error
    cursor = body["result"][1]["id"]
    assert [e["uri"] for e in s.events(before=cursor).json()["result"]] == ["/r1", "/r0"]

    # The other zone of the same account has its own events only.
    other = s.events(zone=s.other).json()
    assert [e["hostname"] for e in other["result"]] == ["www.other.org"]


def test_counts_chart(setup: Setup) -> None:
    s = setup
    r = s.counts(since=MINUTE, until=MINUTE + 120)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["since"] == "2025-11-26T23:33:00.000Z"
    assert result["until"] == "2025-11-26T23:35:00.000Z"
    assert result["interval"] == 60
    assert result["totals"] == {
        "requests": 112,
        "mtls": {"ok": 100, "absent": 10, "expired": 2},
        "status": {"200": 100, "403": 12},
        "action": {"forward": 100, "block": 12},
    }
    assert result["timeseries"][0] == {
        "since": "2025-11-26T23:33:00.000Z",
        "until": "2025-11-26T23:34:00.000Z",
        "hostname": "api.example.com",
        "mtls": "absent",
        "status": 403,
        "action": "block",
        "requests": 7,
    }
    assert len(result["timeseries"]) == 4

    # RFC 3339 times, a hostname, 5-minute buckets.
    r = s.counts(
        since="2025-11-26T23:30:00Z",
        until="2025-11-27T00:40:00+01:00",
        hostname="api.example.com",
        interval=300,
    )
    assert r.status_code == 200, r.text
    series = r.json()["result"]["timeseries"]
    assert [(p["since"], p["mtls"], p["requests"]) for p in series] == [
        ("2025-11-26T23:30:00.000Z", "absent", 10),
        ("2025-11-26T23:30:00.000Z", "ok", 100),
    ]
    # Default range: the last 24 hours, which these 2025 counts are not in.
    now = s.counts().json()["result"]
    assert now["timeseries"] == [] and now["totals"]["requests"] == 0

    other = s.counts(zone=s.other, since=MINUTE, until=MINUTE + 60).json()["result"]
    assert [p["hostname"] for p in other["timeseries"]] == ["www.other.org"]


def test_bad_parameters(setup: Setup) -> None:
    s = setup
    refused(s.events(per_page=0), 400, "per_page must be between 1 and 1000", code=1001)
    refused(s.events(per_page=1001), 400, "per_page must be between 1 and 1000")
    refused(s.events(per_page="ten"), 400, "per_page", code=1001)
    refused(s.events(page=0), 400, "page must be between 1 and")
    refused(s.events(page=10**30), 400, "page")
    refused(s.events(before=0), 400, "before must be an event id")
    refused(s.events(before="x"), 400, "before")
    refused(s.events(mtls="not ok"), 400, "mtls must be one or more comma-separated statuses")
    refused(s.events(hostname="www.other.org"), 400, "not in zone example.com", code=1004)
    refused(s.events(hostname="-bad-.example.com"), 400, "not a valid hostname", code=1003)
    refused(s.counts(since="yesterday"), 400, "since must be Unix seconds or an RFC 3339 time")
    refused(s.counts(until="2025-11-27T10:00:00"), 400, "until must be Unix seconds")  # no zone
    refused(s.counts(since=10**15), 400, "since must be")
    refused(s.counts(since=200, until=100), 400, "until must be later than since")
    refused(s.counts(interval=90), 400, "interval must be a multiple of 60")
    refused(s.counts(interval="1h"), 400, "interval must be a whole number of seconds")
    refused(s.counts(hostname="www.other.org"), 400, "not in zone example.com")
    refused(
        s.c.get("/zones/not-a-zone/mtls_events"), 400, "perhaps your object identifier is invalid"
    )
    refused(s.c.post(f"/zones/{s.zone}/mtls_events"), 405, "Method POST not available")


def test_permissions_and_tenancy(setup: Setup) -> None:
    s = setup
    gw = s.gw

    def as_token(token: str, zone: str, path: str = "") -> httpx.Response:
        with gw.http(token) as c:
            return c.get(f"/zones/{zone}/mtls_events{path}")

    dns_only = gw.cli_json("token", "create", "--permission", "DNS Read")["api_token"]
    refused(as_token(dns_only, s.zone), 403, "Authentication error", code=10000)
    refused(as_token(dns_only, s.zone, "/counts"), 403, "Authentication error", code=10000)

    zone_reader = gw.cli_json(
        "token", "create", "--permission", "SSL and Certificates Read", "--zone", "example.com"
    )["api_token"]
    assert as_token(zone_reader, s.zone).json()["result_info"]["total_count"] == 4
    refused(as_token(zone_reader, s.other), 403, "Authentication error", code=10000)
    # Write implies Read, as for every permission group.
    writer = gw.cli_json("token", "create", "--permission", "SSL and Certificates Write")
    assert as_token(writer["api_token"], s.other).status_code == 200

    # A second account: its token sees its own zone's events only; the first account's zones
    # answer exactly like a zone that does not exist.
    b = gw.cli_json("account", "create", "--name", "tenant-b", "--zone", "tenant-b.test")
    zone_b = b["zones"]["tenant-b.test"]
    with gw.http(b["api_token"]) as cb:
        _dns(cb, zone_b, "api.tenant-b.test")
    svc.record_events(
        s.store,
        "edge-2:7",
        [event("api.tenant-b.test", 10), event("api.example.com", 11)],
        {(MINUTE, "api.tenant-b.test", "ok", 200, "forward"): 5},
        now=T0,
    )
    mine = as_token(b["api_token"], zone_b).json()["result"]
    assert [e["hostname"] for e in mine] == ["api.tenant-b.test"]
    for zone in (s.zone, s.other, "0" * 32):
        refused(as_token(b["api_token"], zone), 403, "Authentication error", code=10000)
        refused(as_token(b["api_token"], zone, "/counts"), 403, "Authentication error")
    refused(as_token(s.gw.token, zone_b), 403, "Authentication error", code=10000)
    a_events = as_token(s.gw.token, s.zone).json()["result"]
    assert "api.tenant-b.test" not in {e["hostname"] for e in a_events}
    with gw.http(b["api_token"]) as cb:
        counts = cb.get(
            f"/zones/{zone_b}/mtls_events/counts", params={"since": MINUTE, "until": MINUTE + 60}
        ).json()["result"]
    assert counts["totals"]["requests"] == 5

    with httpx.Client(base_url=gw.base_url) as anonymous:
        refused(anonymous.get(f"/zones/{s.zone}/mtls_events"), 400, "Missing", code=9106)


def test_openapi_lists_the_endpoints(setup: Setup) -> None:
    spec = httpx.get(f"{setup.gw.base_url}/openapi.json").json()
    validate(spec)
    for path in (
        "/client/v4/zones/{zone_id}/mtls_events",
        "/client/v4/zones/{zone_id}/mtls_events/counts",
    ):
        assert "get" in spec["paths"][path]
