"""Every expression in the reference (cloudflare-api.md §7.4 and §8) and the BYOCA seed compiles
and evaluates as documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtlsgate.rules import compile_expression
from tests.rules.helpers import error_of, evaluate

SEED = Path(__file__).parents[1] / "data" / "seed_byoca.txt"
TLS = "cf.tls_client_auth."


def seed_expression() -> str:
    text = SEED.read_text()
    m = re.search(r'"expression": "((?:[^"\\]|\\.)*)"', text)
    assert m is not None, "the seed's custom rule expression"
    return m.group(1).replace('\\"', '"')


def test_seed_expression_with_real_hostnames() -> None:
    template = seed_expression()
    assert template == (
        '(http.host in {"<HOSTNAME_1>" "<HOSTNAME_2>"} and not cf.tls_client_auth.cert_verified)'
    )
    expr = template.replace("<HOSTNAME_1>", "api.example.com").replace(
        "<HOSTNAME_2>", "mtls.example.org"
    )
    compiled = compile_expression(expr)
    assert compiled.fields == {"http.host", TLS + "cert_verified"}
    # blocks an unverified client on a protected host ...
    assert evaluate(expr, {"http.host": "api.example.com"}) is True
    assert evaluate(expr, {"http.host": "mtls.example.org", TLS + "cert_presented": True}) is True
    # ... lets a verified one through, and ignores other hosts
    assert evaluate(expr, {"http.host": "api.example.com", TLS + "cert_verified": True}) is False
    assert evaluate(expr, {"http.host": "www.example.com"}) is False
    assert evaluate(expr, {"http.host": "API.example.com"}) is False  # eq/in are exact


def test_typical_mtls_rule_7_4() -> None:
    expr = '(http.host in {"api.example.com"} and not cf.tls_client_auth.cert_verified)'
    assert evaluate(expr, {"http.host": "api.example.com"}) is True
    assert evaluate(expr, {"http.host": "api.example.com", TLS + "cert_verified": True}) is False


def test_hardened_rule_7_4() -> None:
    expr = f'not ({TLS}cert_verified and {TLS}cert_issuer_ski eq "A5AC9F")'
    ok = {TLS + "cert_verified": True, TLS + "cert_issuer_ski": "A5AC9F"}
    assert evaluate(expr, ok) is False
    assert evaluate(expr, {**ok, TLS + "cert_issuer_ski": "0000"}) is True
    assert evaluate(expr, {**ok, TLS + "cert_verified": False}) is True
    assert evaluate(expr, {}) is True


@pytest.mark.parametrize(
    ("verified", "revoked", "path", "blocked"),
    [
        (False, False, "/admin", True),
        (True, True, "/admin", True),  # revoked certs are still "verified": checked apart
        (True, False, "/admin", False),
        (False, False, "/public", False),
    ],
)
def test_revocation_rule_7_4(verified: bool, revoked: bool, path: str, blocked: bool) -> None:
    expr = (
        f'((not {TLS}cert_verified or {TLS}cert_revoked) and http.request.uri.path in {{"/admin"}})'
    )
    facts = {TLS + "cert_verified": verified, TLS + "cert_revoked": revoked}
    assert evaluate(expr, {**facts, "http.request.uri.path": path}) is blocked


def test_7_4_error_example_format() -> None:
    # "Filter parsing error (1:313): <expression> ^ unrecognised input"
    expr = 'http.host eq "a" ' + "x" * 10
    exc = error_of(expr)
    assert exc.render().startswith("Filter parsing error (1:18):\n")
    assert exc.reason == "unrecognised input"


# --- §8.1 lexical rules --------------------------------------------------------------------------


def test_8_1_whitespace_is_space_cr_lf_only() -> None:
    assert evaluate("ssl\r\nand\n ssl", {"ssl": True}) is True
    assert "tab" in error_of("ssl\tand ssl").reason


def test_8_1_english_operators_are_lowercase() -> None:
    assert error_of('http.host EQ "a"').reason == "unrecognised input"
    assert error_of("ssl AND ssl").reason == "unrecognised input"
    assert error_of("NOT ssl").reason == "unknown identifier"


def test_8_1_string_escapes() -> None:
    assert evaluate('http.host eq "\\"\\\\\\x41\\101"', {"http.host": '"\\AA'}) is True
    assert error_of('http.host eq "\\n"').reason == 'expected ", xHH or OOO after \\'
    assert error_of('http.host eq "abc').reason == "could not find an ending quote"


def test_8_1_raw_strings_up_to_255_hashes() -> None:
    h = "#" * 255
    assert evaluate(f'http.host eq r{h}"a"#b"{h}', {"http.host": 'a"#b'}) is True
    assert error_of(f'http.host eq r{h}#"a"{h}#').reason.startswith("invalid raw string")
    assert evaluate('http.host eq r"\\x41"', {"http.host": "\\x41"}) is True  # no escapes


def test_8_1_regex_strings_keep_backslashes() -> None:
    assert evaluate('http.host matches "^a\\.b$"', {"http.host": "a.b"}) is True
    assert evaluate('http.host matches "^a\\.b$"', {"http.host": "axb"}) is False
    assert evaluate('http.host matches "a\\"b"', {"http.host": 'a"b'}) is True
    # a quote inside [...] does not end the string
    assert evaluate('http.host matches "x["]y"', {"http.host": 'x"y'}) is True


def test_8_1_integers_and_sets() -> None:
    assert evaluate("cf.edge.server_port eq 0x50", {"cf.edge.server_port": 80}) is True
    assert evaluate("cf.edge.server_port eq 0120", {"cf.edge.server_port": 80}) is True
    assert evaluate("cf.edge.server_port eq -0", {"cf.edge.server_port": 0}) is True
    assert evaluate("cf.edge.server_port in {8000..8009}", {"cf.edge.server_port": 8004}) is True
    assert evaluate('http.host in { "a"   "b" }', {"http.host": "b"}) is True


def test_8_1_lists_are_rejected() -> None:
    assert "not supported" in error_of("ip.src in $my_list.v1").reason


# --- §8.2–8.4 -------------------------------------------------------------------------------------


def test_8_2_bool_fields_are_bare() -> None:
    assert evaluate("ssl", {"ssl": True}) is True
    assert evaluate("not ssl", {"ssl": True}) is False
    error_of("ssl eq true")


def test_8_2_starts_with_is_a_function() -> None:
    assert evaluate('starts_with(http.host, "api.")', {"http.host": "api.x"}) is True
    error_of('http.host starts_with "api."')


def test_8_2_string_comparison_is_case_sensitive() -> None:
    assert evaluate('http.host eq "A"', {"http.host": "a"}) is False
    assert evaluate('lower(http.host) eq "a"', {"http.host": "A"}) is True


def test_8_3_precedence() -> None:
    # not > and > xor > or
    f = {"ssl": True}
    assert evaluate(f"ssl or {TLS}cert_verified and {TLS}cert_verified", f) is True
    assert evaluate("not ssl or ssl", f) is True
    assert evaluate("ssl xor ssl or ssl", f) is True
    assert evaluate(f"ssl xor ssl and {TLS}cert_verified", f) is True


def test_8_4_star_only_in_function_arguments() -> None:
    names = {"http.request.headers.names": ["x"]}
    assert evaluate('any(http.request.headers.names[*] == "x")', names) is True
    assert "first argument" in error_of('http.request.headers.names[*] == "x"').reason


def test_8_4_missing_values_compare_false() -> None:
    h = {"http.request.headers": {"a": ["1"]}}
    for expr in [
        'http.request.headers["b"][0] eq "1"',
        'http.request.headers["b"][0] ne "1"',
        'http.request.headers["a"][1] ne "1"',
    ]:
        assert evaluate(expr, h) is False, expr


def test_8_4_maps_of_arrays() -> None:
    h = {"http.request.headers": {"a": ["1", "2"]}}
    assert evaluate('len(http.request.headers["a"]) eq 2', h) is True


# --- §8.5 functions, §8.6 length, §8.7 errors, §8.8 fields ---------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        'any(http.request.headers.names[*] eq "a")',
        'all(http.request.headers.names[*] eq "a")',
        "cidr(ip.src, 24, 64) eq 192.0.2.0",
        "cidr6(ip.src, 64) eq 2001:db8::",
        'concat(http.host, "a") eq "a"',
        'decode_base64(http.host) eq "a"',
        'ends_with(http.host, "a")',
        'starts_with(http.host, "a")',
        'join(http.request.headers.names, ",") eq "a"',
        "len(http.host) eq 1",
        'lookup_json_integer(http.host, "a") eq 1',
        'lookup_json_string(http.host, "a") eq "a"',
        'lower(http.host) eq "a"',
        'upper(http.host) eq "A"',
        'substring(http.host, -1) eq "a"',
        'url_decode(http.host, "r") eq "a"',
        'to_string(cf.edge.server_port) eq "1"',
    ],
)
def test_8_5_waf_function_set_compiles(expr: str) -> None:
    compile_expression(expr)


@pytest.mark.parametrize(
    "name",
    ["regex_replace", "remove_bytes", "split", "uuidv4", "wildcard_replace", "bit_slice"],
)
def test_8_5_functions_outside_custom_rules_are_rejected(name: str) -> None:
    assert error_of(f"{name}(http.host) eq 1").reason == f"unknown function {name}"


def test_8_7_reasons_match_the_engine() -> None:
    assert error_of("nope eq 1").reason == "unknown identifier"
    assert error_of("ssl )").reason == "unrecognised input"
    assert error_of("(ssl").reason == 'expected literal ")"'
    assert error_of('http.host eq "a').reason == "could not find an ending quote"
    assert error_of("ip.src contains 1").reason == "cannot perform this operation on type IP"
    assert error_of("len() eq 1").reason == "invalid number of arguments"
    assert error_of("len(ssl) eq 1").reason.startswith("expected value of type ")
    assert error_of("(" * 200 + "ssl" + ")" * 200).reason.startswith(
        "maximum nesting depth exceeded (limit: "
    )
