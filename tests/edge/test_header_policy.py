"""edge/header_policy.py: which headers a late-transform rule may set or remove, and that the
builder (the edge's second line of defence, for rules stored before the API refused them)
drops exactly the operations the API refuses."""

from __future__ import annotations

import json

import pytest

from mtlsgate.edge import header_policy
from mtlsgate.edge.builder import RuleData, compile_late_transform
from mtlsgate.edge.header_policy import is_token, refusal

# (name, operation) the edge owns, with a word the refusal must give.
REFUSED = [
    ("Host", "set", "frames the request"),
    ("host", "remove", "frames the request"),
    ("Content-Length", "set", "frames"),
    ("Transfer-Encoding", "remove", "frames"),
    ("Connection", "set", "frames"),
    ("Keep-Alive", "set", "frames"),
    ("Proxy-Connection", "remove", "frames"),
    ("TE", "set", "frames"),
    ("Trailer", "set", "frames"),
    ("Upgrade", "remove", "frames"),
    ("Expect", "set", "frames"),
    ("CF-Ray", "set", "cf- or x-cf-"),
    ("cf-ray", "remove", "cf- or x-cf-"),
    ("cf-cert-verified", "set", "cf- or x-cf-"),
    ("cf-cert-presented", "remove", "cf- or x-cf-"),
    ("Cf-Client-Cert-Sha256", "set", "cf- or x-cf-"),
    ("Cf-Client-Cert-Der-Base64", "remove", "cf- or x-cf-"),
    ("cf-ipcountry", "set", "cf- or x-cf-"),
    ("X-CF-Anything", "set", "cf- or x-cf-"),
    ("CF-Connecting-IP", "set", "may only remove"),
    ("X-Forwarded-For", "set", "the edge writes it"),
    ("x-forwarded-for", "remove", "the edge writes it"),
    ("X-Real-IP", "set", "visitor's IP address"),
    ("True-Client-IP", "set", "visitor's IP address"),
]

ALLOWED = [
    ("CF-Connecting-IP", "remove"),
    ("cf-connecting-ip", "remove"),
    ("X-Real-IP", "remove"),
    ("True-Client-IP", "remove"),
    ("X-Forwarded-Proto", "set"),
    ("X-Forwarded-Proto", "remove"),
    ("X-Forwarded-Host", "set"),
    ("Forwarded", "set"),
    ("Client-Cert", "set"),
    ("Client-Cert-Chain", "set"),
    ("Cookie", "set"),
    ("Authorization", "remove"),
    ("X-Custom", "set"),
    ("x-cfg", "set"),  # not the x-cf- prefix
    ("cfx", "set"),  # not the cf- prefix
    ("Accept-Encoding", "set"),
]


@pytest.mark.parametrize(("name", "operation", "why"), REFUSED)
def test_refused(name: str, operation: header_policy.Operation, why: str) -> None:
    message = refusal(name, operation)
    assert message is not None
    assert repr(name) in message  # names the header as the rule wrote it
    assert why in message
    verb = "set" if operation == "set" else "removed"
    assert f"cannot be {verb}" in message


@pytest.mark.parametrize(("name", "operation"), ALLOWED)
def test_allowed(name: str, operation: header_policy.Operation) -> None:
    assert refusal(name, operation) is None


def test_host_points_at_the_route_action() -> None:
    message = refusal("Host", "set")
    assert message is not None and "host_header" in message


@pytest.mark.parametrize(
    "name",
    ["X-A", "x_a", "A", "!#$%&'*+-.^_`|~", "a" * 300, "0"],
)
def test_tokens(name: str) -> None:
    assert is_token(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "X A",
        "X:A",
        ":authority",
        "X\tA",
        "X\x00A",
        "X\r\nA",
        "X\x7fA",
        "(x)",
        "a/b",
        "Ä",
        "x\n",
    ],
)
def test_not_tokens(name: str) -> None:
    assert not is_token(name)


def _ops(headers: dict[str, dict[str, str]]) -> dict[bytes, object]:
    late = compile_late_transform(
        [RuleData("r", "true", "rewrite", json.dumps({"headers": headers}))]
    )
    return {} if late is None else dict(late({}))


@pytest.mark.parametrize(("name", "operation", "why"), REFUSED)
def test_builder_drops_what_the_api_refuses(
    name: str, operation: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    op = {"operation": "remove"} if operation == "remove" else {"operation": "set", "value": "x"}
    ops = _ops({name: op, "X-Kept": {"operation": "set", "value": "v"}})
    assert name.lower().encode() not in ops
    assert ops[b"x-kept"] == (b"X-Kept", b"v")
    assert why in caplog.text and "operation ignored" in caplog.text


@pytest.mark.parametrize(("name", "operation"), ALLOWED)
def test_builder_keeps_what_the_api_accepts(name: str, operation: str) -> None:
    op = {"operation": "remove"} if operation == "remove" else {"operation": "set", "value": "x"}
    ops = _ops({name: op})
    key = name.lower().encode()
    assert key in ops
    assert ops[key] == (None if operation == "remove" else (name.encode(), b"x"))


def test_builder_drops_names_that_are_not_tokens() -> None:
    assert _ops({"X Bad": {"operation": "set", "value": "x"}}) == {}
