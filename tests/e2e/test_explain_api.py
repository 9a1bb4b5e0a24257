"""POST /zones/{zone_id}/mtls/explain: input validation, permissions, and hostnames that are not
served or ask for no certificate (through a real `mtlsgate serve`, on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import sqlalchemy

from tests.certs import openssl_leaf, openssl_root
from tests.e2e.test_edge_config_sdk import TestCA
from tests.harness import Gateway

HOST = "api.example.com"


def explain_path(gw: Gateway, zone: str | None = None) -> str:
    return f"/zones/{zone or gw.zone_id}/mtls/explain"


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["result"] is None
    assert len(body["errors"]) >= 1
    first: dict[str, Any] = body["errors"][0]
    return first


def test_input_is_validated_with_clear_errors(gateway: Gateway, tmp_path: Path) -> None:
    ca = openssl_root(tmp_path, kind="ec", cn="Devices CA")
    leaf = openssl_leaf(tmp_path, ca, kind="ec")
    url = explain_path(gateway)
    with gateway.http() as c:
        e = error(c.post(url, json={"certificates": leaf.cert_pem}), 400)
        assert e["message"] == "hostname is required"
        e = error(c.post(url, json={"hostname": HOST}), 400)
        assert e["message"] == "certificates is required"
        e = error(c.post(url, json={"hostname": HOST, "certificates": "", "port": 1}), 400)
        assert "unknown field 'port'" in e["message"]
        e = error(c.post(url, json={"hostname": HOST, "certificates": "not a pem"}), 400)
        assert e["code"] == 1460 and "not a valid PEM certificate chain" in e["message"]
        damaged = leaf.cert_pem.replace("\n", "", 3)[:-60] + "\n-----END CERTIFICATE-----\n"
        e = error(c.post(url, json={"hostname": HOST, "certificates": damaged}), 400)
        assert e["code"] == 1460
        # A pasted private key is refused for what it is, and never echoed back.
        r = c.post(url, json={"hostname": HOST, "certificates": leaf.cert_pem + leaf.key_pem})
        e = error(r, 400)
        assert e["code"] == 1460 and "PRIVATE KEY block" in e["message"]
        assert leaf.key_pem.splitlines()[1] not in r.text
        e = error(c.post(url, json={"hostname": HOST, "certificates": 5}), 400)
        assert e["message"].startswith("certificates:")
        e = error(c.post(url, json={"hostname": "bad host", "certificates": ""}), 400)
        assert e["code"] == 1003
        e = error(c.post(url, json={"hostname": "*.example.com", "certificates": ""}), 400)
        assert "wildcard" in e["message"]
        e = error(c.post(url, json={"hostname": "api.other.org", "certificates": ""}), 400)
        assert e["code"] == 1004 and "not in zone example.com" in e["message"]
        for path in ("no-slash", "/with space", "/tab\t", "/" + "a" * 9000):
            e = error(c.post(url, json={"hostname": HOST, "certificates": "", "path": path}), 400)
            assert e["code"] == 1461, path
        for method in ("G ET", "", "FETCH"):
            body = {"hostname": HOST, "certificates": "", "method": method}
            assert error(c.post(url, json=body), 400)["code"] == 1462, method
        # A bad zone id in the path, and a zone of nobody's.
        e = error(
            c.post("/zones/nothex/mtls/explain", json={"hostname": HOST, "certificates": ""}), 400
        )
        assert e["code"] == 7003
        nobody = explain_path(gateway, "0" * 32)
        e = error(c.post(nobody, json={"hostname": HOST, "certificates": ""}), 403)
        assert e["code"] == 10000


def test_permission_is_ssl_and_certificates_read(gateway: Gateway) -> None:
    body = {"hostname": HOST, "certificates": ""}
    dns_only = gateway.cli_json("token", "create", "--permission", "DNS Read")["api_token"]
    ssl_read = gateway.cli_json(
        "token", "create", "--permission", "SSL and Certificates Read", "--zone", "example.com"
    )["api_token"]
    with gateway.http(dns_only) as c:
        assert error(c.post(explain_path(gateway), json=body), 403)["code"] == 10000
    with gateway.http(ssl_read) as c:
        assert c.post(explain_path(gateway), json=body).status_code == 200
        # Read on example.com says nothing about other.org.
        other = gateway.zones["other.org"]
        other_body = {"hostname": "api.other.org", "certificates": ""}
        assert error(c.post(explain_path(gateway, other), json=other_body), 403)["code"] == 10000


def test_unserved_and_plain_hostnames(gateway: Gateway, tmp_path: Path) -> None:
    ca = openssl_root(tmp_path, kind="ec", cn="Devices CA")
    leaf = openssl_leaf(tmp_path, ca, kind="ec")
    url = explain_path(gateway)
    with gateway.http() as c:
        r = c.post(url, json={"hostname": HOST, "certificates": leaf.cert_pem})
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        assert result["served"] is False and result["client_auth"] is None
        assert result["decision"]["outcome"] == "handshake_failure"
        assert "not served" in result["explanation"]

        r = c.post(
            f"/zones/{gateway.zone_id}/dns_records",
            json={"type": "A", "name": HOST, "content": "127.0.0.1", "proxied": True},
        )
        assert r.status_code == 200, r.text
        r = c.put(
            f"/zones/{gateway.zone_id}/rulesets/phases/http_request_firewall_custom/entrypoint",
            json={
                "rules": [
                    {
                        "expression": "not cf.tls_client_auth.cert_verified",
                        "action": "block",
                        "action_parameters": {
                            "response": {
                                "status_code": 401,
                                "content": "who are you?",
                                "content_type": "text/plain",
                            }
                        },
                    }
                ]
            },
        )
        assert r.status_code == 200, r.text
        rule_id = r.json()["result"]["rules"][0]["id"]
        # Served, but no CA is associated: the edge never asks, every field is its default.
        r = c.post(url, json={"hostname": HOST.upper() + ".", "certificates": leaf.cert_pem})
        result = r.json()["result"]
        assert result["served"] is True and result["hostname"] == HOST
        auth = result["client_auth"]
        assert auth["requested"] is False and auth["presented"] is False
        assert auth["status"] == "none"
        assert set(auth["fields"].values()) <= {False, ""}
        assert len(auth["fields"]) == 21
        assert result["candidate_cas"] == [] and result["anchor"] is None
        assert "does not ask" in result["anchor_reason"]
        assert result["decision"] == {
            "action": "block", "rule_id": rule_id, "status": 401, "outcome": "block",
            "logged_by": None,
        }  # fmt: skip
        assert result["request"] == {"method": "GET", "path": "/"}

        # Associated with the managed CA: now it asks, and this leaf is from another CA.
        r = c.put(
            f"/zones/{gateway.zone_id}/certificate_authorities/hostname_associations",
            json={"hostnames": [HOST]},
        )
        assert r.status_code == 200, r.text
        r = c.post(url, json={"hostname": HOST, "certificates": leaf.cert_pem,
                              "path": "/x?y=1", "method": "post"})  # fmt: skip
        result = r.json()["result"]
        auth = result["client_auth"]
        assert auth["requested"] and auth["presented"] and not auth["verified"]
        assert (auth["error_code"], auth["status"]) == (20, "untrusted")
        assert auth["error_reason"] == "unable to get local issuer certificate"
        assert auth["fields"]["cf.tls_client_auth.cert_subject_dn"] == "CN=Test Client"
        assert [c["kind"] for c in result["candidate_cas"]] == ["managed"]
        assert result["request"] == {"method": "POST", "path": "/x?y=1"}
        assert result["decision"]["status"] == 401


def test_a_name_served_by_a_subzone_is_that_zones_to_explain(gateway: Gateway) -> None:
    zones = gateway.cli_json("init", "--zone", "sub.example.com")["zones"]
    sub = zones["sub.example.com"]
    name = "a.sub.example.com"
    with gateway.http() as c:
        r = c.post(
            f"/zones/{sub}/dns_records",
            json={"type": "A", "name": name, "content": "127.0.0.1", "proxied": True},
        )
        assert r.status_code == 200, r.text
        body = {"hostname": name, "certificates": ""}
        parent = c.post(explain_path(gateway), json=body).json()["result"]
        assert parent["served"] is False and parent["client_auth"] is None
        assert parent["decision"]["outcome"] == "other_zone"
        own = c.post(explain_path(gateway, sub), json=body).json()["result"]
        assert own["served"] is True and own["zone_id"] == sub
        assert own["decision"]["outcome"] == "origin"


def _sql(gw: Gateway, statement: str, **params: str) -> None:
    """Damage a row directly in the store, as a bad migration or a hand edit would."""
    url = gw.database_url or f"sqlite:///{gw.data_dir / 'mtlsgate.db'}"
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sqlalchemy.text(statement), params).rowcount == 1
    finally:
        engine.dispose()


def test_another_accounts_bad_row_does_not_break_explain(gateway: Gateway) -> None:
    """explain reads the store with the edge's loader, which reads every account. A custom
    certificate key it cannot unseal is not even opened (explain brings its own server
    identity); any other row that does not load answers a clear 503, naming nothing of the
    other account, with the cause in the gateway's log."""
    b = gateway.cli_json("account", "create", "--name", "B", "--zone", "b.test")
    b_zone = b["zones"]["b.test"]
    _leaf, chain, key = TestCA().issue(["api.b.test"])
    with gateway.http(b["api_token"]) as c:
        r = c.post(f"/zones/{b_zone}/custom_certificates",
                   json={"certificate": chain, "private_key": key})  # fmt: skip
        assert r.status_code == 200, r.text
        b_cert = r.json()["result"]["id"]
        r = c.put(f"/zones/{b_zone}/certificate_authorities/hostname_associations",
                  json={"hostnames": ["api.b.test"]})  # fmt: skip
        assert r.status_code == 200, r.text
    body = {"hostname": HOST, "certificates": ""}
    _sql(gateway, "UPDATE custom_certificates SET private_key_sealed = 'damaged' WHERE id = :i",
         i=b_cert)  # fmt: skip
    with gateway.http() as c:
        r = c.post(explain_path(gateway), json=body)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["hostname"] == HOST

    _sql(gateway, "UPDATE managed_cas SET certificate_pem = 'damaged' WHERE account_id = :a",
         a=b["account_id"])  # fmt: skip
    with gateway.http() as c:
        r = c.post(explain_path(gateway), json=body)
    e = error(r, 503)
    assert e["code"] == 1463 and "configuration does not load" in e["message"]
    assert "b.test" not in r.text and b["account_id"] not in r.text
    log = (gateway.data_dir.parent / f"serve-{gateway.port}.log").read_text(errors="replace")
    assert "explain: the edge configuration loader failed" in log
