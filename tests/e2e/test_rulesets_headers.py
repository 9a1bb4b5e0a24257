"""Late-transform (`rewrite`) rules that name headers the edge owns, invalid header names or
values with control characters are refused by the Rulesets API, through a real `mtlsgate serve`
(SQLite and PostgreSQL) and through the official `cloudflare` SDK: a v4 error envelope with code
20024, a message naming the header and the reason, the JSON pointer of the header, and nothing
stored (the entry point, its versions and the config version are as before). Operations the
edge does apply are still accepted.

The list of edge-owned headers is edge/header_policy.py (docs/rulesets.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cloudflare
import httpx
import pytest

from tests.harness import Gateway, init_gateway

TRANSFORM = "http_request_late_transform"
ENTRY = f"/phases/{TRANSFORM}/entrypoint"
PARAMS = 20024
INVALID_BODY = 1001

# What the entry point holds before every test (each test leaves it so, or restores it).
BASELINE_HEADERS = {
    "X-Gateway": {"operation": "set", "value": "mtlsgate"},
    "CF-Connecting-IP": {"operation": "remove"},
}


def rewrite(headers: dict[str, Any], expression: str = "cf.tls_client_auth.cert_verified") -> Any:
    return {
        "action": "rewrite",
        "expression": expression,
        "action_parameters": {"headers": headers},
    }


def esc(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


@dataclass
class World:
    gw: Gateway
    zone: str
    entry: dict[str, Any]  # the late-transform entry point as created
    custom: dict[str, Any]  # a custom ruleset of the phase, with one rule

    def client(self) -> httpx.Client:
        return self.gw.http()

    @property
    def base(self) -> str:
        return f"/zones/{self.zone}/rulesets"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    database_url = None
    if request.param == "postgres":
        database_url = request.getfixturevalue("pg").create_database(f"rh{secrets.token_hex(6)}")
    tmp = tmp_path_factory.mktemp(f"rulesets-headers-{request.param}")
    gw = init_gateway(tmp / "data", database_url)
    gw.start()
    try:
        zone = gw.zone_id
        with gw.http() as c:
            entry = ok(
                c.put(
                    f"/zones/{zone}/rulesets{ENTRY}",
                    json={"rules": [rewrite(BASELINE_HEADERS)]},
                )
            )
            custom = ok(
                c.post(
                    f"/zones/{zone}/rulesets",
                    json={
                        "name": "shared headers",
                        "kind": "custom",
                        "phase": TRANSFORM,
                        "rules": [rewrite({"X-Shared": {"operation": "remove"}})],
                    },
                )
            )
        yield World(gw, zone, entry, custom)
    finally:
        gw.stop()


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    body = r.json()
    assert body["success"] is True and body["errors"] == [], body
    result: dict[str, Any] = body["result"]
    return result


def state(w: World) -> dict[str, Any]:
    """What the API shows of the phase, and the config version the edge watches."""
    with w.client() as c:
        return {
            "entry": ok(c.get(f"{w.base}{ENTRY}")),
            "entry_versions": c.get(f"{w.base}{ENTRY}/versions").json()["result"],
            "custom": ok(c.get(f"{w.base}/{w.custom['id']}")),
            "list": c.get(w.base).json()["result"],
            "config_version": httpx.get(f"http://127.0.0.1:{w.gw.port}/healthz").json()[
                "config_version"
            ],
        }


@pytest.fixture
def unchanged(world: World) -> Iterator[World]:
    """Every request of the test is refused: the state afterwards is the state before."""
    before = state(world)
    assert before["entry"]["rules"][0]["action_parameters"] == {"headers": BASELINE_HEADERS}
    yield world
    assert state(world) == before


def refused(r: httpx.Response, pointer: str, *contains: str, code: int = PARAMS) -> str:
    """The v4 error envelope, with one error: `code`, the pointer, a message with `contains`."""
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == 400, f"{where}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json"), where
    body = r.json()
    assert set(body) == {"success", "errors", "messages", "result"}, body
    assert body["success"] is False and body["result"] is None and body["messages"] == [], body
    assert len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert error["code"] == code, (where, error)
    assert error["source"] == {"pointer": pointer}, (where, error)
    message: str = error["message"]
    for text in contains:
        assert text in message, (where, message)
    return message


# --- the refused classes ---------------------------------------------------------------------

SET = {"operation": "set", "value": "x"}
SET_EXPR = {"operation": "set", "expression": "cf.tls_client_auth.cert_subject_dn"}
REMOVE = {"operation": "remove"}

# name -> (header name, operation, what the message must say besides the quoted name)
EDGE_OWNED: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    "cf-ray-set": ("CF-Ray", SET, ("cannot be set", "cf- or x-cf-", "belong to the edge")),
    "cf-ray-remove": ("cf-ray", REMOVE, ("cannot be removed", "cf- or x-cf-")),
    "cf-cert-verified-set": ("cf-cert-verified", SET, ("cannot be set", "cf-cert-*")),
    "cf-cert-presented-expr": ("Cf-Cert-Presented", SET_EXPR, ("cannot be set", "cf- or x-cf-")),
    "cf-client-cert-remove": ("Cf-Client-Cert-Sha256", REMOVE, ("cannot be removed",)),
    "cf-client-cert-der-set": ("Cf-Client-Cert-Der-Base64", SET, ("Cf-Client-Cert-*",)),
    "x-cf-set": ("X-CF-Worker", SET, ("cannot be set", "cf- or x-cf-")),
    "cf-connecting-ip-set": (
        "CF-Connecting-IP",
        SET,
        ("cannot be set", "visitor's IP address", "may only remove"),
    ),
    "x-forwarded-for-set": ("X-Forwarded-For", SET, ("cannot be set", "the edge writes it")),
    "x-forwarded-for-remove": ("x-forwarded-for", REMOVE, ("cannot be removed", "edge writes")),
    "x-real-ip-set": ("X-Real-IP", SET, ("cannot be set", "visitor's IP address")),
    "true-client-ip-expr": ("True-Client-IP", SET_EXPR, ("cannot be set", "may only remove")),
    "host-set": ("Host", SET, ("cannot be set", "frames the request", "host_header")),
    "host-upper-remove": ("HOST", REMOVE, ("cannot be removed", "frames the request")),
    "content-length-set": ("Content-Length", SET, ("frames the request",)),
    "transfer-encoding-remove": ("Transfer-Encoding", REMOVE, ("frames the request",)),
    "connection-set": ("Connection", SET, ("frames the request",)),
    "upgrade-remove": ("Upgrade", REMOVE, ("frames the request",)),
    "te-set": ("TE", SET, ("frames the request",)),
    "expect-set": ("Expect", SET, ("frames the request",)),
    "keep-alive-set": ("Keep-Alive", SET, ("frames the request",)),
}


@pytest.mark.parametrize("case", list(EDGE_OWNED))
def test_edge_owned_header_refused(case: str, unchanged: World) -> None:
    name, op, says = EDGE_OWNED[case]
    w = unchanged
    # Next to an operation the edge would apply: the whole rule is refused, not just the header.
    headers = {"X-Fine": {"operation": "set", "value": "ok"}, name: op}
    with w.client() as c:
        r = c.put(f"{w.base}{ENTRY}", json={"rules": [rewrite(BASELINE_HEADERS), rewrite(headers)]})
    refused(r, f"/rules/1/action_parameters/headers/{esc(name)}", repr(name), *says)


BAD_NAMES = {
    "space": "X Bad",
    "colon": "X-Bad:",
    "pseudo": ":authority",
    "tab": "X\tBad",
    "trailing-lf": "X-Bad\n",
    "crlf-injection": "X-A\r\nX-Injected",
    "del": "X\x7fBad",
    "empty": "",
    "non-ascii": "X-Ä",
    "parenthesis": "(X)",
    "slash": "a/b",
    "too-long": "X" * 257,
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_invalid_header_name_refused(case: str, unchanged: World) -> None:
    name = BAD_NAMES[case]
    w = unchanged
    with w.client() as c:
        r = c.put(f"{w.base}{ENTRY}", json={"rules": [rewrite({name: REMOVE})]})
    refused(
        r,
        f"/rules/0/action_parameters/headers/{esc(name)}",
        "is not a valid header name",
        "token (RFC 9110",
        "no spaces, colons or control characters",
    )


BAD_VALUES = {
    "crlf-injection": ("a\r\nX-Injected: 1", "'\\r'"),
    "lf": ("a\nb", "'\\n'"),
    "cr": ("a\rb", "'\\r'"),
    "escape": ("a\x1b[0m", "'\\x1b'"),
    "del": ("a\x7f", "'\\x7f'"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_control_characters_in_value_refused(case: str, unchanged: World) -> None:
    value, shown = BAD_VALUES[case]
    w = unchanged
    with w.client() as c:
        r = c.put(
            f"{w.base}{ENTRY}",
            json={"rules": [rewrite({"X-Value": {"operation": "set", "value": value}})]},
        )
    refused(
        r,
        "/rules/0/action_parameters/headers/X-Value/value",
        "'X-Value'",
        "must not contain control characters",
        f"found {shown}",
    )


def test_nul_in_a_header_name_or_value_refused(unchanged: World) -> None:
    # NUL anywhere in a body is refused before any route reads it (docs/api.md), with the
    # pointer of the string that holds it: the header name (a key) or its value.
    w = unchanged
    with w.client() as c:
        r = c.put(f"{w.base}{ENTRY}", json={"rules": [rewrite({"X\x00Bad": REMOVE})]})
        refused(r, "/rules/0/action_parameters/headers/X\x00Bad", "NUL", code=1001)
        r = c.put(
            f"{w.base}{ENTRY}",
            json={"rules": [rewrite({"X-Value": {"operation": "set", "value": "a\x00b"}})]},
        )
        refused(r, "/rules/0/action_parameters/headers/X-Value/value", "NUL", code=1001)


def test_refused_on_every_endpoint_and_in_dry_run(unchanged: World) -> None:
    """POST ruleset, PUT ruleset, POST rule, PATCH rule, dry runs: the same refusal, with the
    pointer of the body's shape."""
    w = unchanged
    with w.client() as c:
        entry = ok(c.get(f"{w.base}{ENTRY}"))
    entry_id, rule_id = entry["id"], entry["rules"][0]["id"]
    custom_id = w.custom["id"]
    bad = {"CF-Ray": SET}
    says = ("'CF-Ray'", "cannot be set", "cf- or x-cf-")
    rules_pointer = "/rules/0/action_parameters/headers/CF-Ray"
    rule_pointer = "/action_parameters/headers/CF-Ray"
    with w.client() as c:
        refused(
            c.post(
                w.base,
                json={"name": "n", "kind": "custom", "phase": TRANSFORM, "rules": [rewrite(bad)]},
            ),
            rules_pointer,
            *says,
        )
        refused(
            c.put(f"{w.base}/{custom_id}", json={"rules": [rewrite(bad)]}), rules_pointer, *says
        )
        refused(c.post(f"{w.base}/{entry_id}/rules", json=rewrite(bad)), rule_pointer, *says)
        refused(
            c.patch(f"{w.base}/{entry_id}/rules/{rule_id}", json=rewrite(bad)),
            rule_pointer,
            *says,
        )
        # PATCH of action_parameters alone (the rule keeps its action and expression).
        refused(
            c.patch(
                f"{w.base}/{entry_id}/rules/{rule_id}",
                json={"action_parameters": {"headers": bad}},
            ),
            rule_pointer,
            *says,
        )
        refused(
            c.put(f"{w.base}{ENTRY}", params={"dry_run": "true"}, json={"rules": [rewrite(bad)]}),
            rules_pointer,
            *says,
        )
        refused(
            c.post(
                f"{w.base}/{custom_id}/rules",
                params={"dry_run": "true"},
                json=rewrite({"X-Forwarded-For": REMOVE}),
            ),
            "/action_parameters/headers/X-Forwarded-For",
            "'X-Forwarded-For'",
            "cannot be removed",
        )


