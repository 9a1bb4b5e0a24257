"""Parser golden files: each expression → its AST as JSON (`printer.to_json`) or, for a
rejected expression, the full caret diagnostic.

Regenerate with `UPDATE_GOLDEN=1 pytest tests/rules/test_golden.py`, then read the diff of
tests/rules/golden/parser.json by eye before accepting it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mtlsgate.rules import RulesError, compile_expression
from mtlsgate.rules.printer import to_json

GOLDEN = Path(__file__).parent / "golden" / "parser.json"

CASES: list[str] = [
    # --- boolean structure, precedence -----------------------------------------------------
    "ssl",
    "not ssl",
    "!ssl",
    "not not ssl",
    "ssl and cf.tls_client_auth.cert_verified",
    "ssl && cf.tls_client_auth.cert_verified",
    "ssl or cf.tls_client_auth.cert_verified",
    "ssl || cf.tls_client_auth.cert_verified",
    "ssl xor cf.tls_client_auth.cert_verified",
    "ssl ^^ cf.tls_client_auth.cert_verified",
    "ssl or cf.tls_client_auth.cert_presented and cf.tls_client_auth.cert_verified",
    "not ssl and cf.tls_client_auth.cert_verified",
    "ssl and ssl xor ssl or ssl",
    "ssl or ssl xor ssl and ssl",
    "(ssl or ssl) and ssl",
    "not (ssl and ssl)",
    'not http.host eq "a"',
    "ssl and ssl and ssl",
    "((((ssl))))",
    "ssl\r\nand\nssl",
    # --- comparison operators, English and C-like ------------------------------------------
    'http.host eq "example.com"',
    'http.host == "example.com"',
    'http.host ne "example.com"',
    'http.host != "example.com"',
    'http.host lt "m"',
    'http.host < "m"',
    'http.host le "m"',
    'http.host <= "m"',
    'http.host gt "m"',
    'http.host > "m"',
    'http.host ge "m"',
    'http.host >= "m"',
    'http.host contains "example"',
    'http.host matches "^api\\.example\\.com$"',
    'http.host ~ "^api"',
    'http.host wildcard "*.example.com"',
    'http.host strict wildcard "*.Example.com"',
    'http.host wildcard r"a\\*b"',
    'http.host wildcard "a\\\\*b"',
    'http.host in {"a.example.com" "b.example.com"}',
    'http.host in {"dup" "dup"}',
    "cf.edge.server_port eq 443",
    "cf.edge.server_port == 0x1bb",
    "cf.edge.server_port eq 0777",
    "cf.edge.server_port ge -1",
    "cf.edge.server_port in {80 443 8000..8009}",
    "cf.edge.server_port & 1",
    "cf.edge.server_port bitwise_and 0x10",
    "ip.src eq 192.0.2.1",
    "ip.src ne 2001:db8::1",
    "ip.src in {192.0.2.0/24 10.0.0.1 10.0.0.5..10.0.0.9 2001:db8::/32 ::1..::9}",
    "ip.src in {192.0.2.7/24}",
    # --- strings ---------------------------------------------------------------------------
    'http.host eq "a\\"b"',
    'http.host eq "a\\\\b"',
    'http.host eq "\\x41\\x42"',
    'http.host eq "\\101"',
    'http.host eq "\\xff"',
    'http.host eq "é"',
    'http.host eq ""',
    'http.host eq r"a\\b"',
    'http.host eq r#"say "hi""#',
    'http.host eq r##"a"#b"##',
    'http.host matches "[\\"]"',
    'http.host matches "a\\"b"',
    'http.host matches r"\\d+"',
    # --- values: indexes, maps, functions --------------------------------------------------
    'http.request.headers["x-a"][0] eq "1"',
    'http.request.headers.names[0] eq "host"',
    'http.request.uri.args["q"][1] eq "x"',
    'http.request.cookies["session"][0] contains "abc"',
    'any(http.request.headers.names[*] eq "x-a")',
    'all(http.request.headers["accept"][*] contains "json")',
    'any(lower(http.request.headers.names[*]) in {"x-a" "x-b"})',
    'any(starts_with(http.request.headers.values[*], "Bearer "))',
    'concat(http.host, "/", http.request.uri.path) eq "a/b"',
    'concat(http.request.headers.names, http.request.uri.args.names)[0] eq "a"',
    'ends_with(http.host, ".example.com")',
    'starts_with(http.request.uri.path, "/admin")',
    "len(http.host) gt 10",
    "len(http.request.headers.names) ge 100",
    'lower(http.host) eq "a"',
    'upper(http.request.method) eq "GET"',
    'substring(http.host, 0, 3) eq "api"',
    'substring(http.host, -4) eq ".com"',
    'url_decode(http.request.uri.query) contains "<script"',
    'url_decode(http.request.uri.query, "r") contains "x"',
    'url_decode(http.request.uri.query, "ur") contains "x"',
    'decode_base64(http.request.headers["x-b"][0]) eq "hi"',
    'lookup_json_string(http.request.headers["x-j"][0], "user", "name") eq "ann"',
    'lookup_json_integer(http.request.headers["x-j"][0], "ids", 0) eq 7',
    'join(http.request.headers.names, ",") eq "a,b"',
    'to_string(cf.edge.server_port) eq "443"',
    'to_string(ssl) eq "true"',
    'to_string(ip.src) eq "::1"',
    "cidr(ip.src, 24, 64) eq 192.0.2.0",
    "cidr6(ip.src, 48) eq 2001:db8::",
    'raw.http.request.uri.path eq "/"',
    # --- the documented mTLS rules ---------------------------------------------------------
    '(http.host in {"api.example.com"} and not cf.tls_client_auth.cert_verified)',
    'not (cf.tls_client_auth.cert_verified and cf.tls_client_auth.cert_issuer_ski eq "A5AC9F")',
    "((not cf.tls_client_auth.cert_verified or cf.tls_client_auth.cert_revoked) and "
    'http.request.uri.path in {"/admin"})',
    # --- rejections (caret diagnostics) ----------------------------------------------------
    "",
    "   ",
    "ssl and",
    "()",
    "(ssl",
    "ssl)",
    "ssl ssl",
    "ssl eq true",
    "http.host",
    'http.host EQ "a"',
    'HTTP.HOST eq "a"',
    'http.host\teq "a"',
    'foo.bar eq "a"',
    'ip.src.country eq "US"',
    "cf.threat_score gt 10",
    "cf.bot_management.score lt 30",
    "ip.addr eq 1.2.3.4",
    'http.host eq "abc',
    'http.host eq "\\q"',
    'http.host eq "\\777"',
    'http.host eq r"abc',
    'http.host eq r##"abc"#',
    'http.host in {"a", "b"}',
    "http.host in {}",
    "http.host in $blocked_hosts",
    "http.host eq http.host",
    '"a" eq http.host',
    "1 eq 1",
    "http.host eq 1",
    'cf.edge.server_port eq "443"',
    "cf.edge.server_port eq 99999999999999999999",
    "cf.edge.server_port eq 08",
    "cf.edge.server_port in {9..1}",
    'cf.edge.server_port contains "4"',
    "ip.src lt 1.2.3.4",
    "ip.src eq 10.0.0.0/8",
    "ip.src eq 1.2.3.999",
    "ip.src in {1.2.3.4/33}",
    "ip.src in {1.2.3.9..1.2.3.1}",
    "ip.src in {1.2.3.4..::9}",
    'http.host matches "("',
    'http.host wildcard "a**b"',
    'http.host wildcard r"a\\b"',
    'http.host wildcard "a\\*b"',
    'http.request.headers eq "a"',
    'http.request.headers["a"] eq "a"',
    'http.request.headers.names[*] eq "a"',
    'http.request.headers.names[-1] eq "a"',
    'http.host[0] eq "a"',
    'http.request.headers.names["a"] eq "a"',
    'any(http.request.headers.names[*] eq "a") eq "b"',
    "any(ssl)",
    'nosuch(http.host) eq "a"',
    "len() eq 1",
    "len(http.host, http.host) eq 1",
    'lower(cf.edge.server_port) eq "a"',
    "starts_with(http.host, http.request.uri.path)",
    "cidr(ip.src, cf.edge.server_port, 64) eq 1.2.3.4",
    "cidr(ip.src, 33, 64) eq 1.2.3.4",
    "cidr6(ip.src, 129) eq ::1",
    "starts_with(http.host, http.request.headers.names[*])",
    "ssl and\n  http.host eq 1",
]


def _render(expression: str) -> Any:
    try:
        return to_json(compile_expression(expression).tree)
    except RulesError as exc:
        return exc.render()


def test_golden_parser_outputs() -> None:
    actual = {expr: _render(expr) for expr in CASES}
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n")
        pytest.skip("golden file rewritten: review the diff by eye before committing")
    expected = json.loads(GOLDEN.read_text())
    assert list(expected) == CASES, "golden file out of date: run with UPDATE_GOLDEN=1"
    for expr in CASES:
        assert actual[expr] == expected[expr], expr


def test_no_duplicate_cases() -> None:
    assert len(set(CASES)) == len(CASES)
