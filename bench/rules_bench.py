"""Rules-language evaluation benchmark: compiled expressions vs hand-written Python.

Requirement: report evaluations per second for the seed's rule and for a 50-rule ruleset
(first match wins), alongside hand-written Python functions of the same logic over the same
field values, measured in the same run; the compiled form may cost at most 1.5x the
hand-written one (time per evaluation).

    .venv/bin/python bench/rules_bench.py            # full run (~1 minute)
    .venv/bin/python bench/rules_bench.py --quick    # short run (~10 s)
    .venv/bin/python bench/rules_bench.py --check    # exit 1 if a workload FAILs

"compiled" is what the edge runs: for one rule the generated function (`CompiledExpression.fn`),
for the ruleset the straight-line first-match function from `compile_first_match`. The "alt"
column shows the slower ways for comparison: one rule called through the `CompiledExpression`
object's `__call__`, and the ruleset as a loop calling each rule's `.fn`.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import re2

from mtlsgate.rules import compile_expression
from mtlsgate.rules.compiler import compile_first_match
from mtlsgate.rules.fields_cloudflare import FIELDS
from mtlsgate.rules.scheme import default_value

LIMIT = 1.5
Facts = dict[str, Any]
Pred = Callable[[Facts], Any]

# --------------------------------------------------------------------------- facts

_TLS = "cf.tls_client_auth."


def make_facts(headers: dict[str, list[str]] | None = None, **over: Any) -> Facts:
    """A complete facts mapping: every field's default, a typical request, then overrides
    (keyword names use '__' for '.')."""
    f: Facts = {name: default_value(t) for name, t in FIELDS.items()}
    h = {
        "host": ["www.shop.test"],
        "user-agent": ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"],
        "accept": ["text/html,application/xhtml+xml"],
        "accept-encoding": ["gzip, br"],
        "cookie": ["sid=4f1c2a; theme=dark"],
    }
    if headers is not None:
        h.update(headers)
        h = {k: v for k, v in h.items() if v is not None}
    f.update(
        {
            "http.host": "www.shop.test",
            "http.request.method": "GET",
            "http.request.uri": "/products/123?ref=home",
            "http.request.uri.path": "/products/123",
            "http.request.uri.path.extension": "",
            "http.request.uri.query": "ref=home",
            "http.request.uri.args": {"ref": ["home"]},
            "http.request.uri.args.names": ["ref"],
            "http.request.uri.args.values": ["home"],
            "http.request.full_uri": "https://www.shop.test/products/123?ref=home",
            "http.cookie": "sid=4f1c2a; theme=dark",
            "http.referer": "https://www.shop.test/",
            "http.user_agent": h.get("user-agent", [""])[0],
            "http.x_forwarded_for": "",
            "http.request.version": "HTTP/2",
            "ip.src": ipaddress.ip_address("203.0.113.50"),
            "ssl": True,
            "cf.tls_version": "TLSv1.3",
            "cf.tls_cipher": "AEAD-AES128-GCM-SHA256",
            "cf.edge.server_port": 443,
            "cf.edge.server_ip": ipaddress.ip_address("198.18.0.1"),
            _TLS + "cert_presented": True,
            _TLS + "cert_verified": True,
            _TLS + "cert_revoked": False,
            _TLS + "cert_issuer_dn": "CN=Example Client CA,O=Example",
            _TLS + "cert_subject_dn": "CN=alice,OU=Staff,O=Example",
            _TLS + "cert_issuer_ski": "5C6D7E8F90123456789A0B1C2D3E4F5061728394",
            _TLS + "cert_fingerprint_sha256": "9f" * 32,
            _TLS + "cert_not_after": "2027-06-30T12:00:00Z",
        }
    )
    for k, v in over.items():
        f[k.replace("__", ".")] = v
    f["http.request.headers"] = h
    f["http.request.headers.names"] = list(h)
    f["http.request.headers.values"] = [v for vs in h.values() for v in vs]
    return f


def ip(text: str) -> Any:
    return ipaddress.ip_address(text)


# ------------------------------------------------------------------ hand-written helpers
# What a competent engineer writes: frozensets, RE2 programs compiled once, CIDR networks
# parsed once and grouped by IP version, `.get` for header/arg lookups.


def nets(*cidrs: str) -> dict[int, tuple[Any, ...]]:
    parsed = [ipaddress.ip_network(c) for c in cidrs]
    return {v: tuple(n for n in parsed if n.version == v) for v in (4, 6)}


def in_nets(addr: Any, by_version: dict[int, tuple[Any, ...]]) -> bool:
    for n in by_version[addr.version]:  # noqa: SIM110 (a loop is cheaper than any(genexpr))
        if addr in n:
            return True
    return False


PRIVATE = nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
PRIVATE6 = nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
BLOCKED = nets("192.0.2.0/24", "198.51.100.0/24", "2001:db8:bad::/48")
BILLING = nets("203.0.113.0/28", "203.0.113.128/25")
TEN = nets("10.0.0.0/8")

SEED_HOSTS = frozenset({"a.example.com", "b.example.com"})
ABC_HOSTS = frozenset({"a.example.com", "b.example.com", "c.example.com"})
LEGACY_HOSTS = frozenset({"legacy.example.com", "old.example.com", "v1.example.com"})
BAD_METHODS = frozenset({"TRACE", "TRACK", "CONNECT"})
WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OLD_TLS = frozenset({"TLSv1", "TLSv1.1"})
BAD_ARGS = frozenset({"cmd", "exec", "shell"})
BAD_EXT = frozenset({"exe", "dll", "bat", "ps1", "sh"})
REVOKED_FP = frozenset({"0a" * 32, "1b" * 32, "2c" * 32})
TRUSTED_SKI = frozenset(
    {"5C6D7E8F90123456789A0B1C2D3E4F5061728394", "0011223344556677889900AABBCCDDEEFF001122"}
)
API_KEY = "k-3f9a1c7e"
PARTNER_SKI = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"

RX_SCRIPT_EXT = re2.compile(r"(?i)\.(php|asp|aspx|jsp|cgi)$").search
RX_WP = re2.compile(r"^/wp-(admin|login|content)").search
RX_XFF_INTERNAL = re2.compile(r"^(10|127)\.").search
RX_BOT = re2.compile(r"(?i)(bot|crawler|spider)").search
WC_INTERNAL = re2.compile(r"(?si).*\.internal\.example\.com").fullmatch
WC_EVIL_REFERER = re2.compile(r"(?si).*://.*\.evil\.test/.*").fullmatch
WC_SOURCEMAP = re2.compile(r"(?si)/static/.*\.map").fullmatch
WC_BASIC = re2.compile(r"(?si)basic .*").fullmatch


def h0(f: Facts) -> bool:
    return f["http.host"] in SEED_HOSTS and not f["cf.tls_client_auth.cert_verified"]


def h5(f: Facts) -> bool:
    v = f["http.request.headers"].get("x-api-key")
    return f["http.host"] == "api.example.com" and not (v is not None and v[0] == API_KEY)


def h17(f: Facts) -> bool:
    v = f["http.request.uri.args"].get("debug")
    return v is not None and v[0] == "1" and not in_nets(f["ip.src"], TEN)


def h20(f: Facts) -> bool:
    if not f["http.request.uri.path"].startswith("/api/"):
        return False
    v = f["http.request.headers"].get("content-type")
    return v is not None and "xml" in v[0]


def h31(f: Facts) -> bool:
    v = f["http.request.headers"].get("x-forwarded-for")
    return v is not None and RX_XFF_INTERNAL(v[0]) is not None


def h37(f: Facts) -> bool:
    v = f["http.request.headers"].get("authorization")
    return v is not None and WC_BASIC(v[0]) is not None and not f["ssl"]


def h48(f: Facts) -> bool:
    v = f["http.request.headers"].get("x-requested-with")
    ajax = v is not None and v[0] == "XMLHttpRequest"
    path: str = f["http.request.uri.path"]
    return ajax ^ path.startswith("/ajax/")


SEED = '(http.host in {"a.example.com" "b.example.com"} and not cf.tls_client_auth.cert_verified)'

# (expression, hand-written equivalent). Order matters: first match wins.
RULES: list[tuple[str, Pred]] = [
    (SEED, h0),
    ("cf.tls_client_auth.cert_revoked", lambda f: f["cf.tls_client_auth.cert_revoked"]),
    (
        "ip.src in {192.0.2.0/24 198.51.100.0/24 2001:db8:bad::/48}",
        lambda f: in_nets(f["ip.src"], BLOCKED),
    ),
    (
        'http.request.method in {"TRACE" "TRACK" "CONNECT"}',
        lambda f: f["http.request.method"] in BAD_METHODS,
    ),
    (
        'starts_with(http.request.uri.path, "/admin")'
        " and not ip.src in {10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}",
        lambda f: (
            f["http.request.uri.path"].startswith("/admin") and not in_nets(f["ip.src"], PRIVATE)
        ),
    ),
    (
        'http.host eq "api.example.com"'
        f' and not http.request.headers["x-api-key"][0] eq "{API_KEY}"',
        h5,
    ),
    (
        'any(http.request.headers.names[*] == "x-debug-token")',
        lambda f: "x-debug-token" in f["http.request.headers.names"],
    ),
    (
        r'http.request.uri.path matches r"(?i)\.(php|asp|aspx|jsp|cgi)$"',
        lambda f: RX_SCRIPT_EXT(f["http.request.uri.path"]) is not None,
    ),
    (
        'lower(http.host) wildcard "*.internal.example.com"'
        " and not cf.tls_client_auth.cert_presented",
        lambda f: (
            WC_INTERNAL(f["http.host"].lower()) is not None
            and not f["cf.tls_client_auth.cert_presented"]
        ),
    ),
    (
        "cf.edge.server_port in {8000..8999 2052 2082}",
        lambda f: (p := f["cf.edge.server_port"]) in (2052, 2082) or 8000 <= p <= 8999,
    ),
    ("len(http.request.uri.query) gt 1024", lambda f: len(f["http.request.uri.query"]) > 1024),
    (
        'http.request.uri.path contains "/../" or http.request.uri.query contains "%2e%2e"',
        lambda f: "/../" in f["http.request.uri.path"] or "%2e%2e" in f["http.request.uri.query"],
    ),
    (
        f'cf.tls_client_auth.cert_issuer_ski eq "{PARTNER_SKI}"'
        ' and http.host ne "partners.example.com"',
        lambda f: (
            f["cf.tls_client_auth.cert_issuer_ski"] == PARTNER_SKI
            and f["http.host"] != "partners.example.com"
        ),
    ),
    (
        'ends_with(http.request.uri.path, ".env")'
        ' or ends_with(http.request.uri.path, ".git/config")',
        lambda f: (
            f["http.request.uri.path"].endswith(".env")
            or f["http.request.uri.path"].endswith(".git/config")
        ),
    ),
    (
        'http.user_agent contains "sqlmap" or http.user_agent contains "nikto"'
        ' or http.user_agent eq ""',
        lambda f: (
            "sqlmap" in f["http.user_agent"]
            or "nikto" in f["http.user_agent"]
            or f["http.user_agent"] == ""
        ),
    ),
    (
        'http.request.method eq "POST"'
        ' and not any(http.request.headers.names[*] == "content-type")',
        lambda f: (
            f["http.request.method"] == "POST"
            and "content-type" not in f["http.request.headers.names"]
        ),
    ),
    (
        "ssl xor cf.edge.server_port eq 443",
        lambda f: f["ssl"] ^ (f["cf.edge.server_port"] == 443),
    ),
    ('http.request.uri.args["debug"][0] eq "1" and not ip.src in {10.0.0.0/8}', h17),
    (
        'http.host in {"legacy.example.com" "old.example.com" "v1.example.com"}'
        ' and http.request.method in {"PUT" "PATCH" "DELETE"}',
        lambda f: f["http.host"] in LEGACY_HOSTS and f["http.request.method"] in WRITE_METHODS,
    ),
    (
        "cf.tls_client_auth.cert_presented and not cf.tls_client_auth.cert_verified",
        lambda f: (
            f["cf.tls_client_auth.cert_presented"] and not f["cf.tls_client_auth.cert_verified"]
        ),
    ),
    (
        'starts_with(http.request.uri.path, "/api/")'
        ' and http.request.headers["content-type"][0] contains "xml"',
        h20,
    ),
    ('http.cookie contains "admin=true"', lambda f: "admin=true" in f["http.cookie"]),
    (
        'http.referer wildcard "*://*.evil.test/*"',
        lambda f: WC_EVIL_REFERER(f["http.referer"]) is not None,
    ),
    (
        "len(http.request.headers.names) gt 60",
        lambda f: len(f["http.request.headers.names"]) > 60,
    ),
    ('cf.tls_version in {"TLSv1" "TLSv1.1"}', lambda f: f["cf.tls_version"] in OLD_TLS),
    (
        'http.request.version eq "HTTP/1.0" and http.host eq ""',
        lambda f: f["http.request.version"] == "HTTP/1.0" and f["http.host"] == "",
    ),
    (
        'any(lower(http.request.headers["x-forwarded-proto"][*]) eq "http") and ssl',
        lambda f: (
            any(v.lower() == "http" for v in f["http.request.headers"].get("x-forwarded-proto", ()))
            and f["ssl"]
        ),
    ),
    (
        'http.request.uri.path matches "^/wp-(admin|login|content)"',
        lambda f: RX_WP(f["http.request.uri.path"]) is not None,
    ),
    (
        'cf.tls_client_auth.cert_subject_dn contains "OU=Contractors"'
        ' and http.request.method ne "GET"',
        lambda f: (
            "OU=Contractors" in f["cf.tls_client_auth.cert_subject_dn"]
            and f["http.request.method"] != "GET"
        ),
    ),
    (
        "ip.src in {203.0.113.0/28 203.0.113.128/25}"
        ' and starts_with(http.request.uri.path, "/billing")',
        lambda f: (
            in_nets(f["ip.src"], BILLING) and f["http.request.uri.path"].startswith("/billing")
        ),
    ),
    (
        'not http.request.method in {"GET" "HEAD" "POST" "PUT" "PATCH" "DELETE" "OPTIONS"}',
        lambda f: f["http.request.method"] not in KNOWN_METHODS,
    ),
    (r'http.request.headers["x-forwarded-for"][0] matches r"^(10|127)\."', h31),
    (
        'http.host eq "pay.example.com" and (not ssl or cf.tls_version eq "TLSv1.2")',
        lambda f: (
            f["http.host"] == "pay.example.com"
            and (not f["ssl"] or f["cf.tls_version"] == "TLSv1.2")
        ),
    ),
    (
        'all(http.request.headers["accept"][*] eq "*/*") and http.user_agent eq "curl/8.0"',
        lambda f: (
            all(v == "*/*" for v in f["http.request.headers"].get("accept", ()))
            and f["http.user_agent"] == "curl/8.0"
        ),
    ),
    (
        'http.request.uri.query contains "union" and http.request.uri.query contains "select"',
        lambda f: (
            "union" in f["http.request.uri.query"] and "select" in f["http.request.uri.query"]
        ),
    ),
    (
        "cf.tls_client_auth.cert_fingerprint_sha256 in {"
        + " ".join(f'"{x}"' for x in sorted(REVOKED_FP))
        + "}",
        lambda f: f["cf.tls_client_auth.cert_fingerprint_sha256"] in REVOKED_FP,
    ),
    (
        'lower(http.request.uri.path) wildcard "/static/*.map"',
        lambda f: WC_SOURCEMAP(f["http.request.uri.path"].lower()) is not None,
    ),
    ('http.request.headers["authorization"][0] wildcard "Basic *" and not ssl', h37),
    (
        "len(http.request.uri.path) ge 2048 or len(http.user_agent) gt 512",
        lambda f: len(f["http.request.uri.path"]) >= 2048 or len(f["http.user_agent"]) > 512,
    ),
    (
        "cf.edge.server_port in {22 23 3389 5900..5910}",
        lambda f: (p := f["cf.edge.server_port"]) in (22, 23, 3389) or 5900 <= p <= 5910,
    ),
    (
        'any(http.request.uri.args.names[*] in {"cmd" "exec" "shell"})',
        lambda f: any(n in BAD_ARGS for n in f["http.request.uri.args.names"]),
    ),
    (
        'http.host in {"a.example.com" "b.example.com" "c.example.com"}'
        ' and cf.tls_client_auth.cert_issuer_dn ne "CN=Example Client CA,O=Example"',
        lambda f: (
            f["http.host"] in ABC_HOSTS
            and f["cf.tls_client_auth.cert_issuer_dn"] != "CN=Example Client CA,O=Example"
        ),
    ),
    ('ends_with(lower(http.host), ".onion")', lambda f: f["http.host"].lower().endswith(".onion")),
    (
        '(http.request.method eq "OPTIONS" and not any(http.request.headers.names[*] == "origin"))',
        lambda f: (
            f["http.request.method"] == "OPTIONS"
            and "origin" not in f["http.request.headers.names"]
        ),
    ),
    (
        'http.x_forwarded_for ne ""'
        " and not ip.src in {10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7}",
        lambda f: f["http.x_forwarded_for"] != "" and not in_nets(f["ip.src"], PRIVATE6),
    ),
    (
        'cf.tls_client_auth.cert_not_after lt "2026-12-01T00:00:00Z"'
        " and cf.tls_client_auth.cert_presented",
        lambda f: (
            f["cf.tls_client_auth.cert_not_after"] < "2026-12-01T00:00:00Z"
            and f["cf.tls_client_auth.cert_presented"]
        ),
    ),
    (
        'http.request.uri.path.extension in {"exe" "dll" "bat" "ps1" "sh"}',
        lambda f: f["http.request.uri.path.extension"] in BAD_EXT,
    ),
    (
        'starts_with(http.request.uri.path, "/internal/") and not (cf.tls_client_auth.cert_verified'
        " and cf.tls_client_auth.cert_issuer_ski in {"
        + " ".join(f'"{x}"' for x in sorted(TRUSTED_SKI))
        + "})",
        lambda f: (
            f["http.request.uri.path"].startswith("/internal/")
            and not (
                f["cf.tls_client_auth.cert_verified"]
                and f["cf.tls_client_auth.cert_issuer_ski"] in TRUSTED_SKI
            )
        ),
    ),
    (
        'http.request.headers["x-requested-with"][0] eq "XMLHttpRequest"'
        ' xor starts_with(http.request.uri.path, "/ajax/")',
        h48,
    ),
    (
        'http.user_agent matches "(?i)(bot|crawler|spider)"'
        ' and not http.user_agent contains "Googlebot"',
        lambda f: (
            RX_BOT(f["http.user_agent"]) is not None and "Googlebot" not in f["http.user_agent"]
        ),
    ),
]
assert len(RULES) == 50

# Representative requests for the ruleset, with the rule index each must hit (-1: none).
RULESET_FACTS: list[tuple[str, Facts, int]] = [
    (
        "early (#4)",
        make_facts(http__request__uri__path="/admin/users", http__request__uri="/admin/users"),
        4,
    ),
    (
        "late (#49)",
        make_facts(
            headers={"user-agent": ["ExampleCrawler/2.1 (+https://crawler.test)"]},
            http__user_agent="ExampleCrawler/2.1 (+https://crawler.test)",
        ),
        49,
    ),
    ("none (-1)", make_facts(), -1),
]

SEED_FACTS: list[tuple[str, Facts, bool]] = [
    (
        "match",
        make_facts(http__host="a.example.com", cf__tls_client_auth__cert_verified=False),
        True,
    ),
    ("host in set, verified", make_facts(http__host="b.example.com"), False),
    ("other host", make_facts(), False),
]


def random_facts(rng: random.Random) -> Facts:
    """Requests drawn from value pools chosen so that every rule is true on some and false
    on others: the equivalence check then exercises both outcomes of each rule."""
    c = rng.choice
    headers: dict[str, Any] = {}
    for name, pool in {
        "x-api-key": [API_KEY, "wrong"],
        "x-debug-token": ["1"],
        "content-type": ["application/xml", "application/json"],
        "x-forwarded-proto": ["HTTP", "https"],
        "x-forwarded-for": ["10.1.2.3", "127.0.0.1", "8.8.8.8"],
        "accept": ["*/*", "text/html"],
        "authorization": ["basic dXNlcjpwYXNz", "Bearer abc"],
        "x-requested-with": ["XMLHttpRequest", "fetch"],
        "origin": ["https://a.test"],
    }.items():
        if rng.random() < 0.3:
            headers[name] = [c(pool)] if rng.random() < 0.8 else [c(pool), c(pool)]
    if rng.random() < 0.1:
        headers.update({f"x-pad-{i}": ["1"] for i in range(61)})
    if rng.random() < 0.1:
        headers["user-agent"] = None
    path = c(
        [
            "/",
            "/products/123",
            "/admin/users",
            "/index.PHP",
            "/a/../etc",
            "/.env",
            "/repo/.git/config",
            "/api/v1/items",
            "/wp-login.php",
            "/billing/invoices",
            "/static/APP.JS.MAP",
            "/internal/metrics",
            "/ajax/cart",
            "/x" * 1100,
        ]
    )
    ua = c(
        [
            "Mozilla/5.0 Firefox/128.0",
            "sqlmap/1.7",
            "",
            "curl/8.0",
            "Googlebot/2.1",
            "SpiderMan bot",
            "A" * 600,
        ]
    )
    arg_names = c([["ref"], ["debug"], ["cmd"], [], ["q", "exec"]])
    return make_facts(
        headers=headers,
        http__host=c(
            [
                "www.shop.test",
                "a.example.com",
                "B.example.com",
                "c.example.com",
                "api.example.com",
                "db.INTERNAL.example.com",
                "legacy.example.com",
                "pay.example.com",
                "partners.example.com",
                "x.onion",
                "",
            ]
        ),
        http__request__method=c(["GET", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "BREW"]),
        http__request__uri__path=path,
        http__request__uri__path__extension=c(["", "exe", "html", "sh"]),
        http__request__uri__query=c(["", "ref=home", "q=%2e%2e/x", "q=union+select", "z" * 1100]),
        http__request__uri__args={n: [c(["1", "0"])] for n in arg_names},
        http__request__uri__args__names=arg_names,
        http__cookie=c(["sid=1", "admin=true; sid=2", ""]),
        http__referer=c(["https://www.shop.test/", "http://cdn.evil.test/x", ""]),
        http__user_agent=ua,
        http__x_forwarded_for=c(["", "8.8.8.8"]),
        http__request__version=c(["HTTP/1.0", "HTTP/1.1", "HTTP/2"]),
        ip__src=ip(
            c(
                [
                    "203.0.113.50",
                    "203.0.113.5",
                    "203.0.113.200",
                    "10.9.8.7",
                    "192.168.1.1",
                    "192.0.2.44",
                    "2001:db8:bad::1",
                    "2001:db8:1::1",
                    "fd00::1",
                ]
            )
        ),
        ssl=rng.random() < 0.7,
        cf__edge__server_port=c([443, 80, 8443, 2052, 22, 5905, 9000]),
        cf__tls_version=c(["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1"]),
        cf__tls_client_auth__cert_presented=rng.random() < 0.8,
        cf__tls_client_auth__cert_verified=rng.random() < 0.7,
        cf__tls_client_auth__cert_revoked=rng.random() < 0.05,
        cf__tls_client_auth__cert_issuer_dn=c(["CN=Example Client CA,O=Example", "CN=Other CA"]),
        cf__tls_client_auth__cert_subject_dn=c(
            ["CN=bob,OU=Contractors,O=Example", "CN=a,OU=Staff"]
        ),
        cf__tls_client_auth__cert_issuer_ski=c([PARTNER_SKI, *sorted(TRUSTED_SKI), "FFFF"]),
        cf__tls_client_auth__cert_fingerprint_sha256=c(["0a" * 32, "9f" * 32]),
        cf__tls_client_auth__cert_not_after=c(["2026-11-30T00:00:00Z", "2027-06-30T12:00:00Z"]),
    )


# --------------------------------------------------------------------------- evaluators


def first_match(rules: Sequence[Pred]) -> Callable[[Facts], int]:
    """The firewall loop, identical for compiled and hand-written rules."""
    rules = tuple(rules)

    def evaluate(f: Facts) -> int:
        for i, rule in enumerate(rules):
            if rule(f):
                return i
        return -1

    return evaluate


def check_equivalence(compiled: list[Any], rng: random.Random) -> None:
    print("Equivalence check (hand-written vs compiled, before timing)")
    hand = [h for _, h in RULES]
    ok = True
    # Seed rule on its fact sets.
    for label, facts, want in SEED_FACTS:
        c, h = bool(compiled[0](facts)), bool(hand[0](facts))
        if not c == h == want:
            ok = False
            print(f"  MISMATCH seed [{label}]: compiled={c} hand={h} expected={want}")
    # Ruleset on the representative fact sets.
    fm_c, fm_h = first_match(compiled), first_match(hand)
    for label, facts, want_i in RULESET_FACTS:
        i_c, i_h = fm_c(facts), fm_h(facts)
        if not i_c == i_h == want_i:
            ok = False
            print(f"  MISMATCH ruleset [{label}]: compiled={i_c} hand={i_h} expected={want_i}")
    # Every rule on the representative sets plus random requests.
    pool = [f for _, f, _ in SEED_FACTS] + [f for _, f, _ in RULESET_FACTS]
    pool += [random_facts(rng) for _ in range(2000)]
    seen_true = [0] * len(RULES)
    seen_false = [0] * len(RULES)
    mismatches = 0
    for facts in pool:
        if fm_c(facts) != fm_h(facts):
            mismatches += 1
        for i, (c_rule, h_rule) in enumerate(zip(compiled, hand, strict=True)):
            c, h = bool(c_rule(facts)), bool(h_rule(facts))
            if c != h:
                mismatches += 1
                if mismatches <= 5:
                    print(f"  MISMATCH rule #{i}: compiled={c} hand={h}: {RULES[i][0]}")
            (seen_true if c else seen_false)[i] += 1
    one_sided = [i for i in range(len(RULES)) if not seen_true[i] or not seen_false[i]]
    print(
        f"  {len(pool)} fact sets x {len(RULES)} rules + first-match results:"
        f" {mismatches} mismatches; rules seen both true and false:"
        f" {len(RULES) - len(one_sided)}/{len(RULES)}"
        + (f" (one-sided: {one_sided})" if one_sided else "")
    )
    if mismatches or not ok:
        print("  RESULT: MISMATCH -- compiled and hand-written rules disagree; not timing.")
        sys.exit(2)
    print("  RESULT: identical on every fact set\n")


# --------------------------------------------------------------------------- timing


def make_timer(k: int) -> Callable[[Pred, Sequence[Facts], int], int]:
    """A loop calling fn on k fact sets per iteration, unrolled so the loop's own overhead
    is small next to the calls it measures. Returns elapsed ns for n iterations."""
    args = ", ".join(f"f{i}" for i in range(k))
    calls = "".join(f"        fn(f{i})\n" for i in range(k)) * max(1, 8 // k)
    per_iter = k * max(1, 8 // k)
    src = (
        "def timer(fn, facts, n):\n"
        f"    {args}, = facts\n"
        "    it = range(n)\n"
        "    t0 = perf_counter_ns()\n"
        "    for _ in it:\n"
        f"{calls}"
        "    return perf_counter_ns() - t0\n"
    )
    ns: dict[str, Any] = {"perf_counter_ns": time.perf_counter_ns}
    exec(src, ns)
    timer = ns["timer"]
    timer.per_iter = per_iter
    return timer  # type: ignore[no-any-return]


def measure(
    variants: dict[str, Pred], facts: Sequence[Facts], reps: int, target_ms: float
) -> dict[str, float]:
    """Median ns per evaluation for each variant, measured interleaved: each repetition runs
    every variant once, in an order that rotates between repetitions."""
    timer = make_timer(len(facts))
    per_iter: int = timer.per_iter  # type: ignore[attr-defined]
    names = list(variants)
    # Calibrate n on the slowest variant so each sample lasts about target_ms.
    n = 1
    while True:
        slowest = max(timer(variants[v], facts, n) for v in names)
        if slowest >= target_ms * 1e6 / 4 or n >= 1 << 24:
            break
        n *= 2
    n = max(1, int(n * target_ms * 1e6 / max(slowest, 1)))
    samples: dict[str, list[float]] = {v: [] for v in names}
    for v in names:  # warm-up
        timer(variants[v], facts, max(1, n // 4))
    for r in range(reps):
        order = names[r % len(names) :] + names[: r % len(names)]
        if r % 2:
            order.reverse()
        for v in order:
            samples[v].append(timer(variants[v], facts, n) / (n * per_iter))
    return {v: statistics.median(s) for v, s in samples.items()}


def fmt_rate(ns: float) -> str:
    return f"{1e9 / ns / 1e6:7.3f} M" if 1e9 / ns >= 1e6 else f"{1e9 / ns / 1e3:7.1f} k"


def per_rule_breakdown(compiled: list[Any], hand: list[Pred], quick: bool) -> None:
    """Each rule alone over requests that exercise both of its outcomes. Separates the cost
    of the CompiledExpression wrapper (compiled - .fn, the same for every rule) from the
    generated code's (.fn / hand), and prints the source of rules whose generated code
    costs more than LIMIT x the hand-written function."""
    rng = random.Random(99)
    probe = [f for _, f, _ in RULESET_FACTS] + [random_facts(rng) for _ in range(5)]
    p_reps, p_ms = (3, 1.0) if quick else (7, 3.0)
    results = []
    for c_rule, h_rule in zip(compiled, hand, strict=True):
        results.append(
            measure({"compiled": c_rule, "fn": c_rule.fn, "hand": h_rule}, probe, p_reps, p_ms)
        )
    wrapper = statistics.median(r["compiled"] - r["fn"] for r in results)
    fn_ratios = [r["fn"] / r["hand"] for r in results]
    hand_ns = statistics.median(r["hand"] for r in results)
    print(
        f"\nPer-rule breakdown ({len(probe)} requests per rule, median of {p_reps} samples):"
        f"\n  CompiledExpression.__call__ wrapper: +{wrapper:.0f} ns per call"
        f" (median over {len(results)} rules; median hand-written rule: {hand_ns:.0f} ns)"
        f"\n  generated code (.fn) / hand-written: median {statistics.median(fn_ratios):.2f}x,"
        f" max {max(fn_ratios):.2f}x"
    )
    offenders = [(i, q) for i, q in enumerate(fn_ratios) if q > LIMIT]
    print(f"  rules whose generated code costs over {LIMIT}x hand-written:", end="")
    print(" none" if not offenders else "")
    for i, q in sorted(offenders, key=lambda o: -o[1]):
        r = results[i]
        print(
            f"  #{i:<2} .fn {q:4.2f}x ({r['fn']:.0f} vs {r['hand']:.0f} ns;"
            f" with wrapper {r['compiled'] / r['hand']:.2f}x)  {RULES[i][0]}"
        )
        for line in compiled[i].source.splitlines()[1:]:
            print(f"        {line.strip()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (fewer, shorter samples)")
    ap.add_argument("--check", action="store_true", help="exit 1 if any workload FAILs")
    ap.add_argument("--reps", type=int, help="repetitions per measurement (median taken)")
    ap.add_argument("--no-per-rule", action="store_true", help="skip the per-rule breakdown")
    opts = ap.parse_args()
    reps = opts.reps or (5 if opts.quick else 15)
    target_ms = 4.0 if opts.quick else 15.0

    compiled = [compile_expression(text) for text, _ in RULES]
    hand = [h for _, h in RULES]
    check_equivalence(compiled, random.Random(1234))

    print(
        f"Timing: median of {reps} interleaved samples of ~{target_ms:g} ms each;"
        f" Python {sys.version.split()[0]}; limit compiled/hand <= {LIMIT}x\n"
    )
    header = (
        f"{'workload':<14} {'facts':<24} {'compiled ev/s':>14} {'hand ev/s':>12}"
        f" {'compiled':>9} {'hand':>8} {'ratio':>6} {'alt ratio':>9}"
    )
    print(header)
    print("-" * len(header))

    def row(workload: str, label: str, res: dict[str, float]) -> float:
        ratio = res["compiled"] / res["hand"]
        print(
            f"{workload:<14} {label:<24}"
            f" {fmt_rate(res['compiled']):>14} {fmt_rate(res['hand']):>12}"
            f" {res['compiled']:7.0f}ns {res['hand']:6.0f}ns {ratio:5.2f}x"
            f" {res['fn'] / res['hand']:8.2f}x"
        )
        return ratio

    verdicts: list[tuple[str, float]] = []

    seed_variants: dict[str, Pred] = {
        "compiled": compiled[0].fn,
        "fn": compiled[0],
        "hand": hand[0],
    }
    for label, facts, _ in SEED_FACTS:
        row("seed rule", label, measure(seed_variants, [facts], reps, target_ms))
    mix = [f for _, f, _ in SEED_FACTS]
    verdicts.append(
        (
            "seed rule",
            row("seed rule", "mix of all 3", measure(seed_variants, mix, reps, target_ms)),
        )
    )

    rs_variants: dict[str, Pred] = {
        "compiled": compile_first_match(compiled),
        "fn": first_match([c.fn for c in compiled]),
        "hand": first_match(hand),
    }
    for label, facts, _ in RULESET_FACTS:
        row("50-rule set", label, measure(rs_variants, [facts], reps, target_ms))
    mix = [f for _, f, _ in RULESET_FACTS]
    verdicts.append(
        (
            "50-rule set",
            row("50-rule set", "mix of all 3", measure(rs_variants, mix, reps, target_ms)),
        )
    )

    print()
    failed = False
    for name, ratio in verdicts:
        ok = ratio <= LIMIT
        failed |= not ok
        print(
            f"{'PASS' if ok else 'FAIL'}: {name}: compiled costs {ratio:.2f}x hand-written"
            f" per evaluation (limit {LIMIT}x, fact-set mix)"
        )

    if not opts.no_per_rule:
        per_rule_breakdown(compiled, hand, opts.quick)

    return 1 if failed and opts.check else 0


if __name__ == "__main__":
    sys.exit(main())