def test_allowed_operations_still_work(world: World) -> None:
    """What the edge applies is accepted and stored as sent: removing CF-Connecting-IP,
    X-Real-IP or True-Client-IP, replacing X-Forwarded-Proto, RFC 9440 Client-Cert, a tab in a
    value, names that merely look like the edge's."""
    w = world
    headers = {
        "CF-Connecting-IP": REMOVE,
        "X-Real-IP": REMOVE,
        "true-client-ip": REMOVE,
        "X-Forwarded-Proto": {"operation": "set", "value": "http"},
        "X-Forwarded-Host": {"operation": "set", "value": "api.example.com"},
        "Forwarded": REMOVE,
        "Client-Cert": {"operation": "set", "expression": "cf.tls_client_auth.cert_rfc9440"},
        "Client-Cert-Chain": {
            "operation": "set",
            "expression": "cf.tls_client_auth.cert_chain_rfc9440",
        },
        "X-Tabbed": {"operation": "set", "value": "a\tb"},
        "X-Symbols": {"operation": "set", "value": "_ :;.,\\/\"'?!(){}[]@<>=-+*#$&`|~^%"},
        "x-cfg": {"operation": "set", "value": "not the x-cf- prefix"},
        "cfx": REMOVE,
        "Cookie": REMOVE,
        "!#$%&'*+-.^_`|~": REMOVE,
        "H" * 256: REMOVE,
    }
    before = state(w)
    try:
        with w.client() as c:
            put = ok(c.put(f"{w.base}{ENTRY}", json={"rules": [rewrite(headers)]}))
            assert put["rules"][0]["action_parameters"] == {"headers": headers}
            assert put["version"] == str(int(before["entry"]["version"]) + 1)
            got = ok(c.get(f"{w.base}{ENTRY}"))
            assert got == put
            added = ok(
                c.post(
                    f"{w.base}/{w.entry['id']}/rules",
                    json=rewrite({"CF-Connecting-IP": REMOVE}, "true"),
                )
            )
            assert added["rules"][1]["action_parameters"] == {
                "headers": {"CF-Connecting-IP": REMOVE}
            }
        after = state(w)
        assert after["config_version"] > before["config_version"]
    finally:
        with w.client() as c:
            ok(c.put(f"{w.base}{ENTRY}", json={"rules": [rewrite(BASELINE_HEADERS)]}))


