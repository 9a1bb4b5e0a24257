"""Property tests: printed ASTs parse back equal; any text gives an AST or a RulesError."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mtlsgate.rules import RulesError, compile_expression
from mtlsgate.rules.printer import to_json, to_text
from tests.rules.helpers import facts_for

# RULES_FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the suite fast.
SETTINGS = settings(
    max_examples=int(os.environ.get("RULES_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CARET = re.compile(r"\AFilter parsing error \(\d+:\d+\):\n[^\n]*\n *\^+ .+\Z", re.S)

BOOL_FIELDS = [
    "ssl",
    "cf.tls_client_auth.cert_presented",
    "cf.tls_client_auth.cert_verified",
    "cf.tls_client_auth.cert_revoked",
    "http.request.headers.truncated",
]
STRING_FIELDS = [
    "http.host",
    "http.request.uri.path",
    "cf.tls_client_auth.cert_issuer_ski",
    "raw.http.request.uri.query",
]
INT_FIELDS = ["cf.edge.server_port", "http.request.timestamp.sec"]
IP_FIELDS = ["ip.src", "cf.edge.server_ip"]
ARRAY_FIELDS = ["http.request.headers.names", "http.request.uri.args.values"]
MAP_FIELDS = ["http.request.headers", "http.request.cookies"]

# --- literals ---------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.sampled_from([*list('abcXYZ09 .-_*"\\#/é€\n'), "K", "İ"]), max_size=8)


@st.composite
def string_literal(draw: Any) -> str:
    value = draw(TEXT)
    if draw(st.booleans()):
        out = []
        for ch in value:
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch.isascii() and draw(st.integers(0, 4)) == 0:
                out.append(draw(st.sampled_from([f"\\x{ord(ch):02x}", f"\\{ord(ch):03o}"])))
            else:
                out.append(ch)
        if draw(st.integers(0, 6)) == 0:
            out.append(draw(st.sampled_from(["\\xff", "\\x80", "\\xc3"])))  # not UTF-8
        return '"' + "".join(out) + '"'
    hashes = 0
    while '"' + "#" * hashes in value + '"' and hashes < 10:
        hashes += 1
    if '"' + "#" * hashes in value:
        value = value.replace('"', "")
    return "r" + "#" * hashes + '"' + value + '"' + "#" * hashes


@st.composite
def wildcard_literal(draw: Any) -> str:
    parts = draw(st.lists(st.one_of(st.just(None), TEXT), max_size=5))
    out: list[str] = []
    previous_star = False
    for p in parts:
        if p is None:
            if not previous_star:
                out.append("*")
            previous_star = True
        else:
            out.append(p.replace("\\", "\\\\").replace("*", "\\*"))
            previous_star = previous_star and not p
    pattern = "".join(out)
    hashes = 1
    while '"' + "#" * hashes in pattern:
        hashes += 1
    if draw(st.booleans()):
        return "r" + "#" * hashes + '"' + pattern + '"' + "#" * hashes
    return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'


REGEXES = st.sampled_from(
    [
        '"^api\\.example\\.com$"',
        '"(a+)+$"',
        '"[\\"]"',
        '"a\\"b"',
        'r"\\d{2,}"',
        'r#"["x]"#',
        '"(?i)abc"',
        '"é|€"',
        '""',
    ]
)


def int_literal(lo: int = -(2**63), hi: int = 2**63 - 1) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).flatmap(
        lambda n: st.sampled_from(
            [str(n), f"{'-' if n < 0 else ''}0x{abs(n):x}", f"{'-' if n < 0 else ''}0{abs(n):o}"]
        )
    )


IPV4 = st.ip_addresses(v=4)
IPV6 = st.ip_addresses(v=6)
IPS = st.one_of(IPV4, IPV6)


@st.composite
def ip_set_item(draw: Any) -> str:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return str(draw(IPS))
    if kind == 1:
        ip = draw(IPS)
        bits = draw(st.integers(0, 32 if ip.version == 4 else 128))
        return f"{ip}/{bits}"
    a, b = sorted(draw(st.one_of(st.tuples(IPV4, IPV4), st.tuples(IPV6, IPV6))))
    return f"{a}..{b}"


@st.composite
def int_set_item(draw: Any) -> str:
    a = draw(st.integers(-1000, 70000))
    if draw(st.booleans()):
        return f"{a}..{a + draw(st.integers(0, 1000))}"
    return str(a)


def set_of(item: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(item, min_size=1, max_size=4).map(lambda xs: "{" + " ".join(xs) + "}")


# --- values and comparisons -------------------------------------------------------------------

STRING_OPS = ["eq", "==", "ne", "!=", "lt", "<", "le", "<=", "gt", ">", "ge", ">=", "contains"]
INT_OPS = ["eq", "==", "ne", "!=", "lt", "<", "le", "<=", "gt", ">", "ge", ">="]


@st.composite
def string_value(draw: Any, star: str | None = None) -> str:
    """A String-typed value; with `star`, the `[*]` element of that array expression."""
    base = star or draw(
        st.one_of(
            st.sampled_from(STRING_FIELDS),
            st.sampled_from(ARRAY_FIELDS).map(lambda f: f"{f}[{0}]"),
            st.tuples(st.sampled_from(MAP_FIELDS), st.sampled_from(['"x-a"', '"k"'])).map(
                lambda t: f"{t[0]}[{t[1]}][1]"
            ),
        )
    )
    wrap = draw(st.integers(0, 8))
    if wrap == 1:
        return f"lower({base})"
    if wrap == 2:
        return f"upper({base})"
    if wrap == 3:
        return f"substring({base}, {draw(st.integers(-5, 5))})"
    if wrap == 4 and star is None:  # concat/join take a [*] array whole (see the report)
        return f"concat({base}, {draw(string_literal())})"
    if wrap == 5:
        return f"url_decode({base}, {draw(st.sampled_from(['r', 'u', 'ur']).map(repr))})".replace(
            "'", '"'
        )
    if wrap == 6:
        return f'lookup_json_string({base}, "a", 0)'
    if wrap == 7:
        return f"decode_base64({base})"
    return base


@st.composite
def comparison(draw: Any, star: str | None = None) -> str:
    kind = draw(st.integers(0, 9 if star is None else 5))
    if kind <= 2:
        lhs = draw(string_value(star))
        op = draw(st.sampled_from(STRING_OPS))
        return f"{lhs} {op} {draw(string_literal())}"
    if kind == 3:
        lhs = draw(string_value(star))
        op = draw(st.sampled_from(["matches", "~"]))
        return f"{lhs} {op} {draw(REGEXES)}"
    if kind == 4:
        lhs = draw(string_value(star))
        op = draw(st.sampled_from(["wildcard", "strict wildcard"]))
        return f"{lhs} {op} {draw(wildcard_literal())}"
    if kind == 5:
        lhs = draw(string_value(star))
        items = draw(st.lists(string_literal(), min_size=1, max_size=3))
        return f"{lhs} in {{{' '.join(items)}}}"
    if kind == 6:
        lhs = draw(
            st.one_of(
                st.sampled_from(INT_FIELDS),
                st.sampled_from(STRING_FIELDS + ARRAY_FIELDS).map(lambda f: f"len({f})"),
                st.just('lookup_json_integer(http.host, "a")'),
            )
        )
        choice = draw(st.integers(0, 2))
        if choice == 0:
            return f"{lhs} {draw(st.sampled_from(INT_OPS))} {draw(int_literal())}"
        if choice == 1:
            return f"{lhs} in {draw(set_of(int_set_item()))}"
        return f"{lhs} {draw(st.sampled_from(['&', 'bitwise_and']))} {draw(int_literal())}"
    if kind == 7:
        lhs = draw(
            st.sampled_from([*IP_FIELDS, "cidr(ip.src, 24, 64)", "cidr6(cf.edge.server_ip, 48)"])
        )
        if draw(st.booleans()):
            return f"{lhs} {draw(st.sampled_from(['eq', '==', 'ne', '!=']))} {draw(IPS)}"
        return f"{lhs} in {draw(set_of(ip_set_item()))}"
    if kind == 8:
        fn = draw(st.sampled_from(["starts_with", "ends_with"]))
        return f"{fn}({draw(string_value())}, {draw(string_literal())})"
    to_str = draw(st.sampled_from(["to_string(ssl)", "to_string(ip.src)", "to_string(cf.ray_id)"]))
    return f"{to_str} eq {draw(string_literal())}"


@st.composite
def quantifier(draw: Any) -> str:
    array_expr = draw(
        st.one_of(
            st.sampled_from(ARRAY_FIELDS),
            st.sampled_from(MAP_FIELDS).map(lambda m: f'{m}["x-a"]'),
        )
    )
    inner = draw(comparison(star=f"{array_expr}[*]"))
    return f"{draw(st.sampled_from(['any', 'all']))}({inner})"


ATOMS = st.one_of(st.sampled_from(BOOL_FIELDS), comparison(), quantifier())


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        children.map(lambda c: f"not ({c})"),
        children.map(lambda c: f"!({c})"),
        children.map(lambda c: f"({c})"),
        st.tuples(
            st.lists(children, min_size=2, max_size=3),
            st.sampled_from(["and", "&&", "or", "||", "xor", "^^"]),
        ).map(lambda t: f" {t[1]} ".join(f"({c})" for c in t[0])),
    )


EXPRESSIONS = st.recursive(ATOMS, _combine, max_leaves=6)


# --- facts for evaluating both sides ----------------------------------------------------------


def _facts(fields: frozenset[str], data: Any) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for key in fields:
        if key in BOOL_FIELDS:
            given[key] = data.draw(st.booleans())
        elif key in INT_FIELDS:
            given[key] = data.draw(st.integers(-10, 70000))
        elif key in IP_FIELDS:
            given[key] = data.draw(IPS)
        elif key in ARRAY_FIELDS:
            given[key] = data.draw(st.lists(TEXT, max_size=3))
        elif key in MAP_FIELDS:
            given[key] = data.draw(
                st.dictionaries(st.sampled_from(["x-a", "k"]), st.lists(TEXT, max_size=3))
            )
        else:
            given[key] = data.draw(TEXT)
    return facts_for(fields, given)


@SETTINGS
@given(text=EXPRESSIONS, data=st.data())
def test_print_then_parse_gives_an_equal_ast(text: str, data: Any) -> None:
    assume(len(text) <= 4096)
    compiled = compile_expression(text)  # the generator writes only valid expressions
    printed = to_text(compiled.tree)
    again = compile_expression(printed)
    assert again.tree == compiled.tree, (text, printed)
    assert to_json(again.tree) == to_json(compiled.tree)
    assert to_text(again.tree) == printed  # printing is canonical
    facts = _facts(compiled.fields, data)
    assert compiled(facts) is again(facts)
    assert compiled(facts) in (True, False)


def _check_total(text: str) -> None:
    try:
        compiled = compile_expression(text)
    except RulesError as exc:
        assert CARET.match(exc.render()), exc.render()
        return
    # Whatever compiles also evaluates (on the defaults) and prints back to the same tree.
    assert compiled(facts_for(compiled.fields, {})) in (True, False)
    assert compile_expression(to_text(compiled.tree)).tree == compiled.tree


SYNTAX = st.sampled_from(
    [
        *list('()[]{}"\\#*$!&|^~=<>,.-_ \n\tr0123456789abfx:/'),
        "and",
        "or",
        "xor",
        "not",
        "eq",
        "in",
        "ssl",
        "http.host",
        "ip.src",
        "any(",
        "[*]",
        "lower(",
        "wildcard",
        "strict",
        "matches",
        'r#"',
        '"#',
        "..",
        "0x",
        "::",
        "/24",
    ]
)


@SETTINGS
@given(text=st.text(max_size=60))
def test_arbitrary_text_gives_an_ast_or_a_rules_error(text: str) -> None:
    _check_total(text)


@SETTINGS
@given(text=st.lists(SYNTAX, max_size=25).map("".join))
def test_syntax_soup_gives_an_ast_or_a_rules_error(text: str) -> None:
    _check_total(text)


@st.composite
def mutated(draw: Any) -> str:
    text = draw(EXPRESSIONS)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 6)))
        action = draw(st.integers(0, 3))
        if action == 0:
            text = text[:i] + text[j:]  # delete
        elif action == 1:
            text = text[:i] + draw(SYNTAX) + text[i:]  # insert
        elif action == 2:
            text = text[:i] + draw(SYNTAX) + text[j:]  # replace
        else:
            text = text[:i] + text[i:j] + text[i:]  # duplicate
    return text


@SETTINGS
@given(text=mutated())
def test_mutated_expressions_give_an_ast_or_a_rules_error(text: str) -> None:
    _check_total(text)


@settings(max_examples=100, deadline=None)
@given(ip=IPS, bits=st.integers(0, 128))
def test_cidr_matches_ipaddress(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, bits: int
) -> None:
    bits = min(bits, 32 if ip.version == 4 else 128)
    net = ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    rule = compile_expression(f"ip.src in {{{net}}}")
    assert rule({"ip.src": ip}) is True
    top = (1 << net.max_prefixlen) - 1
    if int(net.broadcast_address) < top:
        assert rule({"ip.src": net.broadcast_address + 1}) is False
