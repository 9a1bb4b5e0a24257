"""Every way the Rulesets API refuses a request, with raw HTTP against a real `mtlsgate serve`
(SQLite and PostgreSQL): the v4 error envelope, the code and `source.pointer`, the caret
diagnostic for bad expressions, permissions, and that nothing was half-written.

The gateway and its rulesets are set up once per backend (module scope); every case must be
refused and leave the store exactly as it was (rulesets, versions and config version).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.harness import Gateway, init_gateway

FIREWALL = "http_request_firewall_custom"
ORIGIN = "http_request_origin"
TRANSFORM = "http_request_late_transform"
PHASES = (FIREWALL, ORIGIN, TRANSFORM)

INVALID_BODY = 1001
ROUTE = 7003
FORBIDDEN = 10000
INVALID_EXPRESSION = 20021
UNSUPPORTED_ACTION = 20022
CHALLENGE = 20023
PARAMS = 20024
POSITION = 20025
PHASE = 20026
ENTRY_POINT_EXISTS = 20027
RULESET_NOT_FOUND = 20028
RULE_NOT_FOUND = 20029
VERSION_NOT_FOUND = 20030
INVALID_RULE = 20031
INVALID_RULESET = 20032

OK_RULE = {"action": "block", "expression": "not cf.tls_client_auth.cert_verified"}


def assert_error(
    r: httpx.Response,
    status: int,
    code: int,
    *,
    pointer: str | None = None,
    contains: str | None = None,
) -> dict[str, Any]:
    where = f"{r.request.method} {r.request.url}"
    assert r.status_code == status, f"{where}: expected {status}, got {r.status_code}: {r.text}"
    assert r.headers.get("content-type", "").startswith("application/json"), where
    body = r.json()
    assert set(body) == {"success", "errors", "messages", "result"}, (where, body)
    assert body["success"] is False and body["result"] is None, (where, body)
    errors = body["errors"]
    assert errors, (where, body)
    for err in errors:
        assert isinstance(err["code"], int) and err["code"] >= 1000, (where, err)
        assert isinstance(err["message"], str) and len(err["message"]) >= 10, (where, err)
    first: dict[str, Any] = errors[0]
    assert first["code"] == code, f"{where}: expected code {code}: {errors}"
    if pointer is not None:
        assert first.get("source", {}).get("pointer") == pointer, (where, first)
    if contains is not None:
        assert contains in first["message"], (where, first)
    return first


def assert_ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    body: dict[str, Any] = r.json()
    assert body["success"] is True
    return body


@dataclass
class World:
    gw: Gateway
    zone: str
    other_zone: str
    firewall: dict[str, Any]
    origin: dict[str, Any]
    transform: dict[str, Any]
    custom: dict[str, Any]
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        return self.gw.http(token)

    def base(self) -> str:
        return f"/zones/{self.zone}/rulesets"


def snapshot(w: World) -> dict[str, Any]:
    """Everything the Rulesets API shows of the zone, and the config version."""
    state: dict[str, Any] = {}
    with w.client() as c:
        listed = assert_ok(c.get(w.base()))["result"]
        state["list"] = listed
        for rs in listed:
            state[rs["id"]] = assert_ok(c.get(f"{w.base()}/{rs['id']}"))["result"]
            state[rs["id"] + "/versions"] = assert_ok(c.get(f"{w.base()}/{rs['id']}/versions"))[
                "result"
            ]
        for phase in PHASES:
            path = f"{w.base()}/phases/{phase}/entrypoint/versions"
            state[phase] = assert_ok(c.get(path))["result"]
    state["config_version"] = httpx.get(f"http://127.0.0.1:{w.gw.port}/healthz").json()[
        "config_version"
    ]
    return state


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    database_url = None
    if request.param == "postgres":
        name = f"rs{secrets.token_hex(6)}"
        database_url = request.getfixturevalue("pg").create_database(name)
    tmp = tmp_path_factory.mktemp(f"rulesets-{request.param}")
    gw = init_gateway(tmp / "data", database_url, zones=("example.com", "other.org"))
    tokens = {
        "ssl_read": gw.cli_json("token", "create", "--permission", "SSL and Certificates Read"),
        "waf_read": gw.cli_json(
            "token", "create", "--permission", "Zone WAF Read", "--zone", "example.com"
        ),
        "waf_write_other": gw.cli_json(
            "token", "create", "--permission", "Zone WAF Write", "--zone", "other.org"
        ),
        "waf_write_account": gw.cli_json("token", "create", "--permission", "Zone WAF Write"),
    }
    gw.start()
    try:
        zone = gw.zones["example.com"]
        base = f"/zones/{zone}/rulesets"
        with gw.http() as c:
            firewall = assert_ok(
                c.put(
                    f"{base}/phases/{FIREWALL}/entrypoint",
                    json={
                        "rules": [
                            OK_RULE,
                            {
                                "action": "skip",
                                "expression": 'http.request.uri.path eq "/health"',
                                "action_parameters": {"ruleset": "current"},
                                "ref": "health",
                            },
                        ]
                    },
                )
            )["result"]
            origin = assert_ok(
                c.put(
                    f"{base}/phases/{ORIGIN}/entrypoint",
                    json={
                        "rules": [
                            {
                                "action": "route",
                                "expression": 'http.host eq "api.example.com"',
                                "action_parameters": {"origin": {"port": 8443}},
                            }
                        ]
                    },
                )
            )["result"]
            transform = assert_ok(
                c.put(
                    f"{base}/phases/{TRANSFORM}/entrypoint",
                    json={
                        "rules": [
                            {
                                "action": "rewrite",
                                "expression": "cf.tls_client_auth.cert_presented",
                                "action_parameters": {
                                    "headers": {"X-Cert": {"operation": "remove"}}
                                },
                            }
                        ]
                    },
                )
            )["result"]
            custom = assert_ok(
                c.post(
                    base,
                    json={"name": "custom", "kind": "custom", "phase": FIREWALL, "rules": []},
                )
            )["result"]
        yield World(
            gw=gw,
            zone=zone,
            other_zone=gw.zones["other.org"],
            firewall=firewall,
            origin=origin,
            transform=transform,
            custom=custom,
            tokens={k: v["api_token"] for k, v in tokens.items()},
        )
    finally:
        gw.stop()


@pytest.fixture
def unchanged(world: World) -> Iterator[World]:
    """The test's requests must all be refused: the state afterwards is the state before."""
    before = snapshot(world)
    yield world
    assert snapshot(world) == before


