"""Evaluation table: (expression, field values, expected result). Fields not given take the
edge's defaults (false, "", 0, 0.0.0.0, empty), as in `mtlsgate rules eval`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.rules.helpers import evaluate

H = "http.host"
HDRS = "http.request.headers"
NAMES = "http.request.headers.names"
VALUES = "http.request.headers.values"
PORT = "cf.edge.server_port"
TLS = "cf.tls_client_auth."

# A header map as the edge builds it: lowercase keys, every value a list.
HEADERS = {"x-a": ["1", "2"], "accept": ["application/json", "text/json"], "x-empty": []}
JSON_DOC = json.dumps({"user": {"name": "ann", "id": 7}, "ids": [3, 4], "flag": True, "n": None})

TABLE: list[tuple[str, dict[str, Any], bool]] = [
    # --- Bool fields, not, and, or, xor, precedence ----------------------------------------
    ("ssl", {"ssl": True}, True),
    ("ssl", {}, False),
    ("not ssl", {}, True),
    ("!ssl", {"ssl": True}, False),
    ("not not ssl", {"ssl": True}, True),
    ("ssl and " + TLS + "cert_verified", {"ssl": True, TLS + "cert_verified": True}, True),
    ("ssl && " + TLS + "cert_verified", {"ssl": True}, False),
    ("ssl or " + TLS + "cert_verified", {TLS + "cert_verified": True}, True),
    ("ssl || " + TLS + "cert_verified", {}, False),
    ("ssl xor " + TLS + "cert_verified", {"ssl": True}, True),
    ("ssl ^^ " + TLS + "cert_verified", {"ssl": True, TLS + "cert_verified": True}, False),
    ("ssl xor " + TLS + "cert_verified", {}, False),
    # a or b and c == a or (b and c)
    (f"ssl or {TLS}cert_presented and {TLS}cert_verified", {"ssl": True}, True),
    (f"(ssl or {TLS}cert_presented) and {TLS}cert_verified", {"ssl": True}, False),
    # not a and b == (not a) and b
    (f"not ssl and {TLS}cert_verified", {}, False),
    (f"not (ssl and {TLS}cert_verified)", {}, True),
    # and binds tighter than xor, xor tighter than or
    (f"ssl xor ssl and {TLS}cert_verified", {"ssl": True}, True),  # T xor (T and F)
    ("ssl or ssl xor ssl", {"ssl": True}, True),  # T or (T xor T)
    (f"{TLS}cert_verified xor ssl or ssl", {"ssl": True, TLS + "cert_verified": True}, True),
    ("ssl xor ssl xor ssl", {"ssl": True}, True),
    # --- String operators ------------------------------------------------------------------
    (f'{H} eq "example.com"', {H: "example.com"}, True),
    (f'{H} == "example.com"', {H: "Example.com"}, False),  # case-sensitive
    (f'{H} ne "example.com"', {H: "Example.com"}, True),
    (f'{H} != "example.com"', {H: "example.com"}, False),
    (f'{H} lt "b"', {H: "a"}, True),
    (f'{H} < "B"', {H: "a"}, False),  # byte order: "B" (0x42) < "a" (0x61)
    (f'{H} le "a"', {H: "a"}, True),
    (f'{H} <= "a"', {H: "ab"}, False),
    (f'{H} gt "a"', {H: "ab"}, True),
    (f'{H} > "a"', {H: "a"}, False),
    (f'{H} ge "a"', {H: "a"}, True),
    (f'{H} >= "b"', {H: "a"}, False),
    (f'{H} contains "ample"', {H: "example.com"}, True),
    (f'{H} contains "AMPLE"', {H: "example.com"}, False),
    (f'{H} contains ""', {H: ""}, True),
    (f'{H} matches "^api\\.example\\.com$"', {H: "api.example.com"}, True),
    (f'{H} matches "^api\\.example\\.com$"', {H: "apixexample.com"}, False),
    (f'{H} ~ "exam"', {H: "an example"}, True),  # unanchored search
    (f'{H} matches "^EXAM"', {H: "example"}, False),
    (f'{H} matches "(?i)^EXAM"', {H: "example"}, True),
    (f'{H} matches r"\\d{{3}}"', {H: "ab123"}, True),
    (f'{H} matches "[\\"]"', {H: 'say "hi"'}, True),
    (f'{H} matches "a\\"b"', {H: 'a"b'}, True),
    (f'{H} in {{"a.example.com" "b.example.com"}}', {H: "b.example.com"}, True),
    (f'{H} in {{"a.example.com" "b.example.com"}}', {H: "B.example.com"}, False),
    (f'{H} in {{"dup" "dup"}}', {H: "dup"}, True),
    # escapes in quoted strings, raw strings
    (f'{H} eq "a\\"b"', {H: 'a"b'}, True),
    (f'{H} eq "a\\\\b"', {H: "a\\b"}, True),
    (f'{H} eq "\\x41\\x62"', {H: "Ab"}, True),
    (f'{H} eq "\\101"', {H: "A"}, True),
    (f'{H} eq "\\xc3\\xa9"', {H: "é"}, True),  # bytes that form UTF-8 text
    (f'{H} eq r"a\\b"', {H: "a\\b"}, True),
    (f'{H} eq r#"say "hi""#', {H: 'say "hi"'}, True),
    (f'{H} eq r##"a"#b"##', {H: 'a"#b'}, True),
    (f'{H} eq "é"', {H: "é"}, True),
    # --- wildcard / strict wildcard --------------------------------------------------------
    (f'{H} wildcard "*.example.com"', {H: "api.example.com"}, True),
    (f'{H} wildcard "*.example.com"', {H: "API.EXAMPLE.COM"}, True),  # ASCII case-insensitive
    (f'{H} wildcard "*.example.com"', {H: "example.com"}, False),  # full-value match
    (f'{H} wildcard "*.example.com"', {H: "a.example.com.evil"}, False),
    (f'{H} wildcard "*"', {H: ""}, True),
    (f'{H} wildcard "a*c*e"', {H: "abcde"}, True),
    (f'{H} wildcard "a*c*e"', {H: "abcd"}, False),
    (f'{H} wildcard "a.c"', {H: "abc"}, False),  # `.` is literal
    (f'{H} wildcard "a?c"', {H: "abc"}, False),  # `?` is literal
    (f'{H} wildcard "a?c"', {H: "a?c"}, True),
    (f'{H} wildcard "line*"', {H: "line1\nline2"}, True),  # * spans newlines
    (f'{H} wildcard "É"', {H: "é"}, False),  # case folding is ASCII only
    (f'{H} wildcard "k"', {H: "\u212a"}, False),  # KELVIN SIGN is not "k"
    (f'{H} wildcard "é*"', {H: "é!"}, True),
    (f'{H} strict wildcard "*.Example.com"', {H: "a.Example.com"}, True),
    (f'{H} strict wildcard "*.Example.com"', {H: "a.example.com"}, False),
    (f'{H} strict wildcard "*"', {H: "anything"}, True),
    (f'{H} wildcard r"a\\*b"', {H: "a*b"}, True),  # \* is a literal star
    (f'{H} wildcard r"a\\*b"', {H: "axxb"}, False),
    (f'{H} wildcard "a\\\\*b"', {H: "a*b"}, True),  # same pattern, quoted
    (f'{H} wildcard r"a\\\\b"', {H: "a\\b"}, True),  # \\ is a literal backslash
    (f'{H} wildcard r"*\\\\*"', {H: "x\\y"}, True),  # star, backslash, star: no double star
    (f'{H} wildcard r"*\\\\*"', {H: "xy"}, False),
    (f'{H} wildcard r"\\**"', {H: "*abc"}, True),
    (f'{H} wildcard r"\\**"', {H: "abc"}, False),
    # --- Int -------------------------------------------------------------------------------
    (f"{PORT} eq 443", {PORT: 443}, True),
    (f"{PORT} == 443", {PORT: 80}, False),
    (f"{PORT} ne 443", {PORT: 80}, True),
    (f"{PORT} != 443", {PORT: 443}, False),
    (f"{PORT} lt 1024", {PORT: 443}, True),
    (f"{PORT} < 443", {PORT: 443}, False),
    (f"{PORT} le 443", {PORT: 443}, True),
    (f"{PORT} <= 442", {PORT: 443}, False),
    (f"{PORT} gt 442", {PORT: 443}, True),
    (f"{PORT} > 443", {PORT: 443}, False),
    (f"{PORT} ge 443", {PORT: 443}, True),
    (f"{PORT} >= 444", {PORT: 443}, False),
    (f"{PORT} eq 0x1bb", {PORT: 443}, True),
    (f"{PORT} eq 0X1BB", {PORT: 443}, True),
    (f"{PORT} eq 0777", {PORT: 511}, True),  # leading 0 is octal
    (f"{PORT} gt -1", {PORT: 0}, True),
    (f"{PORT} in {{80 443 8000..8009}}", {PORT: 8000}, True),
    (f"{PORT} in {{80 443 8000..8009}}", {PORT: 8009}, True),
    (f"{PORT} in {{80 443 8000..8009}}", {PORT: 8010}, False),
    (f"{PORT} in {{80 443 8000..8009}}", {PORT: 443}, True),
    (f"{PORT} in {{-5..-1}}", {PORT: -3}, True),
    (f"{PORT} in {{7..7}}", {PORT: 7}, True),
    (f"{PORT} & 1", {PORT: 443}, True),
    (f"{PORT} & 4", {PORT: 443}, False),
    (f"{PORT} bitwise_and 0x100", {PORT: 443}, True),
    ("http.request.timestamp.sec gt 1700000000", {"http.request.timestamp.sec": 1800000000}, True),
    (f"{PORT} eq 9223372036854775807", {PORT: 2**63 - 1}, True),
    (f"{PORT} eq -9223372036854775808", {PORT: -(2**63)}, True),
    # --- IP --------------------------------------------------------------------------------
    ("ip.src eq 192.0.2.1", {"ip.src": "192.0.2.1"}, True),
    ("ip.src == 192.0.2.1", {"ip.src": "192.0.2.2"}, False),
    ("ip.src ne 192.0.2.1", {"ip.src": "192.0.2.2"}, True),
    ("ip.src != 192.0.2.1", {"ip.src": "192.0.2.1"}, False),
    ("ip.src eq 2001:db8::1", {"ip.src": "2001:0db8:0:0::1"}, True),
    ("ip.src eq 2001:DB8::1", {"ip.src": "2001:db8::1"}, True),
    ("ip.src eq ::ffff:192.0.2.1", {"ip.src": "::ffff:192.0.2.1"}, True),
    ("ip.src eq 192.0.2.1", {"ip.src": "::ffff:192.0.2.1"}, False),  # families differ
    ("ip.src ne 192.0.2.1", {"ip.src": "2001:db8::1"}, True),
    ("ip.src in {192.0.2.0/24}", {"ip.src": "192.0.2.200"}, True),
    ("ip.src in {192.0.2.0/24}", {"ip.src": "192.0.3.1"}, False),
    ("ip.src in {192.0.2.77/24}", {"ip.src": "192.0.2.1"}, True),  # host bits ignored
    ("ip.src in {10.0.0.5..10.0.0.9}", {"ip.src": "10.0.0.9"}, True),
    ("ip.src in {10.0.0.5..10.0.0.9}", {"ip.src": "10.0.0.10"}, False),
    ("ip.src in {2001:db8::/32}", {"ip.src": "2001:db8:ffff::1"}, True),
    ("ip.src in {2001:db8::/32}", {"ip.src": "2001:db9::1"}, False),
    ("ip.src in {::1..::9}", {"ip.src": "::5"}, True),
    ("ip.src in {::1..::9}", {"ip.src": "0.0.0.5"}, False),  # v4 never in a v6 range
    ("ip.src in {0.0.0.0/0}", {"ip.src": "2001:db8::1"}, False),  # v6 never in a v4 CIDR
    ("ip.src in {::/0}", {"ip.src": "192.0.2.1"}, False),
    ("ip.src in {0.0.0.0/0 ::/0}", {"ip.src": "2001:db8::1"}, True),
    (
        "ip.src in {192.0.2.0/24 10.0.0.1 10.0.0.5..10.0.0.9 2001:db8::/32 ::1..::9}",
        {"ip.src": "10.0.0.1"},
        True,
    ),
    (
        "ip.src in {192.0.2.0/24 10.0.0.1 10.0.0.5..10.0.0.9 2001:db8::/32 ::1..::9}",
        {"ip.src": "10.0.0.2"},
        False,
    ),
    ("ip.src in {192.0.2.1 2001:db8::1}", {"ip.src": "2001:db8::1"}, True),
    ("cf.edge.server_ip eq 203.0.113.5", {"cf.edge.server_ip": "203.0.113.5"}, True),
    # --- arrays and maps, missing values ---------------------------------------------------
    (f'{HDRS}["x-a"][0] eq "1"', {HDRS: HEADERS}, True),
    (f'{HDRS}["x-a"][1] eq "2"', {HDRS: HEADERS}, True),
    (f'{HDRS}["X-A"][0] eq "1"', {HDRS: HEADERS}, False),  # keys are lowercase, lookup exact
    (f'{NAMES}[0] eq "x-a"', {NAMES: ["x-a", "accept"]}, True),
    # absent key / index past the end → every comparison is false, `ne` included
    (f'{HDRS}["nope"][0] eq "1"', {HDRS: HEADERS}, False),
    (f'{HDRS}["nope"][0] ne "1"', {HDRS: HEADERS}, False),
    (f'not {HDRS}["nope"][0] ne "1"', {HDRS: HEADERS}, True),
    (f'{HDRS}["nope"][0] lt "zzz"', {HDRS: HEADERS}, False),
    (f'{HDRS}["nope"][0] contains ""', {HDRS: HEADERS}, False),
    (f'{HDRS}["nope"][0] matches ".*"', {HDRS: HEADERS}, False),
    (f'{HDRS}["nope"][0] wildcard "*"', {HDRS: HEADERS}, False),
    (f'{HDRS}["nope"][0] in {{""}}', {HDRS: HEADERS}, False),
    (f'{HDRS}["x-a"][2] eq "1"', {HDRS: HEADERS}, False),
    (f'{HDRS}["x-a"][2] ne "1"', {HDRS: HEADERS}, False),
    (f'{HDRS}["x-empty"][0] ne "1"', {HDRS: HEADERS}, False),
    (f'{NAMES}[5] ne "x"', {NAMES: ["a"]}, False),
    (f'{NAMES}[0] ne "x"', {}, False),  # default: empty array
    (f'{HDRS}["nope"][0] eq ""', {}, False),  # default: empty map
    (f'len({HDRS}["nope"]) eq 0', {HDRS: HEADERS}, False),
    (f'len({HDRS}["nope"]) ne 0', {HDRS: HEADERS}, False),
    (f'lower({HDRS}["nope"][0]) ne "a"', {HDRS: HEADERS}, False),
    (f'starts_with({HDRS}["nope"][0], "")', {HDRS: HEADERS}, False),
    (f'ends_with({HDRS}["nope"][0], "")', {HDRS: HEADERS}, False),
    (f'concat({HDRS}["nope"][0], "x") ne "x"', {HDRS: HEADERS}, False),
    (f'{HDRS}["nope"][0] eq "1" or ssl', {HDRS: HEADERS, "ssl": True}, True),
    (f'{HDRS}["nope"][0] eq "1" xor ssl', {HDRS: HEADERS, "ssl": True}, True),
    ('http.request.uri.args["q"][0] eq "1"', {"http.request.uri.args": {"q": ["1"]}}, True),
    ('http.request.cookies["s"][0] eq "v"', {"http.request.cookies": {"s": ["v"]}}, True),
    ("http.request.headers.truncated", {"http.request.headers.truncated": True}, True),
    # [*] with any / all
    (f'any({NAMES}[*] eq "accept")', {NAMES: ["x-a", "accept"]}, True),
    (f'any({NAMES}[*] eq "accept")', {NAMES: ["x-a"]}, False),
    (f'any({NAMES}[*] eq "accept")', {NAMES: []}, False),
    (f'all({NAMES}[*] eq "accept")', {NAMES: ["accept", "accept"]}, True),
    (f'all({NAMES}[*] eq "accept")', {NAMES: ["accept", "x"]}, False),
    (f'all({NAMES}[*] eq "accept")', {NAMES: []}, True),  # vacuous truth
    (f'any({HDRS}["accept"][*] contains "json")', {HDRS: HEADERS}, True),
    (f'all({HDRS}["accept"][*] contains "json")', {HDRS: HEADERS}, True),
    (f'all({HDRS}["accept"][*] contains "application")', {HDRS: HEADERS}, False),
    (f'any({HDRS}["nope"][*] eq "1")', {HDRS: HEADERS}, False),  # absent key: no elements
    (f'all({HDRS}["nope"][*] eq "1")', {HDRS: HEADERS}, True),  # ...like an empty array
    (f'any(lower({NAMES}[*]) in {{"x-a" "x-b"}})', {NAMES: ["X-B"]}, True),
    (f'any(starts_with({VALUES}[*], "Bearer "))', {VALUES: ["x", "Bearer t"]}, True),
    (f'any(ends_with({VALUES}[*], ".pem"))', {VALUES: ["a.pem"]}, True),
    (f"any(len({VALUES}[*]) gt 3)", {VALUES: ["ab", "abcd"]}, True),
    (f"all(len({VALUES}[*]) gt 3)", {VALUES: ["ab", "abcd"]}, False),
    (f'any({VALUES}[*] matches "^\\d+$")', {VALUES: ["a", "42"]}, True),
    (f'any({VALUES}[*] wildcard "*.PEM")', {VALUES: ["a.pem"]}, True),
    (f'join(upper({NAMES}[*]), "-") eq "A-B"', {NAMES: ["a", "b"]}, True),
    (f'not any({NAMES}[*] eq "x")', {NAMES: ["a"]}, True),
    # --- functions -------------------------------------------------------------------------
    (f'concat({H}, "/", "x") eq "a/x"', {H: "a"}, True),
    (f'concat("pre-", {H}) eq "pre-a"', {H: "a"}, True),
    (f'concat({NAMES}, {VALUES})[2] eq "v1"', {NAMES: ["a", "b"], VALUES: ["v1"]}, True),
    (f"len(concat({NAMES}, {VALUES})) eq 3", {NAMES: ["a", "b"], VALUES: ["v1"]}, True),
    (f'ends_with({H}, ".example.com")', {H: "api.example.com"}, True),
    (f'ends_with({H}, ".example.com")', {H: "api.EXAMPLE.com"}, False),
    (f'starts_with({H}, "api.")', {H: "api.example.com"}, True),
    (f'starts_with({H}, "API.")', {H: "api.example.com"}, False),
    (f'starts_with({H}, "")', {H: ""}, True),
    (f"len({H}) eq 11", {H: "example.com"}, True),
    (f"len({H}) eq 2", {H: "é"}, True),  # bytes, not characters
    (f"len({H}) eq 0", {}, True),
    (f"len({NAMES}) eq 2", {NAMES: ["a", "b"]}, True),
    (f'lower({H}) eq "example.com"', {H: "ExAmPlE.CoM"}, True),
    (f'lower({H}) eq "é"', {H: "É"}, False),  # ASCII only
    (f'lower({H}) eq "İ"', {H: "İ"}, True),  # no "i̇" from the Turkish capital I
    (f'lower({H}) eq "aé"', {H: "Aé"}, True),
    (f'upper({H}) eq "GET"', {H: "get"}, True),
    (f'upper({H}) eq "É"', {H: "é"}, False),
    (f'upper({H}) eq "ß"', {H: "ß"}, True),  # no "SS"
    (f'upper({H}) eq "ÿA"', {H: "ÿa"}, True),
    (f'substring({H}, 0, 3) eq "api"', {H: "api.example.com"}, True),
    (f'substring({H}, 4) eq "example.com"', {H: "api.example.com"}, True),
    (f'substring({H}, -4) eq ".com"', {H: "api.example.com"}, True),
    (f'substring({H}, 1, -1) eq "bc"', {H: "abcd"}, True),
    (f'substring({H}, 10, 20) eq ""', {H: "abc"}, True),
    (f'substring({H}, 0, 2) eq "é"', {H: "éa"}, True),  # byte offsets
    (f'url_decode({H}) eq "a b/c"', {H: "a%20b%2Fc"}, True),
    (f'url_decode({H}) eq "a b"', {H: "a+b"}, True),
    (f'url_decode({H}) eq "%41"', {H: "%2541"}, True),  # one pass by default
    (f'url_decode({H}, "r") eq "A"', {H: "%2541"}, True),  # recursive
    (f'url_decode({H}, "u") eq "é"', {H: "%u00e9"}, True),
    (f'url_decode({H}) eq "é"', {H: "%C3%A9"}, True),
    (f'decode_base64({H}) eq "hello"', {H: "aGVsbG8="}, True),
    (f'decode_base64({H}) eq "hello"', {H: "aGVsbG8"}, True),  # padding optional
    (f'decode_base64({H}) eq ""', {H: "not base64!"}, False),  # invalid → missing
    (f'decode_base64({H}) ne "x"', {H: "not base64!"}, False),
    (f'lookup_json_string({H}, "user", "name") eq "ann"', {H: JSON_DOC}, True),
    (f'lookup_json_string({H}, "user", "nope") eq "ann"', {H: JSON_DOC}, False),
    (f'lookup_json_string({H}, "user", "nope") ne "ann"', {H: JSON_DOC}, False),
    (f'lookup_json_string({H}, "user", "id") ne "x"', {H: JSON_DOC}, False),  # wrong type
    (f'lookup_json_string({H}, "n") ne "x"', {H: JSON_DOC}, False),  # null
    (f'lookup_json_string({H}, "a") ne "x"', {H: "not json"}, False),
    (f'lookup_json_integer({H}, "user", "id") eq 7', {H: JSON_DOC}, True),
    (f'lookup_json_integer({H}, "ids", 1) eq 4', {H: JSON_DOC}, True),
    (f'lookup_json_integer({H}, "ids", 2) ne 4', {H: JSON_DOC}, False),  # past the end
    (f'lookup_json_integer({H}, "flag") ne 1', {H: JSON_DOC}, False),  # a bool is no int
    (f'lookup_json_integer({H}, "nope") lt 100', {H: JSON_DOC}, False),
    (f'lookup_json_integer({H}, "nope") in {{0..100}}', {H: JSON_DOC}, False),
    (f'join({NAMES}, ",") eq "a,b"', {NAMES: ["a", "b"]}, True),
    (f'join({NAMES}, ",") eq ""', {NAMES: []}, True),
    (f'join({HDRS}["nope"], ",") ne "x"', {HDRS: HEADERS}, False),
    (f'to_string({PORT}) eq "443"', {PORT: 443}, True),
    ('to_string(ssl) eq "true"', {"ssl": True}, True),
    ('to_string(ssl) eq "false"', {}, True),
    ('to_string(ip.src) eq "2001:db8::1"', {"ip.src": "2001:db8::1"}, True),
    (f'to_string({H}) eq "a"', {H: "a"}, True),
    ("cidr(ip.src, 24, 64) eq 192.0.2.0", {"ip.src": "192.0.2.77"}, True),
    ("cidr(ip.src, 24, 64) eq 2001:db8:0:1::", {"ip.src": "2001:db8:0:1:2::3"}, True),
    ("cidr(ip.src, 32, 128) eq 192.0.2.77", {"ip.src": "192.0.2.77"}, True),
    ("cidr(ip.src, 0, 0) eq 0.0.0.0", {"ip.src": "192.0.2.77"}, True),
    ("cidr6(ip.src, 48) eq 2001:db8:1::", {"ip.src": "2001:db8:1:2::3"}, True),
    ("cidr6(ip.src, 48) eq 192.0.2.77", {"ip.src": "192.0.2.77"}, True),  # v4 unchanged
    # --- raw.* copies read the same facts --------------------------------------------------
    ('raw.http.request.uri.path eq "/a"', {"http.request.uri.path": "/a"}, True),
    # --- every cf.tls_client_auth string field compares as a String ------------------------
    (f'{TLS}cert_serial eq "527E0F20"', {TLS + "cert_serial": "527E0F20"}, True),
    (f'{TLS}cert_fingerprint_sha256 eq ""', {}, True),
    (f'{TLS}cert_subject_dn contains "CN=James"', {TLS + "cert_subject_dn": "CN=James,O=A"}, True),
]


@pytest.mark.parametrize(
    ("expression", "fields", "expected"),
    TABLE,
    ids=[f"{i}:{row[0][:60]}" for i, row in enumerate(TABLE)],
)
def test_evaluation_table(expression: str, fields: dict[str, Any], expected: bool) -> None:
    result = evaluate(expression, fields)
    assert result is expected, (expression, fields)


def test_table_covers_every_operator_and_function() -> None:
    text = " ".join(row[0] for row in TABLE)
    for token in [
        " eq ", "==", " ne ", "!=", " lt ", " < ", " le ", "<=", " gt ", " > ", " ge ", ">=",
        " contains ", " matches ", " ~ ", " wildcard ", " strict wildcard ", " in {", " & ",
        " bitwise_and ", "not ", "!", " and ", "&&", " or ", "||", " xor ", "^^", "[*]", '["',
        "any(", "all(", "concat(", "ends_with(", "starts_with(", "len(", "lower(", "upper(",
        "substring(", "url_decode(", "decode_base64(", "lookup_json_string(",
        "lookup_json_integer(", "join(", "to_string(", "cidr(", "cidr6(",
    ]:  # fmt: skip
        assert token in text, token