def test_sdk_raises_with_the_message(unchanged: World) -> None:
    w = unchanged
    client = w.gw.sdk()
    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.rulesets.phases.update(
            ruleset_phase=TRANSFORM,
            zone_id=w.zone,
            rules=[rewrite({"X-Gateway": SET, "CF-Ray": SET})],
        )
    assert exc.value.status_code == 400
    assert "'CF-Ray' cannot be set" in str(exc.value)
    assert "cf- or x-cf-" in str(exc.value)
    body = exc.value.body
    assert isinstance(body, dict)
    assert body["errors"][0]["code"] == PARAMS
    assert body["errors"][0]["source"] == {"pointer": "/rules/0/action_parameters/headers/CF-Ray"}

    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.rulesets.rules.create(
            w.entry["id"],
            zone_id=w.zone,
            action="rewrite",
            expression="true",
            action_parameters={"headers": {"X-Forwarded-For": {"operation": "remove"}}},
        )
    assert "'X-Forwarded-For' cannot be removed" in str(exc.value)

    with pytest.raises(cloudflare.BadRequestError) as exc:
        client.rulesets.phases.update(
            ruleset_phase=TRANSFORM,
            zone_id=w.zone,
            rules=[rewrite({"X-A": {"operation": "set", "value": "a\r\nX-Injected: 1"}})],
        )
    assert "must not contain control characters" in str(exc.value)

    # The SDK reads back the ruleset as it was.
    current = client.rulesets.phases.get(ruleset_phase=TRANSFORM, zone_id=w.zone)
    data = current if isinstance(current, dict) else current.to_dict(mode="json")
    assert [r["action_parameters"] for r in data["rules"]] == [{"headers": BASELINE_HEADERS}]


def test_route_hostname_with_newline_refused(unchanged: World) -> None:
    """A route's host_header and sni end up in the origin's Host line and the TLS SNI: a label
    with a trailing newline (which a `$`-anchored pattern would accept) is refused."""
    w = unchanged
    for key, value, pointer in (
        ("host_header", "api\n.example.com", "/rules/0/action_parameters/host_header"),
        ("sni", {"value": "api.example.com\n.x"}, "/rules/0/action_parameters/sni/value"),
        ("origin", {"host": "backend\n.internal"}, "/rules/0/action_parameters/origin/host"),
    ):
        rule = {"action": "route", "expression": "true", "action_parameters": {key: value}}
        with w.client() as c:
            r = c.put(f"{w.base}/phases/http_request_origin/entrypoint", json={"rules": [rule]})
        refused(r, pointer, "must be a hostname")
