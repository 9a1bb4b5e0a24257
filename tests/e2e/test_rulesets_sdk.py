"""The Rulesets API driven through the official `cloudflare` Python SDK, against a real
`mtlsgate serve` on SQLite and on PostgreSQL: entry points, rulesets, rules (with positions),
versions, and the config version the edge watches."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import cloudflare
import httpx
import pytest

from tests.harness import Gateway

FIREWALL = "http_request_firewall_custom"
ORIGIN = "http_request_origin"
TRANSFORM = "http_request_late_transform"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
RFC3339_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

BLOCK_RESPONSE = {
    "status_code": 418,
    "content": '{"error": "client certificate required"}',
    "content_type": "application/json",
}


def config_version(gw: Gateway) -> int:
    r = httpx.get(f"http://127.0.0.1:{gw.port}/healthz", timeout=10)
    return int(r.json()["config_version"])


class Bumps:
    """Asserts that each mutation advanced the store's config version."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.last = config_version(gw)

    def check(self) -> None:
        now = config_version(self.gw)
        assert now > self.last, f"config_version did not increase ({self.last} -> {now})"
        self.last = now

    def unchanged(self) -> None:
        assert config_version(self.gw) == self.last


def d(obj: Any) -> dict[str, Any]:
    """An SDK result as the JSON the server sent (some methods return models, some dicts)."""
    if isinstance(obj, dict):
        return obj
    out: dict[str, Any] = obj.to_dict(mode="json")
    return out


