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


def test_an_unpaired_surrogate_is_refused_before_any_write(gateway: Gateway) -> None:
    # JSON admits "\ud800" alone; no UTF-8 can hold it: the write (or the answer quoting it)
    # failed with a 500, after the record was stored in one case (the answer failed).
    zone = gateway.zone_id
    dns = f"/zones/{zone}/dns_records"
    rec = '"type": "A", "name": "x.example.com", "content": "127.0.0.1", "proxied": true'
    rules_path = f"/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint"
    with gateway.http() as c:
        for method, path, raw, pointer in (
            ("POST", dns, "{" + rec + r', "comment": "a\ud800b"}', "/comment"),
            ("POST", dns, "{" + rec + r', "tags": ["t:\udfff"]}', "/tags/0"),
            ("POST", dns, "{" + rec + r', "\ud800": 1}', "/(a key)"),
            ("PUT", rules_path, r'{"rules": [{"expression": "\udc00", "action": "block"}]}',
             "/rules/0/expression"),
        ):  # fmt: skip
            r = c.request(method, path, content=raw.encode(),
                          headers={"content-type": "application/json"})  # fmt: skip
            assert r.status_code == 400, (raw, r.status_code, r.text)
            error = r.json()["errors"][0]
            assert error["code"] == 1001 and "unpaired surrogate" in error["message"], r.text
            assert error["source"]["pointer"] == pointer, r.text
        assert c.get(dns).json()["result"] == []
        assert c.get(rules_path).status_code == 404
        # A pair is one character, stored as such.
        r = c.post(dns, content=("{" + rec + r', "comment": "\ud83d\ude00"}').encode(),
                   headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["result"]["comment"] == "\U0001f600"


def test_nul_in_the_query_string_is_refused(gateway: Gateway) -> None:
    # The filters reach the database as text: on PostgreSQL a NUL failed there with a 500.
    with gateway.http() as c:
        for query in ("/zones?account.id=%00", "/zones?name=a%00b", "/zones?%00=1"):
            r = c.get(query)
            assert r.status_code == 400, (query, r.status_code, r.text)
            error = r.json()["errors"][0]
            assert error["code"] == 1001 and "NUL" in error["message"], r.text
        assert c.get("/zones?name=a%01b").status_code == 200
