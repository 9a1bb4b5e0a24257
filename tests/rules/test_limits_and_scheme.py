"""Caret diagnostics, length and depth limits, RE2's linear time, and the typed scheme."""

from __future__ import annotations

import re
import time

import pytest

from mtlsgate.rules import MAX_DEPTH, MAX_LENGTH, RulesError, compile_expression
from mtlsgate.rules.fields_cloudflare import FIELDS, SCHEME
from mtlsgate.rules.scheme import BOOL, INT, IP, STRING, array, map_of
from tests.rules.helpers import error_of, evaluate

CARET = re.compile(r"\AFilter parsing error \((\d+):(\d+)\):\n([^\n]*)\n( *)(\^+) (.+)\Z", re.S)


def assert_caret(exc: RulesError) -> re.Match[str]:
    m = CARET.match(exc.render())
    assert m is not None, exc.render()
    line, col = int(m.group(1)), int(m.group(2))
    assert len(m.group(4)) == col - 1  # the carets start under the column named
    assert m.group(3) == exc.expression.split("\n")[line - 1]
    assert str(exc) == exc.render()
    return m


def test_anchor_style_diagnostic_points_at_the_fault() -> None:
    expr = 'http.host eq "a" and cf.tls_client_auth.cert_verifed'
    exc = error_of(expr)
    m = assert_caret(exc)
    assert (m.group(1), m.group(2)) == ("1", "22")
    assert m.group(5) == "^" * len("cf.tls_client_auth.cert_verifed")
    assert m.group(6) == "unknown identifier"
    assert exc.reason == "unknown identifier"


def test_caret_on_a_later_line_shows_that_line() -> None:
    exc = error_of("ssl and\n   http.host eq 12")
    m = assert_caret(exc)
    assert (m.group(1), m.group(2), m.group(3)) == ("2", "17", "   http.host eq 12")


def test_length_limit_is_4096_characters() -> None:
    assert MAX_LENGTH == 4096
    base = 'http.host eq "'
    ok = base + "a" * (MAX_LENGTH - len(base) - 1) + '"'
    assert len(ok) == MAX_LENGTH
    compile_expression(ok)
    too_long = base + "a" * (MAX_LENGTH - len(base)) + '"'
    exc = error_of(too_long)
    m = assert_caret(exc)
    assert int(m.group(2)) == MAX_LENGTH + 1  # points at the first character past the limit
    assert "4097 characters" in exc.reason and "4096" in exc.reason


def test_length_counts_characters_not_bytes() -> None:
    base = 'http.host eq "'
    compile_expression(base + "é" * (MAX_LENGTH - len(base) - 1) + '"')


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "(" * n + "ssl" + ")" * n,
        lambda n: "not " * n + "ssl",
        lambda n: "!" * n + "ssl",
        lambda n: "lower(" * n + "http.host" + ")" * n + ' eq "a"',
    ],
    ids=["parens", "not", "bang", "calls"],
)
def test_nesting_depth_limit(make: object) -> None:
    assert callable(make)
    compile_expression(make(MAX_DEPTH))
    exc = error_of(make(MAX_DEPTH + 1))
    assert_caret(exc)
    assert exc.reason == f"maximum nesting depth exceeded (limit: {MAX_DEPTH})"


def test_deep_nesting_within_the_length_limit_is_an_error_not_a_crash() -> None:
    for text in ["(" * 4000, "not " * 1000 + "ssl", "!" * 4096, "lower(" * 600]:
        assert_caret(error_of(text))


def test_long_flat_chains_are_not_nesting() -> None:
    compile_expression(" and ".join(["ssl"] * 500))
    compile_expression(" or ".join([f"cf.edge.server_port eq {i}" for i in range(120)]))


def test_matches_is_linear_time() -> None:
    # (a+)+$ against "aaaa…!" is catastrophic for a backtracking engine.
    rule = compile_expression('http.host matches "(a+)+$"')
    value = "a" * 100_000 + "!"
    start = time.perf_counter()
    assert rule({"http.host": value}) is False
    assert rule({"http.host": "a" * 100_000}) is True
    assert time.perf_counter() - start < 0.5


def test_backreferences_are_rejected_as_re2_does() -> None:
    exc = error_of(r'http.host matches r"(a)\1"')
    assert exc.reason.startswith("invalid regular expression")
    assert_caret(exc)


def test_regex_errors_are_not_logged_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    error_of('http.host matches "("')
    assert capfd.readouterr().err == ""


def test_non_utf8_values_do_not_crash_matching() -> None:
    # url_decode of %ff gives a byte that is not UTF-8; matching must still answer.
    assert evaluate('url_decode(http.host) matches "^a"', {"http.host": "a%ff"}) is True
    assert evaluate('url_decode(http.host) matches "^b"', {"http.host": "a%ff"}) is False
    assert evaluate('url_decode(http.host) wildcard "a*"', {"http.host": "a%ff"}) is True
    assert evaluate('url_decode(http.host) wildcard "a\\xff"', {"http.host": "a%ff"}) is True
    assert evaluate('url_decode(http.host) eq "a\\xff"', {"http.host": "a%FF"}) is True


def test_lone_surrogates_in_the_text_are_rejected() -> None:
    exc = error_of('http.host eq "\ud800"')
    assert_caret(exc)
    assert "Unicode" in exc.reason


# --- the scheme -------------------------------------------------------------------------------