def raw_get(gw: Gateway, path: str) -> dict[str, Any]:
    with gw.http() as c:
        r = c.get(path)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def check_ruleset_shape(rs: dict[str, Any], *, with_rules: bool = True) -> None:
    assert HEX32.match(rs["id"])
    assert rs["version"].isdigit()
    assert RFC3339_MICRO.match(rs["last_updated"]), rs["last_updated"]
    last = datetime.fromisoformat(rs["last_updated"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - last) < timedelta(minutes=5)
    assert isinstance(rs["description"], str)
    assert ("rules" in rs) is with_rules
    for rule in rs.get("rules", []):
        assert HEX32.match(rule["id"])
        assert rule["version"].isdigit()
        assert RFC3339_MICRO.match(rule["last_updated"])
        assert isinstance(rule["enabled"], bool)
        assert isinstance(rule["description"], str)
        assert rule["ref"]


def test_sdk_entry_point_rules_positions_and_versions(gateway: Gateway) -> None:
    client = gateway.sdk()
    zone = gateway.zone_id
    bumps = Bumps(gateway)

    # No entry point yet: 404 for it and for a version of it, [] for its versions.
    with pytest.raises(cloudflare.NotFoundError):
        client.rulesets.phases.get(ruleset_phase=FIREWALL, zone_id=zone)
    assert list(client.rulesets.phases.versions.list(ruleset_phase=FIREWALL, zone_id=zone)) == []
    with pytest.raises(cloudflare.NotFoundError):
        client.rulesets.phases.versions.get("1", ruleset_phase=FIREWALL, zone_id=zone)
    bumps.unchanged()

    created = client.rulesets.phases.update(
        ruleset_phase=FIREWALL,
        zone_id=zone,
        description="mTLS enforcement",
        rules=[
            {
                "action": "block",
                "expression": 'http.host eq "api.example.com" and not '
                "cf.tls_client_auth.cert_verified",
                "description": "require a client certificate",
                "action_parameters": {"response": BLOCK_RESPONSE},
            },
            {
                "action": "skip",
                "expression": 'http.request.uri.path eq "/health"',
                "action_parameters": {"ruleset": "current"},
                "logging": {"enabled": False},
                "ref": "health-skip",
            },
            {"action": "log", "expression": "cf.tls_client_auth.cert_revoked", "enabled": False},
        ],
    )
    bumps.check()
    rs = d(created)
    check_ruleset_shape(rs)
    assert rs["kind"] == "zone"
    assert rs["phase"] == FIREWALL
    assert rs["name"] == "default"
    assert rs["description"] == "mTLS enforcement"
    assert rs["version"] == "1"
    block, skip, log = rs["rules"]
    assert [r["version"] for r in rs["rules"]] == ["1", "1", "1"]
    assert len({r["id"] for r in rs["rules"]}) == 3
    assert block["action"] == "block"
    assert block["action_parameters"] == {"response": BLOCK_RESPONSE}
    assert block["description"] == "require a client certificate"
    assert block["enabled"] is True
    assert block["ref"] == block["id"]
    assert "logging" not in block
    assert skip["action_parameters"] == {"ruleset": "current"}
    assert skip["logging"] == {"enabled": False}
    assert skip["ref"] == "health-skip"
    assert log["enabled"] is False
    assert "action_parameters" not in log
    assert log["description"] == ""
    ruleset_id = rs["id"]

    fetched = d(client.rulesets.phases.get(ruleset_phase=FIREWALL, zone_id=zone))
    assert fetched == rs
    assert d(client.rulesets.get(ruleset_id, zone_id=zone)) == rs

    # Add a rule first, then one at index 2, then one after the first rule.
    first = d(
        client.rulesets.rules.create(
            ruleset_id,
            zone_id=zone,
            action="block",
            expression="not cf.tls_client_auth.cert_presented",
            position={"before": ""},
        )
    )
    bumps.check()
    assert first["version"] == "2"
    assert [r["id"] for r in first["rules"][1:]] == [block["id"], skip["id"], log["id"]]
    new_first = first["rules"][0]
    assert new_first["version"] == "1"
    assert "action_parameters" not in new_first
    # Rules that did not change keep their version and last_updated.
    assert first["rules"][1:] == rs["rules"]

    second = d(
        client.rulesets.rules.create(
            ruleset_id,
            zone_id=zone,
            action="log",
            expression='http.request.method eq "DELETE"',
            position={"index": 2},
        )
    )
    bumps.check()
    assert second["version"] == "3"
    ids = [r["id"] for r in second["rules"]]
    assert ids[0] == new_first["id"] and ids[2:] == [block["id"], skip["id"], log["id"]]
    at_index_2 = ids[1]

    third = d(
        client.rulesets.rules.create(
            ruleset_id,
            zone_id=zone,
            action="log",
            expression='http.request.method eq "PUT"',
            position={"after": block["id"]},
            description="after block",
        )
    )
    bumps.check()
    ids = [r["id"] for r in third["rules"]]
    assert ids[:3] == [new_first["id"], at_index_2, block["id"]]
    assert third["rules"][3]["description"] == "after block"
    assert ids[4:] == [skip["id"], log["id"]]
    after_block = ids[3]

    # Default position: last.
    last = d(
        client.rulesets.rules.create(
            ruleset_id, zone_id=zone, action="log", expression='http.host eq "x.example.com"'
        )
    )
    bumps.check()
    assert last["rules"][-1]["expression"] == 'http.host eq "x.example.com"'
    assert last["version"] == "5"
    last_id = last["rules"][-1]["id"]

    # Disable a rule: its version goes to 2; nothing else changes.
    edited = d(
        client.rulesets.rules.edit(block["id"], ruleset_id=ruleset_id, zone_id=zone, enabled=False)
    )
    bumps.check()
    assert edited["version"] == "6"
    by_id = {r["id"]: r for r in edited["rules"]}
    assert by_id[block["id"]]["enabled"] is False
    assert by_id[block["id"]]["version"] == "2"
    assert by_id[block["id"]]["action_parameters"] == {"response": BLOCK_RESPONSE}
    assert by_id[block["id"]]["expression"] == block["expression"]
    assert by_id[skip["id"]]["version"] == "1"
    assert [r["id"] for r in edited["rules"]] == [r["id"] for r in last["rules"]]

    # Move only: the rule's version does not change, the ruleset's does.
    moved = d(
        client.rulesets.rules.edit(
            log["id"], ruleset_id=ruleset_id, zone_id=zone, position={"index": 1}
        )
    )
    bumps.check()
    assert moved["version"] == "7"
    assert moved["rules"][0]["id"] == log["id"]
    assert moved["rules"][0]["version"] == "1"
    assert moved["rules"][0]["last_updated"] == log["last_updated"]
    assert [r["id"] for r in moved["rules"][1:]] == [
        new_first["id"],
        at_index_2,
        block["id"],
        after_block,
        skip["id"],
        last_id,
    ]

    # Change the expression and move it to the end in one call.
    both = d(
        client.rulesets.rules.edit(
            at_index_2,
            ruleset_id=ruleset_id,
            zone_id=zone,
            expression='http.request.method eq "PATCH"',
            position={"after": ""},
        )
    )
    bumps.check()
    assert both["rules"][-1]["id"] == at_index_2
    assert both["rules"][-1]["version"] == "2"
    assert both["rules"][-1]["expression"] == 'http.request.method eq "PATCH"'

    # Delete a rule: the whole ruleset comes back without it.
    after_delete = d(client.rulesets.rules.delete(after_block, ruleset_id=ruleset_id, zone_id=zone))
    bumps.check()
    assert after_delete["version"] == "9"
    assert after_block not in [r["id"] for r in after_delete["rules"]]
    assert len(after_delete["rules"]) == 6

    # Versions: 1..9, without rules; each one served as it was.
    versions = [d(v) for v in client.rulesets.versions.list(ruleset_id, zone_id=zone)]
    assert [v["version"] for v in versions] == [str(n) for n in range(1, 10)]
    for v in versions:
        check_ruleset_shape(v, with_rules=False)
        assert v["id"] == ruleset_id
    v1 = d(client.rulesets.versions.get("1", ruleset_id=ruleset_id, zone_id=zone))
    assert v1 == rs
    v6 = d(client.rulesets.versions.get("6", ruleset_id=ruleset_id, zone_id=zone))
    assert v6 == edited
    phase_versions = [
        d(v) for v in client.rulesets.phases.versions.list(ruleset_phase=FIREWALL, zone_id=zone)
    ]
    assert phase_versions == versions
    assert d(client.rulesets.phases.versions.get("1", ruleset_phase=FIREWALL, zone_id=zone)) == rs
    with pytest.raises(cloudflare.NotFoundError):
        client.rulesets.versions.get("10", ruleset_id=ruleset_id, zone_id=zone)
    bumps.unchanged()

    # PUT keeps the identity of rules named by id (and by ref); others are new or removed.
    current = after_delete["rules"]
    kept = current[0]
    replaced = d(
        client.rulesets.phases.update(
            ruleset_phase=FIREWALL,
            zone_id=zone,
            rules=[
                {
                    "id": kept["id"],
                    "action": kept["action"],
                    "expression": kept["expression"],
                    "enabled": kept["enabled"],
                },
                {
                    "action": "skip",
                    "expression": 'http.request.uri.path eq "/healthz"',
                    "action_parameters": {"ruleset": "current", "phase": "current"},
                    "ref": "health-skip",
                },
                {"action": "block", "expression": "not cf.tls_client_auth.cert_verified"},
            ],
        )
    )
    bumps.check()
    assert replaced["version"] == "10"
    assert replaced["description"] == "mTLS enforcement"  # kept when not given
    r0, r1, r2 = replaced["rules"]
    assert r0["id"] == kept["id"] and r0["version"] == kept["version"]
    assert r0["last_updated"] == kept["last_updated"]
    assert r1["id"] == skip["id"] and r1["version"] == "2"
    assert r1["action_parameters"] == {"ruleset": "current", "phase": "current"}
    assert "logging" not in r1
    assert r2["id"] not in {r["id"] for r in current} and r2["version"] == "1"

    # Zone-kind POST for a phase that has an entry point: 409.
    with pytest.raises(cloudflare.ConflictError):
        client.rulesets.create(zone_id=zone, kind="zone", name="again", phase=FIREWALL, rules=[])
    # Empty the entry point.
    emptied = d(client.rulesets.phases.update(ruleset_phase=FIREWALL, zone_id=zone, rules=[]))
    bumps.check()
    assert emptied["rules"] == [] and emptied["version"] == "11"


def test_sdk_rulesets_crud_pagination_and_other_phases(gateway: Gateway) -> None:
    client = gateway.sdk()
    zone = gateway.zone_id
    other_zone = gateway.zones["other.org"]
    bumps = Bumps(gateway)

    assert list(client.rulesets.list(zone_id=zone)) == []

    custom = d(
        client.rulesets.create(
            zone_id=zone,
            kind="custom",
            name="shared checks",
            phase=FIREWALL,
            description="a custom ruleset",
            rules=[{"action": "log", "expression": "cf.tls_client_auth.cert_presented"}],
        )
    )
    bumps.check()
    check_ruleset_shape(custom)
    assert custom["kind"] == "custom"
    assert custom["name"] == "shared checks"
    assert custom["version"] == "1"

    origin = d(
        client.rulesets.create(
            zone_id=zone,
            kind="zone",
            name="origins",
            phase=ORIGIN,
            rules=[
                {
                    "action": "route",
                    "expression": 'http.host eq "api.example.com"',
                    "action_parameters": {
                        "origin": {"host": "127.0.0.1", "port": 8443},
                        "host_header": "backend.internal",
                        "sni": {"value": "backend.internal"},
                    },
                },
                {
                    "action": "route",
                    "expression": 'http.host eq "b.example.com"',
                    "action_parameters": {"origin": {"port": 9000}},
                },
            ],
        )
    )
    bumps.check()
    assert origin["rules"][0]["action_parameters"] == {
        "origin": {"host": "127.0.0.1", "port": 8443},
        "host_header": "backend.internal",
        "sni": {"value": "backend.internal"},
    }
    assert origin["rules"][1]["action_parameters"] == {"origin": {"port": 9000}}
    # A kind "zone" ruleset is the phase's entry point.
    assert d(client.rulesets.phases.get(ruleset_phase=ORIGIN, zone_id=zone)) == origin

    headers = {
        "X-Client-Cert": {"operation": "set", "expression": "cf.tls_client_auth.cert_rfc9440"},
        "X-Cert-Chain": {
            "operation": "set",
            "expression": "cf.tls_client_auth.cert_chain_rfc9440",
        },
        "X-Gateway": {"operation": "set", "value": "mtlsgate"},
        "X-Forwarded-Client-Cert": {"operation": "remove"},
    }
    transform = d(
        client.rulesets.phases.update(
            ruleset_phase=TRANSFORM,
            zone_id=zone,
            name="client cert headers",
            rules=[
                {
                    "action": "rewrite",
                    "expression": "cf.tls_client_auth.cert_verified",
                    "action_parameters": {"headers": headers},
                }
            ],
        )
    )
    bumps.check()
    assert transform["kind"] == "zone" and transform["name"] == "client cert headers"
    assert transform["rules"][0]["action_parameters"] == {"headers": headers}

    # List: all three, without rules; cursor pagination walks them one at a time.
    listed = [d(r) for r in client.rulesets.list(zone_id=zone)]
    assert sorted(r["id"] for r in listed) == sorted([custom["id"], origin["id"], transform["id"]])
    for r in listed:
        check_ruleset_shape(r, with_rules=False)
    paged = [d(r) for r in client.rulesets.list(zone_id=zone, per_page=1)]
    assert paged == listed
    first_page = client.rulesets.list(zone_id=zone, per_page=2)
    pages = list(first_page.iter_pages())
    assert [len(p.result) for p in pages] == [2, 1]
    # Rulesets belong to their zone.
    assert list(client.rulesets.list(zone_id=other_zone)) == []
    with pytest.raises(cloudflare.NotFoundError):
        client.rulesets.get(custom["id"], zone_id=other_zone)

    # Update: rules and description replaced; name and kind stay.
    updated = d(
        client.rulesets.update(
            custom["id"],
            zone_id=zone,
            description="now two rules",
            rules=[
                {
                    "id": custom["rules"][0]["id"],
                    "action": "log",
                    "expression": "not cf.tls_client_auth.cert_presented",
                },
                {
                    "action": "block",
                    "expression": "not cf.tls_client_auth.cert_verified",
                    "action_parameters": {
                        "response": {
                            "status_code": 403,
                            "content": "<p>no</p>",
                            "content_type": "text/html",
                        }
                    },
                },
            ],
        )
    )
    bumps.check()
    assert updated["version"] == "2"
    assert updated["description"] == "now two rules"
    assert updated["name"] == "shared checks" and updated["kind"] == "custom"
    assert updated["rules"][0]["id"] == custom["rules"][0]["id"]
    assert updated["rules"][0]["version"] == "2"
    assert updated["rules"][0]["expression"] == "not cf.tls_client_auth.cert_presented"
    assert d(client.rulesets.get(custom["id"], zone_id=zone)) == updated

    # Delete: gone with its versions; the entry points stay.
    assert client.rulesets.delete(custom["id"], zone_id=zone) is None
    bumps.check()
    with pytest.raises(cloudflare.NotFoundError):
        client.rulesets.get(custom["id"], zone_id=zone)
    with pytest.raises(cloudflare.NotFoundError):
        client.rulesets.versions.list(custom["id"], zone_id=zone)
    remaining = sorted(d(r)["id"] for r in client.rulesets.list(zone_id=zone))
    assert remaining == sorted([origin["id"], transform["id"]])

    # Deleting an entry point lets the phase start over.
    client.rulesets.delete(origin["id"], zone_id=zone)
    bumps.check()
    with pytest.raises(cloudflare.NotFoundError):
        client.rulesets.phases.get(ruleset_phase=ORIGIN, zone_id=zone)
    assert list(client.rulesets.phases.versions.list(ruleset_phase=ORIGIN, zone_id=zone)) == []
    again = d(client.rulesets.phases.update(ruleset_phase=ORIGIN, zone_id=zone, rules=[]))
    bumps.check()
    assert again["id"] != origin["id"] and again["version"] == "1"


def test_sdk_dry_run_keeps_nothing(gateway: Gateway) -> None:
    client = gateway.sdk()
    zone = gateway.zone_id
    bumps = Bumps(gateway)
    with gateway.http() as c:
        r = c.put(
            f"/zones/{zone}/rulesets/phases/{FIREWALL}/entrypoint",
            params={"dry_run": "true"},
            json={
                "rules": [{"action": "block", "expression": "cf.tls_client_auth.cert_presented"}]
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["result"] is None
    bumps.unchanged()
    with pytest.raises(cloudflare.NotFoundError):
        client.rulesets.phases.get(ruleset_phase=FIREWALL, zone_id=zone)
