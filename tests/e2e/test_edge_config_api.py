"""The edge-configuration endpoints over plain HTTP: every bad input gets the v4 envelope with a
clear message and changes nothing (the config version stays put), every change advances the
config version, permissions are checked per endpoint family, and private keys never leave."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_edge_config_sdk import TestCA
from tests.e2e.test_rulesets_sdk import Bumps
from tests.harness import Gateway, init_gateway

MISSING = "00000000000000000000000000000000"


def refused(r: httpx.Response, status: int, *fragments: str, code: int | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["result"] is None
    message = " ".join(e["message"] for e in body["errors"])
    for fragment in fragments:
        assert fragment in message, message
    if code is not None:
        assert body["errors"][0]["code"] == code, body


@pytest.fixture
def setup(gateway: Gateway) -> Iterator[tuple[Gateway, httpx.Client, Bumps]]:
    with gateway.http() as c:
        yield gateway, c, Bumps(gateway)


def test_dns_record_rejections(setup: tuple[Gateway, httpx.Client, Bumps]) -> None:
    gw, c, bumps = setup
    base = f"/zones/{gw.zone_id}/dns_records"

    def post(**body: Any) -> httpx.Response:
        return c.post(base, json=body)

    refused(
        post(type="MX", name="a.example.com", content="mx.example.com"),
        400,
        "mtlsgate serves only A, AAAA and CNAME records",
        code=9004,
    )
    refused(post(type="TXT", name="a.example.com", content="x"), 400, "only A, AAAA and CNAME")
    refused(post(type="A", name="a.example.com", content="::1"), 400, "IPv4", code=9005)
    refused(post(type="A", name="a.example.com", content="256.1.1.1"), 400, "IPv4")
    refused(post(type="A", name="a.example.com", content="example.com"), 400, "IPv4")
    refused(post(type="AAAA", name="a.example.com", content="10.0.0.1"), 400, "IPv6")
    refused(post(type="CNAME", name="a.example.com", content="10.0.0.1 x"), 400, "hostname")
    refused(post(type="CNAME", name="a.example.com", content="a.example.com"), 400, "own name")
    refused(post(type="A", name="api.other.org", content="10.0.0.1"), 400, "not in zone", code=1004)
    refused(post(type="A", name="bad_label.example.com", content="10.0.0.1"), 400, "not a valid")
    refused(post(type="A", name="a.example.com", content="10.0.0.1", ttl=10), 400, "ttl", code=9021)
    refused(post(type="A", name="a.example.com", content="10.0.0.1", ttl=86401), 400, "ttl")
    refused(post(type="A", name="a.example.com", content="10.0.0.1", proxied="yes"), 400, "proxied")
    refused(post(type="A", name="a.example.com", content="10.0.0.1", tags="x"), 400, "tags")
    refused(
        post(type="A", name="a.example.com", content="10.0.0.1", extra=1),
        400,
        "unknown field 'extra'",
    )
    refused(post(type="A", name="a.example.com"), 400, "content is required")
    refused(c.post(base, content=b"{not json"), 400, "Malformed JSON")
    bumps.unchanged()

    # Loopback, private and link-local origins are fine on a self-hosted gateway.
    for i, ip in enumerate(["127.0.0.1", "10.1.2.3", "192.168.0.10", "169.254.1.1"]):
        r = post(type="A", name=f"h{i}.example.com", content=ip, proxied=True)
        assert r.status_code == 200, r.text
        bumps.check()
    r = post(type="AAAA", name="h0.example.com", content="::1")
    assert r.status_code == 200, r.text
    bumps.check()

    # DNS rules: identical record; CNAME beside anything; anything beside a CNAME.
    refused(
        post(type="A", name="h0.example.com", content="127.0.0.1"),
        400,
        "identical record already exists",
        code=81058,
    )
    refused(
        post(type="CNAME", name="h0.example.com", content="x.example.net"), 400, "CNAME", code=81053
    )
    cname = post(type="CNAME", name="alias.example.com", content="h0.example.com")
    assert cname.status_code == 200, cname.text
    bumps.check()
    refused(
        post(type="A", name="alias.example.com", content="10.0.0.9"),
        400,
        "A CNAME record with that host already exists",
        code=81054,
    )
    refused(post(type="CNAME", name="alias.example.com", content="h1.example.com"), 400, "CNAME")
    bumps.unchanged()

    # Updates are checked the same way and leave the record as it was when refused.
    rid = r.json()["result"]["id"]
    refused(c.patch(f"{base}/{rid}", json={"content": "not-an-ip"}), 400, "IPv6")
    refused(c.patch(f"{base}/{rid}", json={"name": "alias.example.com"}), 400, "CNAME")
    refused(c.patch(f"{base}/{rid}", json={"type": None}), 400, "type cannot be null")
    refused(
        c.put(f"{base}/{rid}", json={"type": "AAAA", "name": "h0.example.com"}),
        400,
        "content is required",
    )
    assert c.get(f"{base}/{rid}").json()["result"]["content"] == "::1"
    bumps.unchanged()
    # A no-op PATCH changes nothing, not even the version; a real one bumps it.
    same = c.patch(f"{base}/{rid}", json={"content": "::1"})
    assert same.status_code == 200 and same.json()["result"]["content"] == "::1"
    bumps.unchanged()
    moved = c.patch(f"{base}/{rid}", json={"content": "fd12::7", "proxied": True})
    assert moved.json()["result"]["proxied"] is True
    bumps.check()

    # Ids and query parameters.
    refused(c.get(f"{base}/not-an-id"), 400, "Could not route", code=7003)
    refused(c.get(f"{base}/{MISSING}"), 404, "DNS record not found", code=81044)
    refused(c.delete(f"{base}/{MISSING}"), 404, "not found")
    refused(c.get(base, params={"proxied": "maybe"}), 400, "proxied must be true or false")
    refused(c.get(base, params={"page": 0}), 400, "page")
    refused(c.get(base, params={"order": "colour"}), 400, "order must be one of")
    past = c.get(base, params={"page": 50}).json()
    assert past["success"] is True and past["result"] == []
    assert past["result_info"]["total_count"] == 6
    bumps.unchanged()

    assert c.delete(f"{base}/{rid}").status_code == 200
    bumps.check()


def test_ssl_setting_rejections(setup: tuple[Gateway, httpx.Client, Bumps]) -> None:
    gw, c, bumps = setup
    base = f"/zones/{gw.zone_id}/settings"
    listed = c.get(base).json()["result"]
    assert listed == [{"id": "ssl", "value": "flexible", "editable": True, "modified_on": None}]
    refused(
        c.patch(f"{base}/ssl", json={"value": "full (strict)"}),
        400,
        "off, flexible, full, strict",
        code=1007,
    )
    refused(c.patch(f"{base}/ssl", json={"value": True}), 400, "Invalid value")
    refused(c.patch(f"{base}/ssl", json={}), 400, "value is required")
    refused(c.patch(f"{base}/ssl", json={"value": "full", "enabled": True}), 400, "unknown field")
    refused(
        c.patch(f"{base}/min_tls_version", json={"value": "1.2"}),
        404,
        "mtlsgate implements only ssl",
    )
    bumps.unchanged()
    for value in ("full", "off", "strict", "flexible"):
        r = c.patch(f"{base}/ssl", json={"value": value})
        assert r.json()["result"]["value"] == value
        bumps.check()


def test_custom_certificate_rejections(
    setup: tuple[Gateway, httpx.Client, Bumps], tmp_path: Path
) -> None:
    gw, c, bumps = setup
    base = f"/zones/{gw.zone_id}/custom_certificates"
    ca = TestCA()
    leaf, chain, key = ca.issue(["api.example.com"])
    _, _, other_key = ca.issue(["api.example.com"])
    expired_leaf, _, expired_key = ca.issue(
        ["api.example.com"], not_after=datetime.now(UTC) - timedelta(days=1)
    )
    foreign, _, foreign_key = ca.issue(["api.other.org", "www.other.org"])

    refused(
        c.post(base, json={"certificate": chain, "private_key": other_key}),
        400,
        "private_key does not match certificate 1",
    )
    refused(
        c.post(base, json={"certificate": expired_leaf, "private_key": expired_key}),
        400,
        "expired on",
        code=1421,
    )
    refused(
        c.post(base, json={"certificate": foreign, "private_key": foreign_key}),
        400,
        "none of the certificate's hostnames (api.other.org, www.other.org) is in zone example.com",
        code=1004,
    )
    refused(c.post(base, json={"certificate": "garbage", "private_key": key}), 400, "PEM")
    refused(
        c.post(base, json={"certificate": key, "private_key": key}),
        400,
        "private keys go in the private_key field",
    )
    refused(c.post(base, json={"certificate": chain}), 400, "private_key is required")
    refused(
        c.post(base, json={"certificate": chain, "private_key": key, "bundle_method": "best"}),
        400,
        "bundle_method must be one of",
    )
    refused(
        c.post(
            base,
            json={"certificate": chain, "private_key": key, "geo_restrictions": {"label": "mars"}},
        ),
        400,
        "geo_restrictions",
    )
    # The chain must be in order: the CA first is not a leaf followed by its issuer.
    reversed_chain = chain.split("-----END CERTIFICATE-----\n")
    bad_chain = reversed_chain[1] + "-----END CERTIFICATE-----\n" + leaf
    refused(c.post(base, json={"certificate": bad_chain, "private_key": key}), 400)
    bumps.unchanged()
    assert c.get(base).json()["result"] == []

    # Escaped newlines (PEM pasted into JSON by hand) are accepted.
    r = c.post(
        base,
        json={
            "certificate": chain.replace("\n", "\\n"),
            "private_key": key,
            "geo_restrictions": {"label": "eu"},
            "policy": "region: EU",
        },
    )
    assert r.status_code == 200, r.text
    bumps.check()
    cert = r.json()["result"]
    assert cert["geo_restrictions"] == {"label": "eu"}
    assert cert["policy_restrictions"] == "region: EU"
    assert "PRIVATE KEY" not in r.text
    cid = cert["id"]
    refused(
        c.post(base, json={"certificate": chain, "private_key": key}),
        400,
        f"already uploaded to zone example.com as {cid}",
        code=1423,
    )

    # The key is sealed at rest: the database does not hold it in clear.
    if gw.database_url is None:
        db = next(gw.data_dir.glob("*.db"))
        raw = db.read_bytes()
        for wal in gw.data_dir.glob("*.db-wal"):
            raw += wal.read_bytes()
        body = key.split("-----")[2].strip().splitlines()[1].encode()
        assert body not in raw

    # Edits are checked like uploads and keep the record when refused.
    refused(c.patch(f"{base}/{cid}", json={"private_key": other_key}), 400, "does not match")
    refused(c.patch(f"{base}/{cid}", json={"certificate": foreign}), 400)
    refused(c.patch(f"{base}/{cid}", json={"type": "legacy_custom"}), 400, "type cannot be changed")
    refused(c.patch(f"{base}/{cid}", json={"unknown": 1}), 400, "unknown field")
    refused(c.get(f"{base}/{MISSING}"), 404, "Custom certificate not found", code=1420)
    refused(c.get(f"{base}/xyz"), 400, "Could not route")
    refused(c.get(base, params={"status": "sleeping"}), 400, "status must be one of")
    bumps.unchanged()
    assert c.get(f"{base}/{cid}").json()["result"] == cert

    # Only the key: a new key for the same certificate is refused unless it matches; the same
    # key again is accepted. Changing bundle_method alone bumps the version too.
    assert c.patch(f"{base}/{cid}", json={"private_key": key}).status_code == 200
    bumps.check()
    r = c.patch(f"{base}/{cid}", json={"bundle_method": "optimal"})
    assert r.json()["result"]["bundle_method"] == "optimal"
    bumps.check()
    assert c.patch(f"{base}/{cid}", json={"bundle_method": "optimal"}).status_code == 200
    bumps.unchanged()
    assert c.delete(f"{base}/{cid}").json()["result"] == {"id": cid}
    bumps.check()
    refused(c.delete(f"{base}/{cid}"), 404)
    bumps.unchanged()


def test_managed_headers_and_access_settings_rejections(
    setup: tuple[Gateway, httpx.Client, Bumps],
) -> None:
    gw, c, bumps = setup
    mh = f"/zones/{gw.zone_id}/managed_headers"
    refused(
        c.patch(mh, json={"managed_request_headers": []}),
        400,
        "managed_response_headers is required",
    )
    refused(
        c.patch(
            mh,
            json={
                "managed_request_headers": [{"id": "add_magic", "enabled": True}],
                "managed_response_headers": [],
            },
        ),
        400,
        "unknown Managed Transform 'add_magic'",
        code=1010,
    )
    refused(
        c.patch(
            mh,
            json={
                "managed_request_headers": [{"id": "add_security_headers", "enabled": True}],
                "managed_response_headers": [],
            },
        ),
        400,
        "it is a response transform",
    )
    refused(
        c.patch(
            mh,
            json={
                "managed_request_headers": [
                    {"id": "add_client_certificate_headers", "enabled": "yes"}
                ],
                "managed_response_headers": [],
            },
        ),
        400,
        "enabled",
    )
    refused(
        c.patch(
            mh,
            json={
                "managed_request_headers": [
                    {"id": "add_true_client_ip_headers", "enabled": True},
                    {"id": "remove_visitor_ip_headers", "enabled": True},
                ],
                "managed_response_headers": [],
            },
        ),
        400,
        "cannot both be enabled",
        code=1011,
    )
    bumps.unchanged()
    r = c.patch(
        mh,
        json={
            "managed_request_headers": [
                {"id": "add_client_certificate_headers", "enabled": True},
                {"id": "add_visitor_location_headers", "enabled": True},
            ],
            "managed_response_headers": [],
        },
    )
    assert r.status_code == 200, r.text
    bumps.check()
    notes = [m["message"] for m in r.json()["messages"]]
    assert notes == [
        "add_visitor_location_headers is stored but mtlsgate's edge does not implement it: "
        "it has no effect"
    ]
    # The same request again changes nothing.
    again = c.patch(
        mh,
        json={
            "managed_request_headers": [{"id": "add_client_certificate_headers", "enabled": True}],
            "managed_response_headers": [],
        },
    )
    assert again.status_code == 200
    bumps.unchanged()
    r = c.delete(mh)
    assert r.status_code == 204 and r.content == b""
    bumps.check()

    acs = f"/zones/{gw.zone_id}/access/certificates/settings"
    ok_item = {
        "hostname": "api.example.com",
        "china_network": False,
        "client_certificate_forwarding": True,
    }
    refused(c.put(acs, json={}), 400, "settings is required")
    refused(
        c.put(acs, json={"settings": [{"hostname": "api.example.com", "china_network": False}]}),
        400,
        "client_certificate_forwarding is required",
    )
    refused(
        c.put(acs, json={"settings": [{**ok_item, "china_network": True}]}),
        400,
        "china_network must be false",
        code=12130,
    )
    refused(
        c.put(acs, json={"settings": [{**ok_item, "hostname": "api.other.org"}]}),
        400,
        "not in zone",
        code=1004,
    )
    refused(
        c.put(acs, json={"settings": [ok_item, {**ok_item, "hostname": "API.example.com"}]}),
        400,
        "listed more than once",
        code=12131,
    )
    refused(
        c.put(acs, json={"settings": [{**ok_item, "hostname": "a b.example.com"}]}),
        400,
        "not a valid hostname",
    )
    bumps.unchanged()
    r = c.put(acs, json={"settings": [ok_item]})
    assert r.status_code == 202 and r.json()["result"] == [ok_item]
    bumps.check()
    assert c.put(acs, json={"settings": [ok_item]}).status_code == 202
    bumps.unchanged()
    assert c.get(acs).json()["result"] == [ok_item]


@pytest.fixture
def limited(tmp_path: Path, database_url: str | None) -> Iterator[tuple[Gateway, dict[str, str]]]:
    gw = init_gateway(tmp_path / "data", database_url, zones=("example.com", "other.org"))
    tokens = {
        perm: gw.cli_json("token", "create", "--permission", perm, "--zone", "example.com")[
            "api_token"
        ]
        for perm in (
            "DNS Read",
            "DNS Write",
            "Zone Settings Read",
            "SSL and Certificates Read",
            "Managed headers Write",
            "Access: Mutual TLS Certificates Read",
        )
    }
    gw.start()
    try:
        yield gw, tokens
    finally:
        gw.stop()


def test_permissions_per_endpoint_family(limited: tuple[Gateway, dict[str, str]]) -> None:
    gw, tokens = limited
    zone, other = gw.zones["example.com"], gw.zones["other.org"]
    record = {"type": "A", "name": "api.example.com", "content": "10.0.0.1"}
    mh_body: dict[str, list[Any]] = {"managed_request_headers": [], "managed_response_headers": []}
    with gw.http(tokens["DNS Read"]) as c:
        assert c.get(f"/zones/{zone}/dns_records").status_code == 200
        refused(c.post(f"/zones/{zone}/dns_records", json=record), 403, code=10000)
        refused(c.get(f"/zones/{zone}/settings/ssl"), 403)
        refused(c.get(f"/zones/{other}/dns_records"), 403)
    with gw.http(tokens["DNS Write"]) as c:
        assert c.post(f"/zones/{zone}/dns_records", json=record).status_code == 200
        refused(c.get(f"/zones/{zone}/custom_certificates"), 403)
    with gw.http(tokens["Zone Settings Read"]) as c:
        assert c.get(f"/zones/{zone}/settings/ssl").status_code == 200
        refused(c.patch(f"/zones/{zone}/settings/ssl", json={"value": "full"}), 403)
    with gw.http(tokens["SSL and Certificates Read"]) as c:
        assert c.get(f"/zones/{zone}/custom_certificates").status_code == 200
        refused(c.get(f"/zones/{zone}/managed_headers"), 403)
    with gw.http(tokens["Managed headers Write"]) as c:
        assert c.get(f"/zones/{zone}/managed_headers").status_code == 200
        assert c.patch(f"/zones/{zone}/managed_headers", json=mh_body).status_code == 200
        refused(c.get(f"/zones/{zone}/access/certificates/settings"), 403)
    with gw.http(tokens["Access: Mutual TLS Certificates Read"]) as c:
        assert c.get(f"/zones/{zone}/access/certificates/settings").status_code == 200
        refused(c.put(f"/zones/{zone}/access/certificates/settings", json={"settings": []}), 403)
    with gw.http() as c:  # the admin token holds every permission, including the new Access one
        assert (
            c.put(f"/zones/{zone}/access/certificates/settings", json={"settings": []}).status_code
            == 202
        )
