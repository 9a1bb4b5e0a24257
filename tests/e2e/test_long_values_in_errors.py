"""A client's value quoted in an error message is bounded: a ~1 MB rule expression, hostname,
action, setting value, stale_policy or JSON key is refused with a short v4 error that still
names the field and shows the value's beginning (or, for an expression, the fault's position),
not with a message as long as the value. Nothing is written. Through a real `mtlsgate serve`
on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.certs import openssl_root
from tests.harness import Gateway

# Characters in the long value: with the rest of the body, under the API's 1 MiB body limit.
BIG = 1_000_000
# What an error message may reach, whatever the value.
SHORT = 1000
ENTRY = "/zones/{zone}/rulesets/phases/http_request_firewall_custom/entrypoint"
ORIGIN_ENTRY = "/zones/{zone}/rulesets/phases/http_request_origin/entrypoint"


def short_error(
    r: httpx.Response, code: int, *, pointer: str | None = None, whole: bool = True
) -> str:
    """The 400 v4 envelope with `code`; its message (returned) is short, and so is the whole
    answer unless `whole` is False (a JSON pointer names a long key in full)."""
    where = f"{r.request.method} {r.request.url.path}"
    assert r.status_code == 400, (where, r.status_code, r.text[:2000])
    body = r.json()
    assert body["success"] is False and body["result"] is None, (where, r.text[:2000])
    error = body["errors"][0]
    message = error["message"]
    assert isinstance(message, str), (where, error)
    assert len(message) < SHORT, (where, len(message), message[:2000])
    assert error["code"] == code, (where, error["code"], message)
    if pointer is not None:
        assert error["source"]["pointer"] == pointer, (where, error.get("source"))
    if whole:
        assert len(r.content) < 2 * SHORT, (where, len(r.content), r.text[:2000])
    return str(message)


def quoted(text: str) -> str:
    """A pattern for `text` quoted, bounded, in a message: its beginning as repr() shows it,
    then the rest cut and its length given, as in 'aaaa…' (1000000 characters)."""
    return re.escape(repr(text[:50])[:-1]) + rf"[^']*…' \({len(text)} characters\)"


def test_long_rule_expression_is_refused_with_a_short_caret_message(gateway: Gateway) -> None:
    path = ENTRY.format(zone=gateway.zone_id)
    base = 'http.host eq "'
    with gateway.http() as c:
        # Over the 4096-character limit: the caret still points at the first character past it.
        expression = base + "a" * BIG + '"'
        r = c.put(path, json={"rules": [{"expression": expression, "action": "block"}]})
        message = short_error(r, 20021, pointer="/rules/0/expression")
        header, line, caret = message.split("\n")
        assert header == "Filter parsing error (1:4097):"
        assert line.startswith("…a") and line.endswith("a…"), line
        reason = f" expression is {len(expression)} characters long; the limit is 4096"
        assert re.fullmatch(r" +\^+" + re.escape(reason), caret), caret

        # Within the limit but on one long line: the fault near the end is shown with the
        # carets under it, in a window of the line.
        expression = base + "b" * 3900 + '" and nosuchfield'
        r = c.put(path, json={"rules": [{"expression": expression, "action": "block"}]})
        message = short_error(r, 20021, pointer="/rules/0/expression")
        header, line, caret = message.split("\n")
        fault = expression.index("nosuchfield")
        assert header == f"Filter parsing error (1:{fault + 1}):"
        at = caret.index("^")
        assert line[at : at + len("nosuchfield")] == "nosuchfield", (line, caret)
        assert caret[at:].startswith("^" * len("nosuchfield") + " ")
        assert line.startswith("…b")

        # Nothing was written.
        assert c.get(path).status_code == 404


def test_long_action_and_action_parameter_key(gateway: Gateway) -> None:
    path = ENTRY.format(zone=gateway.zone_id)
    with gateway.http() as c:
        action = "x" * BIG
        r = c.put(path, json={"rules": [{"expression": "true", "action": action}]})
        message = short_error(r, 20022, pointer="/rules/0/action")
        assert re.match("action " + quoted(action) + " is not supported in phase ", message)

        key = "k" * BIG
        rule = {"expression": "true", "action": "route", "action_parameters": {key: 1}}
        r = c.put(ORIGIN_ENTRY.format(zone=gateway.zone_id), json={"rules": [rule]})
        message = short_error(r, 20024, whole=False)
        assert re.match("unknown field " + quoted(key) + " in route action_parameters", message)

        assert c.get(path).status_code == 404
        assert c.get(ORIGIN_ENTRY.format(zone=gateway.zone_id)).status_code == 404


def test_long_hostname(gateway: Gateway) -> None:
    zone = gateway.zone_id
    assoc = f"/zones/{zone}/certificate_authorities/hostname_associations"
    access = f"/zones/{zone}/access/certificates/settings"
    name = "h" * BIG + ".example.com"
    with gateway.http() as c:
        r = c.put(assoc, json={"hostnames": ["ok.example.com", name]})
        message = short_error(r, 1003)
        label = quoted("h" * BIG)
        assert re.match(quoted(name) + " is not a valid hostname: label " + label, message)

        setting = {"hostname": name, "china_network": False, "client_certificate_forwarding": True}
        r = c.put(access, json={"settings": [setting]})
        message = short_error(r, 1003)
        assert re.match(quoted(name) + " is not a valid hostname", message), message

        assert c.get(assoc).json()["result"]["hostnames"] == []
        assert c.get(access).json()["result"] == []


def test_long_zone_setting_value(gateway: Gateway) -> None:
    path = f"/zones/{gateway.zone_id}/settings/ssl"
    with gateway.http() as c:
        before = c.get(path).json()["result"]
        value = "s" * BIG
        r = c.patch(path, json={"value": value})
        message = short_error(r, 1007, pointer="/value")
        pattern = "Invalid value for zone setting ssl: " + quoted(value) + "; use one of off, "
        assert re.match(pattern, message), message
        # Any JSON value: a long list is cut as repr() prints it.
        r = c.patch(path, json={"value": list(range(150_000))})
        message = short_error(r, 1007, pointer="/value")
        assert message.startswith("Invalid value for zone setting ssl: [0, 1, 2, 3, "), message
        assert c.get(path).json()["result"] == before


def test_long_stale_policy(gateway: Gateway, tmp_path: Path) -> None:
    ca = openssl_root(tmp_path / "ca", kind="ec")
    base = f"/accounts/{gateway.account_id}/mtls_certificates"
    with gateway.http() as c:
        r = c.post(base, json={"ca": True, "certificates": ca.cert_pem})
        assert r.status_code == 200, r.text
        ca_id = r.json()["result"]["id"]
        settings = f"{base}/{ca_id}/crl_settings"
        before: dict[str, Any] = c.get(f"{base}/{ca_id}/crl").json()["result"]
        policy = "p" * BIG
        message = short_error(c.patch(settings, json={"stale_policy": policy}), 1001)
        pattern = "stale_policy must be one of fail_open, fail_closed; got " + quoted(policy)
        assert re.fullmatch(pattern, message), message
        assert c.get(f"{base}/{ca_id}/crl").json()["result"] == before


def test_long_json_key(gateway: Gateway) -> None:
    records = f"/zones/{gateway.zone_id}/dns_records"
    key = "k" * BIG
    with gateway.http() as c:
        body = {"type": "A", "name": "x.example.com", "content": "127.0.0.1", key: 1}
        message = short_error(c.post(records, json=body), 1001, whole=False)
        assert re.fullmatch("unknown field " + quoted(key), message), message
        assert c.get(records).json()["result"] == []
