"""The mTLS events page in Chromium: recent requests per hostname with their mTLS status and the
chart of counts, read from the store the edge writes (events recorded with the edge's own
record_events, as tests/e2e/test_request_events_api.py does)."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page, expect

from mtlsgate.services import request_events as svc
from mtlsgate.settings import Settings
from mtlsgate.store.db import Store
from tests.dashboard.conftest import Shots, sign_in
from tests.harness import Gateway


def _event(host: str, ts: float, uri: str, status: int, mtls: str, action: str) -> dict[str, Any]:
    return {
        "ts": ts,
        "host": host,
        "client": "192.0.2.7",
        "method": "GET",
        "uri": uri,
        "status": status,
        "mtls": mtls,
        "fingerprint": "ab" * 32 if mtls == "ok" else "",
        "rule": "" if action == "forward" else "c" * 32,
        "action": action,
        "ms": 1.5,
    }


def test_events_page(page: Page, gw: Gateway, shot: Shots) -> None:
    zone = gw.zones["example.com"]
    with gw.http() as c:
        for name in ("api.example.com", "app.example.com"):
            r = c.post(
                f"/zones/{zone}/dns_records",
                json={"type": "A", "name": name, "content": "127.0.0.1", "proxied": True},
            )
            assert r.status_code == 200, r.text
    t0 = time.time() - 90
    minute = svc.minute_of(t0)
    store = Store(Settings.load(gw.data_dir, gw.database_url).database_url)
    try:
        svc.record_events(
            store,
            "edge-1:100",
            [
                _event("api.example.com", t0, "/ok", 200, "ok", "forward"),
                _event("api.example.com", t0 + 1, "/no-cert", 403, "absent", "block"),
                _event("app.example.com", t0 + 2, "/old-cert", 403, "expired", "block"),
            ],
            {
                (minute, "api.example.com", "ok", 200, "forward"): 40,
                (minute, "api.example.com", "absent", 403, "block"): 7,
                (minute, "app.example.com", "expired", 403, "block"): 2,
            },
        )
    finally:
        store.dispose()

    sign_in(page, gw, gw.token)
    page.get_by_role("link", name="mTLS events").click()
    expect(page.get_by_role("heading", name="mTLS events")).to_be_visible()
    table = page.get_by_role("table")
    expect(table.get_by_role("row")).to_have_count(4)  # header + 3 events
    expect(table).to_contain_text("/no-cert")
    expect(table).to_contain_text("absent")
    chart = page.get_by_role("img", name="Requests over last hour by mTLS status")
    expect(chart).to_have_attribute(
        "aria-label",
        "Requests over last hour by mTLS status: 40 ok, 7 absent, 2 expired; the tallest bar is 49",
    )
    expect(page.get_by_role("list", name="Totals")).to_contain_text("ok: 40")
    shot("mtls-events-all")

    page.get_by_label("Hostname").select_option("api.example.com")
    page.get_by_role("button", name="Show").click()
    expect(table.get_by_role("row")).to_have_count(3)
    expect(table).not_to_contain_text("app.example.com")
    expect(page.get_by_role("list", name="Totals")).not_to_contain_text("expired")
    shot("mtls-events-one-host")
    # The same numbers the API gives.
    with gw.http() as c:
        r = c.get(f"/zones/{zone}/mtls_events", params={"hostname": "api.example.com"})
        assert sorted(e["uri"] for e in r.json()["result"]) == ["/no-cert", "/ok"]