TLS_FIELDS = {
    "cert_presented": BOOL,
    "cert_verified": BOOL,
    "cert_revoked": BOOL,
    "cert_issuer_dn": STRING,
    "cert_subject_dn": STRING,
    "cert_issuer_dn_rfc2253": STRING,
    "cert_subject_dn_rfc2253": STRING,
    "cert_issuer_dn_legacy": STRING,
    "cert_subject_dn_legacy": STRING,
    "cert_serial": STRING,
    "cert_issuer_serial": STRING,
    "cert_fingerprint_sha256": STRING,
    "cert_fingerprint_sha1": STRING,
    "cert_not_before": STRING,
    "cert_not_after": STRING,
    "cert_ski": STRING,
    "cert_issuer_ski": STRING,
    "cert_rfc9440": STRING,
    "cert_rfc9440_too_large": BOOL,
    "cert_chain_rfc9440": STRING,
    "cert_chain_rfc9440_too_large": BOOL,
}

OTHER_FIELDS = {
    "http.host": STRING,
    "http.request.method": STRING,
    "http.request.uri": STRING,
    "http.request.uri.path": STRING,
    "http.request.uri.path.extension": STRING,
    "http.request.uri.query": STRING,
    "http.request.full_uri": STRING,
    "http.request.uri.args": map_of(array(STRING)),
    "http.request.uri.args.names": array(STRING),
    "http.request.uri.args.values": array(STRING),
    "http.request.headers": map_of(array(STRING)),
    "http.request.headers.names": array(STRING),
    "http.request.headers.values": array(STRING),
    "http.request.headers.truncated": BOOL,
    "http.request.cookies": map_of(array(STRING)),
    "http.cookie": STRING,
    "http.referer": STRING,
    "http.user_agent": STRING,
    "http.x_forwarded_for": STRING,
    "http.request.version": STRING,
    "http.request.timestamp.sec": INT,
    "http.request.timestamp.msec": INT,
    "ip.src": IP,
    "ssl": BOOL,
    "cf.tls_version": STRING,
    "cf.tls_cipher": STRING,
    "cf.edge.server_port": INT,
    "cf.edge.server_ip": IP,
    "cf.ray_id": STRING,
}


def _use(name: str, t: object) -> str:
    if t == BOOL:
        return name
    if t == STRING:
        return f'{name} eq "x"'
    if t == INT:
        return f"{name} eq 1"
    if t == IP:
        return f"{name} eq 192.0.2.1"
    if t == array(STRING):
        return f'{name}[0] eq "x"'
    return f'{name}["k"][0] eq "x"'


def test_all_21_tls_client_auth_fields_with_their_types() -> None:
    assert len(TLS_FIELDS) == 21
    tls_in_scheme = {n for n in FIELDS if n.startswith("cf.tls_client_auth.")}
    assert tls_in_scheme == {"cf.tls_client_auth." + n for n in TLS_FIELDS}
    for short, t in TLS_FIELDS.items():
        name = "cf.tls_client_auth." + short
        fld = SCHEME.get(name)
        assert fld is not None and fld.type == t, name
        rule = compile_expression(_use(name, t))
        assert rule.fields == frozenset({name})
    error_of("cf.tls_client_auth.cert_filtered")  # documented as not existing


@pytest.mark.parametrize(("name", "t"), sorted(OTHER_FIELDS.items()))
def test_other_fields_compile_with_their_types(name: str, t: object) -> None:
    fld = SCHEME.get(name)
    assert fld is not None and fld.type == t
    compile_expression(_use(name, t))
    if name.startswith("http."):
        raw = SCHEME.get("raw." + name)
        assert raw is not None and raw.type == t and raw.key == name


def test_tls_fields_default_to_false_and_empty() -> None:
    for short, t in TLS_FIELDS.items():
        name = "cf.tls_client_auth." + short
        expr = name if t == BOOL else f'{name} eq ""'
        assert evaluate(expr) is (t != BOOL), name


@pytest.mark.parametrize(
    "name",
    [
        "ip.src.country",
        "ip.src.continent",
        "ip.src.city",
        "ip.src.asnum",
        "ip.src.lat",
        "ip.src.is_in_european_union",
        "ip.geoip.country",
        "cf.threat_score",
        "cf.client.bot",
        "cf.bot_management.score",
        "cf.bot_management.verified_bot",
        "cf.verified_bot_category",
        "cf.waf.score",
    ],
)
def test_fields_the_edge_cannot_know_are_rejected_saying_so(name: str) -> None:
    for expr in (name, f'{name} eq "x"', f"not {name}", f'ssl and lower({name}) eq "x"'):
        exc = error_of(expr)
        m = assert_caret(exc)
        assert m.group(5) == "^" * len(name)
        assert exc.reason.startswith(f"{name}: mtlsgate has no "), exc.reason
        assert "never match" in exc.reason


def test_unknown_fields_say_unknown_identifier() -> None:
    for expr in ("ip.source eq 1.2.3.4", "cf.tls_client_auth eq 1", "http eq 1"):
        assert error_of(expr).reason == "unknown identifier"


def test_lists_are_rejected_with_a_clear_error() -> None:
    exc = error_of("ip.src in $known_bots")
    m = assert_caret(exc)
    assert m.group(5) == "^" * len("$known_bots")
    assert "lists ($name) are not supported" in exc.reason


def test_integer_literals_are_64_bit() -> None:
    compile_expression("cf.edge.server_port eq 9223372036854775807")
    compile_expression("cf.edge.server_port eq -9223372036854775808")
    for lit in ("9223372036854775808", "-9223372036854775809", "0x10000000000000000"):
        exc = error_of(f"cf.edge.server_port eq {lit}")
        assert "out of range" in exc.reason
        assert_caret(exc)