# --- the cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # formatted with fw (firewall entry point id), rule (its first rule id), ...
    body: Any
    status: int
    code: int
    pointer: str | None = None
    contains: str | None = None


FW = "/phases/http_request_firewall_custom/entrypoint"
OR = "/phases/http_request_origin/entrypoint"
TR = "/phases/http_request_late_transform/entrypoint"


def rules(*rs: dict[str, Any]) -> dict[str, Any]:
    return {"rules": list(rs)}


def block_response(**response: Any) -> dict[str, Any]:
    return {**OK_RULE, "action_parameters": {"response": response}}


def rewrite(headers: Any) -> dict[str, Any]:
    return {
        "action": "rewrite",
        "expression": "cf.tls_client_auth.cert_presented",
        "action_parameters": {"headers": headers},
    }


def route(params: Any) -> dict[str, Any]:
    return {
        "action": "route",
        "expression": 'http.host eq "a.example.com"',
        "action_parameters": params,
    }


GOOD_RESPONSE = {"status_code": 401, "content": "no", "content_type": "text/plain"}
UNKNOWN = "0123456789abcdef0123456789abcdef"

CASES: dict[str, Case] = {
    # expressions
    "bad-expression-second-rule": Case(
        "PUT",
        FW,
        rules(OK_RULE, {"action": "block", "expression": 'http.host eq "a" and'}),
        400,
        INVALID_EXPRESSION,
        "/rules/1/expression",
        "Filter parsing error (1:21)",
    ),
    "unknown-field-in-expression": Case(
        "PUT",
        FW,
        rules({"action": "block", "expression": "cf.nope"}),
        400,
        INVALID_EXPRESSION,
        "/rules/0/expression",
        "^",
    ),
    "empty-expression": Case(
        "PUT",
        FW,
        rules({"action": "block", "expression": ""}),
        400,
        INVALID_EXPRESSION,
        "/rules/0/expression",
    ),
    "expression-too-long": Case(
        "PUT",
        FW,
        rules({"action": "block", "expression": 'http.host eq "' + "a" * 4100 + '"'}),
        400,
        INVALID_EXPRESSION,
        "/rules/0/expression",
        "4096",
    ),
    "expression-not-string": Case(
        "PUT",
        FW,
        rules({"action": "block", "expression": 1}),
        400,
        INVALID_BODY,
        "/rules/0/expression",
    ),
    "expression-missing": Case(
        "PUT", FW, rules({"action": "block"}), 400, INVALID_BODY, "/rules/0/expression"
    ),
    "single-rule-bad-expression": Case(
        "POST",
        "/{fw}/rules",
        {"action": "block", "expression": "http.host eq"},
        400,
        INVALID_EXPRESSION,
        "/expression",
        "Filter parsing error",
    ),
    "patch-bad-expression": Case(
        "PATCH",
        "/{fw}/rules/{rule}",
        {"expression": "not not"},
        400,
        INVALID_EXPRESSION,
        "/expression",
        "Filter parsing error",
    ),
    # fields
    "unknown-field-in-rule": Case(
        "PUT", FW, rules({**OK_RULE, "foo": 1}), 400, INVALID_BODY, "/rules/0/foo", "foo"
    ),
    "unknown-field-in-ruleset": Case(
        "PUT", FW, {"rules": [], "bar": True}, 400, INVALID_BODY, "/bar"
    ),
    "position-in-ruleset-rule": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "position": {"index": 1}}),
        400,
        INVALID_BODY,
        "/rules/0/position",
    ),
    "rules-missing-on-put": Case("PUT", FW, {"description": "x"}, 400, INVALID_BODY, "/rules"),
    "enabled-not-bool": Case(
        "PUT", FW, rules({**OK_RULE, "enabled": "yes"}), 400, INVALID_BODY, "/rules/0/enabled"
    ),
    "action-parameters-not-object": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action_parameters": [1]}),
        400,
        INVALID_BODY,
        "/rules/0/action_parameters",
    ),
    "nul-in-description": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "description": "a\x00b"}),
        400,
        INVALID_BODY,
        "/rules/0/description",
    ),
    "description-too-long": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "description": "d" * 1025}),
        400,
        INVALID_BODY,
        "/rules/0/description",
    ),
    "body-not-object": Case("PUT", FW, [1, 2], 400, INVALID_BODY),
    # actions
    "unsupported-action": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action": "allow"}),
        400,
        UNSUPPORTED_ACTION,
        "/rules/0/action",
        "block, log, skip",
    ),
    "execute-refused": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action": "execute"}),
        400,
        UNSUPPORTED_ACTION,
        "/rules/0/action",
    ),
    "managed-challenge-refused": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action": "managed_challenge"}),
        400,
        CHALLENGE,
        "/rules/0/action",
        "no browser challenges",
    ),
    "js-challenge-refused": Case(
        "POST",
        "/{fw}/rules",
        {**OK_RULE, "action": "js_challenge"},
        400,
        CHALLENGE,
        "/action",
        "no browser challenges",
    ),
    "challenge-refused": Case(
        "PATCH",
        "/{fw}/rules/{rule}",
        {"action": "challenge"},
        400,
        CHALLENGE,
        "/action",
        "no browser challenges",
    ),
    "block-in-origin-phase": Case(
        "PUT", OR, rules(OK_RULE), 400, UNSUPPORTED_ACTION, "/rules/0/action", "route"
    ),
    "route-in-firewall-phase": Case(
        "PUT", FW, rules(route({"origin": {"port": 1}})), 400, UNSUPPORTED_ACTION, "/rules/0/action"
    ),
    "logging-on-block": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "logging": {"enabled": True}}),
        400,
        INVALID_RULE,
        "/rules/0/logging",
    ),
    # `true` is a valid expression (Cloudflare's rule for every request): the parameters are
    # what is refused.
    "log-with-parameters": Case(
        "PUT",
        FW,
        rules({"action": "log", "expression": "true", "action_parameters": {"a": 1}}),
        400,
        PARAMS,
        "/rules/0/action_parameters",
    ),
    "log-with-parameters-valid-expression": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action": "log", "action_parameters": {"a": 1}}),
        400,
        PARAMS,
        "/rules/0/action_parameters",
    ),
    # block responses
    "block-status-399": Case(
        "PUT",
        FW,
        rules(block_response(**{**GOOD_RESPONSE, "status_code": 399})),
        400,
        PARAMS,
        "/rules/0/action_parameters/response/status_code",
        "400 to 499",
    ),
    "block-status-500": Case(
        "PUT",
        FW,
        rules(block_response(**{**GOOD_RESPONSE, "status_code": 500})),
        400,
        PARAMS,
        "/rules/0/action_parameters/response/status_code",
    ),
    "block-status-string": Case(
        "PUT",
        FW,
        rules(block_response(**{**GOOD_RESPONSE, "status_code": "403"})),
        400,
        PARAMS,
        "/rules/0/action_parameters/response/status_code",
    ),
    "block-bad-content-type": Case(
        "PUT",
        FW,
        rules(block_response(**{**GOOD_RESPONSE, "content_type": "text/csv"})),
        400,
        PARAMS,
        "/rules/0/action_parameters/response/content_type",
        "text/html",
    ),
    "block-missing-content": Case(
        "PUT",
        FW,
        rules(block_response(status_code=403, content_type="text/plain")),
        400,
        PARAMS,
        "/rules/0/action_parameters/response/content",
    ),
    "block-empty-content": Case(
        "PUT",
        FW,
        rules(block_response(**{**GOOD_RESPONSE, "content": ""})),
        400,
        PARAMS,
        "/rules/0/action_parameters/response/content",
    ),
    "block-content-too-long": Case(
        "PUT",
        FW,
        rules(block_response(**{**GOOD_RESPONSE, "content": "é" * 1025})),
        400,
        PARAMS,
        "/rules/0/action_parameters/response/content",
        "2048",
    ),
    "block-unknown-parameter": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action_parameters": {"response": GOOD_RESPONSE, "x": 1}}),
        400,
        PARAMS,
        "/rules/0/action_parameters/x",
    ),
    # skip
    "skip-phases-refused": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action": "skip", "action_parameters": {"phases": ["http_ratelimit"]}}),
        400,
        PARAMS,
        "/rules/0/action_parameters/phases",
        'ruleset: "current"',
    ),
    "skip-without-parameters": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action": "skip"}),
        400,
        PARAMS,
        "/rules/0/action_parameters",
    ),
    "skip-ruleset-not-current": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "action": "skip", "action_parameters": {"ruleset": "x"}}),
        400,
        PARAMS,
        "/rules/0/action_parameters/ruleset",
    ),
    "skip-phase-in-custom-ruleset": Case(
        "PUT",
        "/{custom}",
        rules({**OK_RULE, "action": "skip", "action_parameters": {"phase": "current"}}),
        400,
        PARAMS,
        "/rules/0/action_parameters/phase",
        "entry point",
    ),
    # route
    "route-port-out-of-range": Case(
        "PUT",
        OR,
        rules(route({"origin": {"port": 70000}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/origin/port",
        "65535",
    ),
    "route-port-zero": Case(
        "PUT",
        OR,
        rules(route({"origin": {"port": 0}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/origin/port",
    ),
    "route-bad-host": Case(
        "PUT",
        OR,
        rules(route({"origin": {"host": "bad host!"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/origin/host",
    ),
    "route-empty": Case(
        "PUT", OR, rules(route({})), 400, PARAMS, "/rules/0/action_parameters", "at least one"
    ),
    "route-sni-ip": Case(
        "PUT",
        OR,
        rules(route({"sni": {"value": "10.0.0.1"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/sni/value",
    ),
    "route-unknown-key": Case(
        "PUT",
        OR,
        rules(route({"origin": {"port": 1}, "timeout": 3})),
        400,
        PARAMS,
        "/rules/0/action_parameters/timeout",
    ),
    # rewrite
    "header-name-invalid": Case(
        "PUT",
        TR,
        rules(rewrite({"X Bad": {"operation": "remove"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/headers/X Bad",
        "RFC 7230",
    ),
    "header-name-slash-escaped": Case(
        "PUT",
        TR,
        rules(rewrite({"a/b": {"operation": "remove"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/headers/a~1b",
    ),
    "header-value-and-expression": Case(
        "PUT",
        TR,
        rules(rewrite({"X-A": {"operation": "set", "value": "v", "expression": '"x"'}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/headers/X-A",
        "exactly one",
    ),
    "header-set-neither": Case(
        "PUT",
        TR,
        rules(rewrite({"X-A": {"operation": "set"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/headers/X-A",
    ),
    "header-expression-not-string": Case(
        "PUT",
        TR,
        rules(
            rewrite({"X-A": {"operation": "set", "expression": "cf.tls_client_auth.cert_verified"}})
        ),
        400,
        INVALID_EXPRESSION,
        "/rules/0/action_parameters/headers/X-A/expression",
        "String",
    ),
    "header-bad-operation": Case(
        "PUT",
        TR,
        rules(rewrite({"X-A": {"operation": "add", "value": "v"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/headers/X-A/operation",
    ),
    "header-reserved": Case(
        "PUT",
        TR,
        rules(rewrite({"Host": {"operation": "set", "value": "x"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/headers/Host",
    ),
    "header-value-newline": Case(
        "PUT",
        TR,
        rules(rewrite({"X-A": {"operation": "set", "value": "a\r\nB: c"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/headers/X-A/value",
    ),
    "header-twice": Case(
        "PUT",
        TR,
        rules(rewrite({"X-A": {"operation": "remove"}, "x-a": {"operation": "remove"}})),
        400,
        PARAMS,
        "/rules/0/action_parameters/headers/x-a",
    ),
    "headers-empty": Case(
        "PUT", TR, rules(rewrite({})), 400, PARAMS, "/rules/0/action_parameters/headers"
    ),
    # positions
    "position-two-keys": Case(
        "POST",
        "/{fw}/rules",
        {**OK_RULE, "position": {"before": "", "after": ""}},
        400,
        POSITION,
        "/position",
        "exactly one",
    ),
    "position-empty": Case(
        "POST", "/{fw}/rules", {**OK_RULE, "position": {}}, 400, POSITION, "/position"
    ),
    "position-index-zero": Case(
        "POST",
        "/{fw}/rules",
        {**OK_RULE, "position": {"index": 0}},
        400,
        POSITION,
        "/position/index",
    ),
    "position-index-past-end": Case(
        "POST",
        "/{fw}/rules",
        {**OK_RULE, "position": {"index": 4}},
        400,
        POSITION,
        "/position/index",
        "from 1 to 3",
    ),
    "position-index-not-int": Case(
        "POST",
        "/{fw}/rules",
        {**OK_RULE, "position": {"index": "1"}},
        400,
        INVALID_BODY,
        "/position/index",
    ),
    "position-before-unknown": Case(
        "POST",
        "/{fw}/rules",
        {**OK_RULE, "position": {"before": UNKNOWN}},
        400,
        POSITION,
        "/position/before",
    ),
    "position-unknown-key": Case(
        "POST",
        "/{fw}/rules",
        {**OK_RULE, "position": {"first": True}},
        400,
        INVALID_BODY,
        "/position/first",
    ),
    "patch-index-past-end": Case(
        "PATCH",
        "/{fw}/rules/{rule}",
        {"position": {"index": 3}},
        400,
        POSITION,
        "/position/index",
        "from 1 to 2",
    ),
    "patch-after-itself": Case(
        "PATCH",
        "/{fw}/rules/{rule}",
        {"position": {"after": "{rule}"}},
        400,
        POSITION,
        "/position/after",
    ),
    # ids and identity
    "unknown-rule-patch": Case(
        "PATCH", "/{fw}/rules/" + UNKNOWN, {"enabled": False}, 404, RULE_NOT_FOUND, None, UNKNOWN
    ),
    "unknown-rule-delete": Case("DELETE", "/{fw}/rules/" + UNKNOWN, None, 404, RULE_NOT_FOUND),
    "rule-of-other-ruleset": Case("DELETE", "/{custom}/rules/{rule}", None, 404, RULE_NOT_FOUND),
    "bad-rule-id": Case("DELETE", "/{fw}/rules/nothex", None, 400, ROUTE),
    "unknown-ruleset-get": Case("GET", "/" + UNKNOWN, None, 404, RULESET_NOT_FOUND, None, UNKNOWN),
    "unknown-ruleset-put": Case("PUT", "/" + UNKNOWN, rules(), 404, RULESET_NOT_FOUND),
    "unknown-ruleset-delete": Case("DELETE", "/" + UNKNOWN, None, 404, RULESET_NOT_FOUND),
    "unknown-ruleset-add-rule": Case("POST", f"/{UNKNOWN}/rules", OK_RULE, 404, RULESET_NOT_FOUND),
    "bad-ruleset-id": Case("GET", "/not-a-ruleset-id", None, 400, ROUTE),
    "upper-case-ruleset-id": Case("GET", "/" + UNKNOWN.upper(), None, 400, ROUTE),
    "put-unknown-rule-id": Case(
        "PUT", FW, rules({**OK_RULE, "id": UNKNOWN}), 400, INVALID_RULE, "/rules/0/id"
    ),
    "put-same-rule-id-twice": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "id": "{rule}"}, {**OK_RULE, "id": "{rule}"}),
        400,
        INVALID_RULE,
        "/rules/1/id",
    ),
    "duplicate-ref": Case(
        "PUT",
        FW,
        rules({**OK_RULE, "ref": "r"}, {**OK_RULE, "ref": "r"}),
        400,
        INVALID_RULE,
        "/rules/1/ref",
    ),
    "post-rule-with-id": Case(
        "POST", "/{fw}/rules", {**OK_RULE, "id": UNKNOWN}, 400, INVALID_RULE, "/id"
    ),
    "post-rule-duplicate-ref": Case(
        "POST", "/{fw}/rules", {**OK_RULE, "ref": "health"}, 400, INVALID_RULE, "/ref"
    ),
    "patch-id-mismatch": Case(
        "PATCH", "/{fw}/rules/{rule}", {"id": UNKNOWN}, 400, INVALID_RULE, "/id"
    ),
    # phases and rulesets
    "unsupported-phase-get": Case(
        "GET",
        "/phases/http_request_firewall_managed/entrypoint",
        None,
        400,
        PHASE,
        None,
        FIREWALL,
    ),
    "unsupported-phase-put": Case(
        "PUT", "/phases/ddos_l7/entrypoint", rules(), 400, PHASE, None, FIREWALL
    ),
    "unknown-phase-versions": Case("GET", "/phases/nope/entrypoint/versions", None, 400, PHASE),
    "put-entry-point-wrong-kind": Case(
        "PUT", FW, {"rules": [], "kind": "custom"}, 400, INVALID_RULESET, "/kind"
    ),
    "put-entry-point-wrong-phase": Case(
        "PUT", FW, {"rules": [], "phase": ORIGIN}, 400, INVALID_RULESET, "/phase"
    ),
    "put-entry-point-rename": Case(
        "PUT", FW, {"rules": [], "name": "renamed"}, 400, INVALID_RULESET, "/name"
    ),
    "put-ruleset-change-kind": Case(
        "PUT", "/{custom}", {"rules": [], "kind": "zone"}, 400, INVALID_RULESET, "/kind"
    ),
    "create-second-entry-point": Case(
        "POST",
        "",
        {"name": "x", "kind": "zone", "phase": FIREWALL, "rules": []},
        409,
        ENTRY_POINT_EXISTS,
        None,
        "already has an entry point",
    ),
    "create-managed-kind": Case(
        "POST",
        "",
        {"name": "x", "kind": "managed", "phase": FIREWALL},
        400,
        INVALID_RULESET,
        "/kind",
    ),
    "create-unsupported-phase": Case(
        "POST",
        "",
        {"name": "x", "kind": "custom", "phase": "http_ratelimit"},
        400,
        PHASE,
        "/phase",
    ),
    "create-empty-name": Case(
        "POST", "", {"name": "", "kind": "custom", "phase": FIREWALL}, 400, INVALID_BODY, "/name"
    ),
    "create-missing-name": Case(
        "POST", "", {"kind": "custom", "phase": FIREWALL}, 400, INVALID_BODY, "/name"
    ),
    "create-with-bad-rule": Case(
        "POST",
        "",
        {
            "name": "x",
            "kind": "custom",
            "phase": FIREWALL,
            "rules": [OK_RULE, {"action": "block", "expression": "("}],
        },
        400,
        INVALID_EXPRESSION,
        "/rules/1/expression",
    ),
    # versions
    "version-not-a-number": Case("GET", "/{fw}/versions/abc", None, 400, VERSION_NOT_FOUND),
    "version-missing": Case("GET", "/{fw}/versions/99", None, 404, VERSION_NOT_FOUND),
    "version-zero": Case("GET", FW + "/versions/0", None, 400, VERSION_NOT_FOUND),
    "entry-point-version-missing": Case("GET", FW + "/versions/99", None, 404, VERSION_NOT_FOUND),
    "versions-of-unknown-ruleset": Case(
        "GET", f"/{UNKNOWN}/versions", None, 404, RULESET_NOT_FOUND
    ),
    # query parameters
    "dry-run-not-bool": Case("PUT", FW + "?dry_run=maybe", rules(), 400, INVALID_BODY),
    "list-per-page-zero": Case("GET", "?per_page=0", None, 400, INVALID_BODY),
    "list-bad-cursor": Case("GET", "?cursor=zzz", None, 400, INVALID_BODY),
    # methods
    "post-entry-point": Case("POST", FW, rules(), 405, 7001),
}


def _fill(text: str, w: World) -> str:
    return (
        text.replace("{fw}", w.firewall["id"])
        .replace("{rule}", w.firewall["rules"][0]["id"])
        .replace("{custom}", w.custom["id"])
    )


def _fill_body(body: Any, w: World) -> Any:
    if isinstance(body, str):
        return _fill(body, w)
    if isinstance(body, list):
        return [_fill_body(b, w) for b in body]
    if isinstance(body, dict):
        return {k: _fill_body(v, w) for k, v in body.items()}
    return body


@pytest.mark.parametrize("name", list(CASES))
def test_refused_and_nothing_written(name: str, unchanged: World) -> None:
    case = CASES[name]
    w = unchanged
    url = w.base() + _fill(case.path, w)
    with w.client() as c:
        kwargs: dict[str, Any] = {}
        if case.body is not None:
            kwargs["json"] = _fill_body(case.body, w)
        r = c.request(case.method, url, **kwargs)
    assert_error(r, case.status, case.code, pointer=case.pointer, contains=case.contains)


def test_bad_expression_has_caret_diagnostic(unchanged: World) -> None:
    w = unchanged
    expr = 'http.host eq "api.example.com" and not cf.tls_client_auth.cert_verifed'
    body = rules(OK_RULE, {"action": "block", "expression": expr})
    with w.client() as c:
        r = c.put(f"{w.base()}{FW}", json=body)
    err = assert_error(r, 400, INVALID_EXPRESSION, pointer="/rules/1/expression")
    lines = err["message"].split("\n")
    assert lines[0] == "Filter parsing error (1:40):"
    assert lines[1] == expr
    assert lines[2].startswith(" " * 39 + "^")
    assert "unknown identifier" in lines[2]


def test_lone_surrogate_and_invalid_json(unchanged: World) -> None:
    w = unchanged
    with w.client() as c:
        raw = (
            '{"rules": [{"action": "block", "expression": "cf.tls_client_auth.cert_presented", '
            '"description": "\\ud800"}]}'
        )
        r = c.put(f"{w.base()}{FW}", content=raw, headers={"content-type": "application/json"})
        assert_error(r, 400, INVALID_BODY, pointer="/rules/0/description")
        r = c.put(f"{w.base()}{FW}", content=b"{not json")
        assert_error(r, 400, 1002)


# --- permissions -------------------------------------------------------------------------------


def test_ssl_read_token_cannot_read_or_write_rulesets(unchanged: World) -> None:
    w = unchanged
    fw = w.firewall["id"]
    rule = w.firewall["rules"][0]["id"]
    with w.client(w.tokens["ssl_read"]) as c:
        # The token does work where it has permission.
        assert_ok(c.get(f"/zones/{w.zone}/certificate_authorities/hostname_associations"))
        for method, path, body in [
            ("GET", FW, None),
            ("GET", FW + "/versions", None),
            ("GET", FW + "/versions/1", None),
            ("GET", "", None),
            ("GET", f"/{fw}", None),
            ("GET", f"/{fw}/versions", None),
            ("PUT", FW, rules(OK_RULE)),
            ("POST", "", {"name": "x", "kind": "custom", "phase": FIREWALL}),
            ("POST", f"/{fw}/rules", OK_RULE),
            ("PATCH", f"/{fw}/rules/{rule}", {"enabled": False}),
            ("DELETE", f"/{fw}/rules/{rule}", None),
            ("DELETE", f"/{fw}", None),
        ]:
            kwargs = {"json": body} if body is not None else {}
            r = c.request(method, w.base() + path, **kwargs)
            assert_error(r, 403, FORBIDDEN)


def test_waf_read_token_reads_but_cannot_write(unchanged: World) -> None:
    w = unchanged
    fw = w.firewall["id"]
    rule = w.firewall["rules"][0]["id"]
    with w.client(w.tokens["waf_read"]) as c:
        assert assert_ok(c.get(w.base() + FW))["result"] == w.firewall
        assert_ok(c.get(w.base()))
        assert_ok(c.get(f"{w.base()}/{fw}/versions/1"))
        for method, path, body in [
            ("PUT", FW, rules(OK_RULE)),
            ("PUT", f"/{fw}", rules(OK_RULE)),
            ("POST", "", {"name": "x", "kind": "custom", "phase": FIREWALL}),
            ("POST", f"/{fw}/rules", OK_RULE),
            ("PATCH", f"/{fw}/rules/{rule}", {"enabled": False}),
            ("DELETE", f"/{fw}/rules/{rule}", None),
            ("DELETE", f"/{fw}", None),
            # Even an invalid body is refused for permission first: no validation leaks.
            ("PUT", FW, rules({"action": "block", "expression": "("})),
        ]:
            kwargs = {"json": body} if body is not None else {}
            r = c.request(method, w.base() + path, **kwargs)
            assert_error(r, 403, FORBIDDEN)
        # Zone-scoped: nothing on the other zone.
        r = c.get(f"/zones/{w.other_zone}/rulesets")
        assert_error(r, 403, FORBIDDEN)


def test_write_token_of_other_zone_cannot_touch_this_zone(unchanged: World) -> None:
    w = unchanged
    with w.client(w.tokens["waf_write_other"]) as c:
        assert_error(c.get(w.base() + FW), 403, FORBIDDEN)
        assert_error(c.put(w.base() + FW, json=rules(OK_RULE)), 403, FORBIDDEN)
        assert_ok(c.get(f"/zones/{w.other_zone}/rulesets"))


def test_account_scoped_write_token_covers_every_zone(world: World) -> None:
    w = world
    with w.client(w.tokens["waf_write_account"]) as c:
        # A dry run proves the write is allowed without changing the shared state.
        r = c.put(w.base() + FW, json=rules(OK_RULE), params={"dry_run": "true"})
        assert assert_ok(r)["result"] is None
        path = f"/zones/{w.other_zone}/rulesets/phases/{FIREWALL}/entrypoint"
        r = c.put(path, json=rules(OK_RULE), params={"dry_run": "true"})
        assert assert_ok(r)["result"] is None
        assert_error(c.get(path), 404, RULESET_NOT_FOUND)
