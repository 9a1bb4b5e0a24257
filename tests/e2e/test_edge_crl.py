"""Revocation for uploaded CAs through a real `mtlsgate serve` with its edge, with real clients:
a CRL made by `openssl ca -revoke` + `-gencrl` revokes one client of an uploaded CA and not
another (curl: 403 / 200 through a `cf.tls_client_auth.cert_revoked` rule); the stale-CRL policy
both ways, including a CRL that goes stale with no API call; the deny-list by serial and by
fingerprint; CRLs fetched from a local HTTP server with caching."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.crl_tools import CrlServer, OpensslCA, fingerprint_of, serial_of
from tests.e2e.test_auth import assert_error, assert_ok
from tests.e2e.test_edge_seed_flow import (
    HOST,
    curl,
    edge_gateway,  # noqa: F401 - a fixture
    eventually,
    eventually_lines,
)
from tests.harness import Gateway

RULE = (
    f'(http.host eq "{HOST}" and '
    "(not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked))"
)


def _protect(c: httpx.Client, gw: Gateway, ca: OpensslCA) -> str:
    """Upload the CA, ask HOST's clients for it, block unverified and revoked clients."""
    ca_id = assert_ok(
        c.post(
            f"/accounts/{gw.account_id}/mtls_certificates",
            json={"ca": True, "name": "devices", "certificates": ca.cert.cert_pem},
        )
    )["result"]["id"]
    assert_ok(
        c.put(
            f"/zones/{gw.zone_id}/certificate_authorities/hostname_associations",
            json={"hostnames": [HOST], "mtls_certificate_id": ca_id},
        )
    )
    assert_ok(
        c.put(
            f"/zones/{gw.zone_id}/rulesets/phases/http_request_firewall_custom/entrypoint",
            json={"rules": [{"expression": RULE, "action": "block"}]},
        )
    )
    return str(ca_id)


