"""A NUL character in any string of an API body is refused alike on both stores (PostgreSQL
cannot store it: the write used to fail with a 500 there, and one route reset the connection),
before anything is written; an escaped backslash followed by "u0000" is ordinary text."""

from __future__ import annotations

from tests.harness import Gateway


def test_nul_in_a_json_string_is_refused_before_any_write(gateway: Gateway) -> None:
    zone = gateway.zone_id
    record = {"type": "A", "name": "x.example.com", "content": "127.0.0.1", "proxied": True}
    rules_path = f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint"
    with gateway.http() as c:
        for method, path, body in (
            ("POST", f"/zones/{zone}/dns_records", {**record, "comment": "a\u0000b"}),
            ("PUT", rules_path,
             {"rules": [{"expression": "true", "action": "block", "description": "a\u0000b"}]}),
            ("POST", f"/accounts/{gateway.account_id}/mtls_certificates",
             {"name": "\u0000", "ca": True, "certificates": "x"}),
        ):  # fmt: skip
            r = c.request(method, path, json=body)
            assert r.status_code == 400, (path, r.status_code, r.text)
            error = r.json()["errors"][0]
            assert error["code"] == 1001 and "NUL" in error["message"], r.text
        # Nothing was written.
        assert c.get(f"/zones/{zone}/dns_records").json()["result"] == []
        assert c.get(rules_path).status_code == 404
        # A literal backslash and "u0000" is text like any other.
        r = c.post(f"/zones/{zone}/dns_records", json={**record, "comment": "a\\u0000b"})
        assert r.status_code == 200, r.text
        assert r.json()["result"]["comment"] == "a\\u0000b"