def test_crl_and_deny_list_at_the_edge(
    edge_gateway: tuple[Gateway, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    gw, port = edge_gateway
    ca = OpensslCA.create(tmp_path / "ca")
    good = ca.issue("device-good")
    bad = ca.issue("device-bad")
    impostor = OpensslCA.create(tmp_path / "impostor", cn="Devices CA")
    with gw.http() as c:
        ca_id = _protect(c, gw, ca)
        crl_path = f"/accounts/{gw.account_id}/mtls_certificates/{ca_id}/crl"
        eventually(lambda: curl(gw, port), 403)
        eventually(lambda: curl(gw, port, bad), 200)
        assert curl(gw, port, good) == 200

        # The operator's CA revokes one client and publishes a CRL; uploaded, it is enforced.
        first = ca.gencrl()  # number 1, nothing revoked yet
        ca.revoke(bad)
        second = ca.gencrl()  # number 2, lists `bad`
        assert_ok(c.put(crl_path, json={"crl": second}))
        eventually(lambda: curl(gw, port, bad), 403)
        assert curl(gw, port, good) == 200
        # An older CRL (which would un-revoke `bad`) and one signed by another key: refused,
        # and the edge keeps enforcing the stored one.
        assert_error(c.put(crl_path, json={"crl": first}), 400, 1531, contains="lower")
        assert_error(
            c.put(crl_path, json={"crl": impostor.gencrl()}), 400, 1530, contains="another key"
        )
        assert curl(gw, port, bad) == 403
        assert curl(gw, port, good) == 200

        # The deny-list: by serial, then by fingerprint; removal restores access.
        deny = f"/accounts/{gw.account_id}/mtls_deny_list"
        entry = assert_ok(c.post(deny, json={"serial_number": serial_of(good)}))["result"]
        eventually(lambda: curl(gw, port, good), 403)
        assert_ok(c.delete(f"{deny}/{entry['id']}"))
        eventually(lambda: curl(gw, port, good), 200)
        entry = assert_ok(c.post(deny, json={"fingerprint_sha256": fingerprint_of(good)}))["result"]
        eventually(lambda: curl(gw, port, good), 403)
        assert_ok(c.delete(f"{deny}/{entry['id']}"))
        eventually(lambda: curl(gw, port, good), 200)

        # Deleting the CRL un-revokes (fail_open by default: no CRL, nothing listed).
        assert_ok(c.delete(crl_path))
        eventually(lambda: curl(gw, port, bad), 200)

    # The log lines and the metrics name why a client was revoked.
    assert_revoked_lines(gw, {"crl", "denylist"})
    assert_revoked_metrics(gw, {"crl", "denylist"})


def assert_revoked_lines(gw: Gateway, reasons: set[str]) -> None:
    """The request log names every reason among its 403 lines. Workers write their lines
    every 200 ms: the last requests' lines may come a little after the responses."""
    deadline = time.monotonic() + 5
    while True:
        seen = {r.get("revocation") for r in eventually_lines(gw, 1) if r["status"] == 403}
        if reasons <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert reasons <= seen, seen


def assert_revoked_metrics(gw: Gateway, reasons: set[str]) -> None:
    """The edge workers' counters, summed on the API's /metrics, count revoked requests by
    reason (the workers write them every few seconds)."""
    wanted = {
        f'mtlsgate_edge_revoked_requests_total{{hostname="{HOST}",reason="{why}"}}'
        for why in reasons
    }
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{gw.port}/metrics").text
        if all(w in text for w in wanted):
            return
        time.sleep(0.3)
    raise AssertionError(f"missing {wanted} in:\n{text}")


def test_stale_policy_both_ways(
    edge_gateway: tuple[Gateway, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    gw, port = edge_gateway
    ca = OpensslCA.create(tmp_path / "ca")
    good = ca.issue("device-good")
    bad = ca.issue("device-bad")
    ca.revoke(bad)
    with gw.http() as c:
        ca_id = _protect(c, gw, ca)
        base = f"/accounts/{gw.account_id}/mtls_certificates/{ca_id}"
        eventually(lambda: curl(gw, port, good), 200)

        # fail_closed without any CRL: every client of the CA counts as revoked.
        res = assert_ok(c.patch(f"{base}/crl_settings", json={"stale_policy": "fail_closed"}))
        assert res["result"]["enforced"] == "all_revoked"
        eventually(lambda: curl(gw, port, good), 403)

        # A CRL whose nextUpdate is a few seconds away: good again until then.
        now = datetime.now(UTC)
        next_update = now + timedelta(seconds=8)
        short = ca.gencrl(last_update=now - timedelta(minutes=1), next_update=next_update)
        assert assert_ok(c.put(f"{base}/crl", json={"crl": short}))["result"]["status"] == "current"
        eventually(lambda: curl(gw, port, good), 200)
        assert curl(gw, port, bad) == 403

        # nextUpdate passes with no API call: the edge notices (the serve process's scheduler
        # bumps the config version) and fail_closed revokes every client of the CA.
        time.sleep(max(0.0, (next_update - datetime.now(UTC)).total_seconds()))
        eventually(lambda: curl(gw, port, good), 403, timeout=4)
        got = assert_ok(c.get(f"{base}/crl"))["result"]
        assert got["status"] == "stale" and got["stale"] is True
        assert got["enforced"] == "all_revoked"

        # fail_open with the same stale CRL: reported stale, the listed serials still apply.
        got = assert_ok(c.patch(f"{base}/crl_settings", json={"stale_policy": "fail_open"}))[
            "result"
        ]
        assert got["status"] == "stale" and got["enforced"] == "crl"
        eventually(lambda: curl(gw, port, good), 200)
        assert curl(gw, port, bad) == 403

        # Back to fail_closed, then a fresh CRL (higher number) makes it usable again.
        assert_ok(c.patch(f"{base}/crl_settings", json={"stale_policy": "fail_closed"}))
        eventually(lambda: curl(gw, port, good), 403)
        assert_ok(c.put(f"{base}/crl", json={"crl": ca.gencrl()}))
        eventually(lambda: curl(gw, port, good), 200)
        assert curl(gw, port, bad) == 403
    assert_revoked_lines(gw, {"crl_missing", "crl_stale", "crl"})
    assert_revoked_metrics(gw, {"crl_missing", "crl_stale", "crl"})


@pytest.fixture
def crl_server() -> Iterator[CrlServer]:
    server = CrlServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fast_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-fetch every second (the `serve` process inherits the environment)."""
    monkeypatch.setenv("MTLSGATE_CRL_FETCH_INTERVAL", "1")
    monkeypatch.setenv("MTLSGATE_CRL_RETRY_INTERVAL", "1")


def test_crl_fetched_from_distribution_point(
    fast_fetch: None,
    crl_server: CrlServer,
    edge_gateway: tuple[Gateway, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    gw, port = edge_gateway
    ca = OpensslCA.create(tmp_path / "ca", cdp=crl_server.url("/devices.crl"))
    good = ca.issue("device-good")
    bad = ca.issue("device-bad")
    ca.revoke(bad)
    crl_server.files["/devices.crl"] = ca.gencrl().encode()
    with gw.http() as c:
        ca_id = _protect(c, gw, ca)
        base = f"/accounts/{gw.account_id}/mtls_certificates/{ca_id}"
        eventually(lambda: curl(gw, port, bad), 200)
        # Fetching from the CA certificate's CRL distribution point.
        res = assert_ok(c.patch(f"{base}/crl_settings", json={"fetch": True}))["result"]
        assert res["fetch"]["urls"] == [crl_server.url("/devices.crl")]

        def crl_number() -> object:
            return c.get(f"{base}/crl").json()["result"]["crl_number"]

        def status() -> object:
            return c.get(f"{base}/crl").json()["result"]["fetch"]["last_fetch_status"]

        eventually(crl_number, "1", timeout=5)
        got = assert_ok(c.get(f"{base}/crl"))["result"]
        assert got["source"] == "fetched" and got["source_url"] == crl_server.url("/devices.crl")
        assert got["fetch"]["last_fetch_status"].startswith("stored CRL number 1")
        eventually(lambda: curl(gw, port, bad), 403)
        assert curl(gw, port, good) == 200

        # Re-fetched every second, conditionally: unchanged CRLs come back 304.
        eventually(lambda: ("/devices.crl", 304) in crl_server.requests, True, timeout=5)
        assert c.get(f"{base}/crl").json()["result"]["fetch"]["last_fetch_status"] in (
            "not modified",
            "stored CRL number 1",
        )

        # The CA revokes `good` too and publishes CRL number 2: fetched and enforced.
        ca.revoke(good)
        crl_server.files["/devices.crl"] = ca.gencrl().encode()
        eventually(crl_number, "2", timeout=5)
        eventually(lambda: curl(gw, port, good), 403)

        # A published CRL that is already past its nextUpdate: stored, and reported stale.
        now = datetime.now(UTC)
        crl_server.files["/devices.crl"] = ca.gencrl(
            last_update=now - timedelta(days=2), next_update=now - timedelta(days=1)
        ).encode()
        eventually(crl_number, "3", timeout=5)
        eventually(lambda: "; the published CRL is stale" in str(status()), True, timeout=5)
        assert c.get(f"{base}/crl").json()["result"]["status"] == "stale"

        # A CRL signed by another key at the URL is refused; the stored one stays.
        impostor = OpensslCA.create(tmp_path / "impostor", cn="Devices CA")
        crl_server.files["/devices.crl"] = impostor.gencrl(days=30).encode()

        eventually(
            lambda: str(status()).startswith("refused: the CRL's signature does not verify"),
            True,
            timeout=5,
        )
        assert crl_number() == "3"
        # A URL that answers 404: reported, nothing changes.
        assert_ok(
            c.patch(f"{base}/crl_settings", json={"fetch_url": crl_server.url("/missing.crl")})
        )
        eventually(lambda: str(status()).endswith("HTTP 404 Not Found"), True, timeout=5)
        assert crl_number() == "3"
        assert curl(gw, port, good) == 403
